"""Reserve against a real redis-server: the cap holds, a duplicate never counts twice, tenants have
sub-caps, dashboards can read it all."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from limits import MODELS_KEY, ReservationTooLarge, TokenBudget, model_keys

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
LEASE = 60.0


@pytest.fixture
def budget(redis_client: redis.Redis) -> TokenBudget:
    return TokenBudget(redis_client)


def test_reserve_admits_up_to_the_cap_and_refuses_beyond_saying_what_is_free(budget: TokenBudget) -> None:
    first = budget.reserve(MODEL, "mb-1", 60, cap=100, lease_seconds=LEASE)
    assert (first.admitted, first.duplicate, first.reason) == (True, False, "admitted")
    assert (first.enqueued, first.cap, first.free, first.tenant_enqueued) == (60, 100, 40, None)

    refused = budget.reserve(MODEL, "mb-2", 41, cap=100, lease_seconds=LEASE)
    assert (refused.admitted, refused.reason, refused.enqueued, refused.free) == (False, "cap", 60, 40)
    assert budget.reservation(MODEL, "mb-2") is None

    exact = budget.reserve(MODEL, "mb-3", 40, cap=100, lease_seconds=LEASE)  # enqueued + n == cap admits
    assert exact.admitted and exact.enqueued == 100 and exact.free == 0
    assert budget.stats(MODEL).enqueued == 100


def test_reserving_the_same_id_twice_counts_once_and_refreshes_the_lease(
    budget: TokenBudget, redis_client: redis.Redis
) -> None:
    budget.reserve(MODEL, "mb-1", 30, cap=100, lease_seconds=5)
    _, first_expiry = budget.reservation(MODEL, "mb-1") or (0, 0.0)
    again = budget.reserve(MODEL, "mb-1", 30, cap=100, lease_seconds=50)
    assert (again.admitted, again.duplicate, again.reason, again.enqueued) == (True, True, "duplicate", 30)
    tokens, expiry = budget.reservation(MODEL, "mb-1") or (0, 0.0)
    assert tokens == 30 and expiry >= first_expiry + 44
    # Even a redelivery that would no longer fit is a duplicate, not a refusal: the tokens are held.
    budget.reserve(MODEL, "mb-2", 70, cap=100, lease_seconds=LEASE)
    assert budget.reserve(MODEL, "mb-1", 30, cap=100, lease_seconds=LEASE).duplicate
    assert budget.stats(MODEL).enqueued == 100


def test_a_tenant_sub_cap_refuses_while_the_model_cap_would_admit(budget: TokenBudget) -> None:
    kw = {"cap": 1000, "lease_seconds": LEASE, "tenant_cap": 100}
    assert budget.reserve(MODEL, "a-1", 80, tenant="acme", **kw).tenant_enqueued == 80
    refused = budget.reserve(MODEL, "a-2", 30, tenant="acme", **kw)
    assert (refused.admitted, refused.reason, refused.enqueued, refused.free) == (
        False,
        "tenant_cap",
        80,
        920,
    )
    assert refused.tenant_enqueued == 80
    other = budget.reserve(MODEL, "b-1", 100, tenant="globex", **kw)  # another tenant has its own share
    assert other.admitted and other.tenant_enqueued == 100 and other.enqueued == 180
    assert budget.tenants(MODEL) == {"acme": 80, "globex": 100}
    budget.release(MODEL, "a-1")
    assert budget.reserve(MODEL, "a-2", 30, tenant="acme", **kw).admitted
    assert budget.tenants(MODEL) == {"acme": 30, "globex": 100}


def test_the_model_cap_is_reported_before_the_tenant_cap(budget: TokenBudget) -> None:
    """When both refuse, "cap" tells the dispatcher to stop for this model, not to try the next tenant."""
    budget.reserve(MODEL, "a-1", 90, cap=100, lease_seconds=LEASE, tenant="acme", tenant_cap=95)
    refused = budget.reserve(MODEL, "a-2", 20, cap=100, lease_seconds=LEASE, tenant="acme", tenant_cap=95)
    assert refused.reason == "cap"


def test_a_tenant_without_a_sub_cap_is_counted_and_not_limited(budget: TokenBudget) -> None:
    assert budget.reserve(MODEL, "a-1", 100, cap=100, lease_seconds=LEASE, tenant="acme").admitted
    assert budget.tenants(MODEL) == {"acme": 100}


def test_a_reservation_larger_than_the_cap_raises_instead_of_waiting_forever(budget: TokenBudget) -> None:
    with pytest.raises(ReservationTooLarge, match=r"101 tokens.*cap of 100 tokens"):
        budget.reserve(MODEL, "mb-1", 101, cap=100, lease_seconds=LEASE)
    with pytest.raises(ReservationTooLarge, match="tenant 'acme'"):
        budget.reserve(MODEL, "mb-1", 60, cap=100, lease_seconds=LEASE, tenant="acme", tenant_cap=50)
    assert budget.stats(MODEL).enqueued == 0


def test_stats_read_enqueued_cap_and_leases_for_dashboards(budget: TokenBudget) -> None:
    empty = budget.stats("never-seen")
    assert (empty.model, empty.enqueued, empty.cap, empty.leases, empty.expired) == ("never-seen", 0, 0, 0, 0)
    budget.reserve(MODEL, "mb-1", 10, cap=500, lease_seconds=LEASE)
    budget.reserve(MODEL, "mb-2", 20, cap=500, lease_seconds=LEASE)
    budget.reserve(MODEL, "mb-3", 680, cap=700, lease_seconds=LEASE)  # refused, but stores the new cap
    stats = budget.stats(MODEL)
    assert (stats.enqueued, stats.cap, stats.leases, stats.expired, stats.free) == (30, 700, 2, 0, 670)


def test_models_lists_every_model_that_had_a_reserve(budget: TokenBudget, redis_client: redis.Redis) -> None:
    assert budget.models() == []
    budget.reserve("b-model", "x", 1, cap=10, lease_seconds=LEASE)
    budget.reserve("a-model", "x", 1, cap=10, lease_seconds=LEASE)
    budget.release("a-model", "x")
    assert budget.models() == ["a-model", "b-model"]
    assert TokenBudget(redis_client).models() == ["a-model", "b-model"]  # shared state, not local


def test_leases_are_timed_by_the_redis_clock(budget: TokenBudget, redis_client: redis.Redis) -> None:
    budget.reserve(MODEL, "mb-1", 10, cap=100, lease_seconds=30)
    seconds, micros = redis_client.time()
    _, expiry = budget.reservation(MODEL, "mb-1") or (0, 0.0)
    assert abs(expiry - (seconds + micros / 1e6 + 30)) < 1.0


def test_every_key_written_lies_in_the_models_slot(budget: TokenBudget, redis_client: redis.Redis) -> None:
    budget.reserve(MODEL, "mb-1", 10, cap=100, lease_seconds=LEASE, tenant="acme", tenant_cap=50)
    written = {k.decode() for k in redis_client.keys("*")}
    assert written - {MODELS_KEY} <= set(model_keys(MODEL).all)
    assert {key_slot(k.encode()) for k in written - {MODELS_KEY}} == {
        key_slot(model_keys(MODEL).cap.encode())
    }


def test_scripts_flushed_from_the_server_are_loaded_again(
    budget: TokenBudget, redis_client: redis.Redis
) -> None:
    budget.reserve(MODEL, "mb-1", 10, cap=100, lease_seconds=LEASE)
    redis_client.script_flush()  # as after a restart without persistence of the script cache
    assert budget.reserve(MODEL, "mb-2", 10, cap=100, lease_seconds=LEASE).enqueued == 20
    assert budget.release(MODEL, "mb-2")


def test_a_client_decoding_responses_reads_the_same(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    budget = TokenBudget(client)
    budget.reserve(MODEL, "mb-1", 10, cap=100, lease_seconds=0.001, tenant="acme")
    assert budget.models() == [MODEL] and budget.tenants(MODEL) == {"acme": 10}
    while not (freed := budget.reclaim(MODEL)):
        pass
    assert freed == ["mb-1"]
    client.close()
