"""Random sequences of reserve, release, extend and reclaim against a real Redis, checked step by step
against a pure Python model of the budget (Hypothesis stateful testing)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from limits import ReservationTooLarge, TokenBudget

MODEL = "modelled"
CAP = 100
TENANT_CAP = 60
IDS = st.sampled_from([f"mb-{i}" for i in range(8)])
TENANTS = st.sampled_from([None, "acme", "globex"])
# A short lease has expired by the time reclaim runs (it sleeps first); a long one never does in a test.
SHORT, LONG = 0.001, 600.0
LEASES = st.sampled_from([SHORT, LONG])


@dataclass
class Held:
    tokens: int
    tenant: str | None
    lease: float


class BudgetMachine(RuleBasedStateMachine):
    client: redis.Redis  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.client.flushdb()
        self.budget = TokenBudget(self.client)
        self.held: dict[str, Held] = {}

    def enqueued(self, tenant: str | None = None) -> int:
        return sum(h.tokens for h in self.held.values() if tenant is None or h.tenant == tenant)

    @rule(rid=IDS, tokens=st.integers(1, CAP), tenant=TENANTS, capped=st.booleans(), lease=LEASES)
    def reserve(self, rid: str, tokens: int, tenant: str | None, capped: bool, lease: float) -> None:
        tenant_cap = TENANT_CAP if capped and tenant else None
        call = {"cap": CAP, "lease_seconds": lease, "tenant": tenant, "tenant_cap": tenant_cap}
        if tenant_cap is not None and tokens > tenant_cap:
            with pytest.raises(ReservationTooLarge):
                self.budget.reserve(MODEL, rid, tokens, **call)
            return
        result = self.budget.reserve(MODEL, rid, tokens, **call)
        if rid in self.held:
            expected = "duplicate"
            self.held[rid].lease = lease
        elif self.enqueued() + tokens > CAP:
            expected = "cap"
        elif tenant_cap is not None and self.enqueued(tenant) + tokens > tenant_cap:
            expected = "tenant_cap"
        else:
            expected = "admitted"
            self.held[rid] = Held(tokens, tenant, lease)
        assert result.reason == expected
        assert result.admitted == (expected in ("admitted", "duplicate"))
        assert result.duplicate == (expected == "duplicate")
        assert (result.enqueued, result.cap, result.free) == (self.enqueued(), CAP, CAP - self.enqueued())
        assert result.tenant_enqueued == (None if tenant is None else self.enqueued(tenant))

    @rule(rid=IDS)
    def release(self, rid: str) -> None:
        assert self.budget.release(MODEL, rid) == (self.held.pop(rid, None) is not None)

    @rule(rid=IDS, lease=LEASES)
    def extend(self, rid: str, lease: float) -> None:
        assert self.budget.extend(MODEL, rid, lease) == (rid in self.held)
        if rid in self.held:
            self.held[rid].lease = lease

    @rule()
    def reclaim(self) -> None:
        time.sleep(0.003)
        expired = sorted(rid for rid, h in self.held.items() if h.lease == SHORT)
        assert sorted(self.budget.reclaim(MODEL)) == expired
        for rid in expired:
            del self.held[rid]

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        stats = self.budget.stats(MODEL)
        assert (stats.enqueued, stats.leases) == (self.enqueued(), len(self.held))
        tenants = {t: self.enqueued(t) for t in {h.tenant for h in self.held.values()} if t is not None}
        assert self.budget.tenants(MODEL) == tenants
        for rid in ("mb-0", "mb-7"):
            found = self.budget.reservation(MODEL, rid)
            assert (found[0] if found else None) == (self.held[rid].tokens if rid in self.held else None)

    def teardown(self) -> None:
        for rid in list(self.held):
            assert self.budget.release(MODEL, rid)
        assert self.budget.stats(MODEL).enqueued == 0


def test_any_sequence_of_calls_matches_the_pure_model(redis_client: redis.Redis) -> None:
    BudgetMachine.client = redis_client
    run_state_machine_as_test(
        BudgetMachine,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None, database=None),
    )
