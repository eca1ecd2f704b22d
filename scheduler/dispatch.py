"""The fair dispatcher: per model, hands runnable micro-batches to the model's inference queue, each only
after the token budget admitted its tokens.

Fairness is start-time fair queuing by tokens: the tenant that has been dispatched the fewest tokens on
this model goes next (a tenant joining starts at the current minimum, so it is not owed the past), and
within a tenant micro-batches leave in FIFO order. When the budget refuses the chosen head, dispatch
stops rather than skip it, so a large micro-batch is never starved by small ones behind it; a release
(or the periodic sweep) triggers the next round. One dispatcher runs per model at a time (a lock); a
trigger that finds it busy leaves a flag, and the running one goes round again, so no trigger is lost.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import redis

from limits import ReservationTooLarge, TokenBudget
from scheduler import keys
from scheduler.lifecycle import Stage, transition
from scheduler.microbatch import MicroBatches, entry, parse_entry
from scheduler.scripts import script

LOCK_MS = 30_000
Send = Callable[[str, str, int, int], None]  # (model, batch_id, index, attempt)


@dataclass
class Dispatcher:
    client: redis.Redis
    budget: TokenBudget
    cap: int
    lease_seconds: float  # while a micro-batch waits in the broker; the worker shortens it when it starts
    send: Send
    finalize: Callable[[str], None]  # sends the aggregation of a batch by name

    def __post_init__(self) -> None:
        self.mbs = MicroBatches(self.client)

    def run(self, model: str) -> int:
        """Dispatch what the budget admits now; returns how many micro-batches left."""
        lock, again = keys.dispatch_lock(model), keys.dispatch_lock(model) + ":again"
        token = secrets.token_hex(8)
        if not self.client.set(lock, token, nx=True, px=LOCK_MS):
            self.client.set(again, 1, px=LOCK_MS)
            return 0
        sent = 0
        try:
            while True:
                self.client.delete(again)
                sent += self._drain(model, lock, token)
                if not self.client.exists(again):
                    return sent
        finally:
            script(self.client, "unlock")(keys=[lock], args=[token])

    def _drain(self, model: str, lock: str, token: str) -> int:
        sent = 0
        while True:
            # Still ours? (A stalled dispatcher whose lock lapsed must not race the one that took it over.)
            if not script(self.client, "lease")(keys=[lock], args=[token, LOCK_MS]):
                return sent
            tenants = sorted(m.decode() for m in self.client.smembers(keys.model_tenants(model)))
            if not tenants:
                return sent
            served = {k.decode(): float(v) for k, v in self.client.hgetall(keys.model_served(model)).items()}
            outcome = "empty"
            for tenant in sorted(tenants, key=lambda t: (served.get(t, 0.0), t)):
                outcome = self._step(model, tenant)
                if outcome != "empty":
                    break
            if outcome == "sent":
                sent += 1
            elif outcome in ("full", "empty"):
                return sent

    def _step(self, model: str, tenant: str) -> str:
        """Try the head of one tenant's queue: 'sent', 'skipped' (dead entry), 'full' (budget), 'empty'."""
        queue = keys.model_queue(model, tenant)
        raw = self.client.lindex(queue, 0)
        if raw is None:
            script(self.client, "untenant")(keys=[queue, keys.model_tenants(model)], args=[tenant])
            return "empty"
        head = raw.decode()
        batch_id, index = parse_entry(head)
        rid = entry(batch_id, index)
        meta = self.mbs.meta(batch_id, index)
        if meta is None or self.mbs.state(batch_id, index) != "pending":
            self._forget(queue, head, model, rid)  # done, dropped, running, or its batch is gone
            return "skipped"
        try:
            res = self.budget.reserve(model, rid, meta.tokens, cap=self.cap, lease_seconds=self.lease_seconds,
                                      tenant=tenant)
        except ReservationTooLarge:
            # The cap shrank below a planned micro-batch: it can never run. Record it with no result file;
            # aggregation writes its requests to the error file. Never stall the queue behind it.
            self._forget(queue, head, model, rid)
            self._fail_oversized(batch_id, index, meta.requests)
            return "skipped"
        if not res.admitted:
            self.client.hsetnx(keys.waiting_since(model), rid, int(self.client.time()[0]))
            return "full"
        attempt, stage = self.mbs.claim(batch_id, index)
        self._forget(queue, head, model, rid)
        if not attempt:
            if not res.duplicate:  # a duplicate is someone else's reservation: not ours to give back
                self.budget.release(model, rid)
            return "skipped"
        if stage == Stage.QUEUED:
            transition(self.client, batch_id, Stage.IN_PROGRESS)
        self.client.hincrbyfloat(keys.model_served(model), tenant, meta.tokens)
        self.send(model, batch_id, index, attempt)
        return "sent"

    def _forget(self, queue: str, head: str, model: str, rid: str) -> None:
        """Take a head off its queue, and its budget-wait stamp with it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lrem(queue, 1, head)
        pipe.hdel(keys.waiting_since(model), rid)
        pipe.execute()

    def _fail_oversized(self, batch_id: str, index: int, requests: int) -> None:
        attempt, _ = self.mbs.claim(batch_id, index)
        if attempt:
            done = self.mbs.record(batch_id, index, attempt, ok=0, failed=requests, prompt_tokens=0,
                                   completion_tokens=0, cost=0.0, tokens=0)
            if done.last:
                self.finalize(batch_id)
