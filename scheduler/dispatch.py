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

from collections.abc import Callable
from dataclasses import dataclass

import redis

from limits import ReservationTooLarge, TokenBudget
from scheduler import keys
from scheduler.lease import Lease
from scheduler.lifecycle import Stage, transition
from scheduler.microbatch import MicroBatches, parse_entry
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
    on_wait: Callable[[str, int], None] = lambda model, seconds: None  # a head sent after waiting for budget

    def __post_init__(self) -> None:
        self.mbs = MicroBatches(self.client)

    def run(self, model: str) -> int:
        """Dispatch what the budget admits now; returns how many micro-batches left."""
        lock, again = Lease(self.client, keys.dispatch_lock(model), LOCK_MS / 1000), keys.dispatch_again(model)
        if not lock.acquire():
            self.client.set(again, 1, px=LOCK_MS)
            return 0
        sent = 0
        try:
            while True:
                self.client.delete(again)
                sent += self._drain(model, lock)
                if not self.client.exists(again):
                    return sent
        finally:
            lock.release()

    def _drain(self, model: str, lock: Lease) -> int:
        sent = 0
        while True:
            # Still ours? (A stalled dispatcher whose lock lapsed must not race the one that took it over.)
            if not lock.renew():
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
        rid = raw.decode()  # a queue entry is the micro-batch's reservation id
        batch_id, index = parse_entry(rid)
        state, meta, _ = self.mbs.snapshot(batch_id, index)
        if meta is None or state != "pending":
            self._forget(queue, model, rid)  # done, dropped, running, or its batch is gone
            return "skipped"
        try:
            res = self.budget.reserve(model, rid, meta.tokens, cap=self.cap, lease_seconds=self.lease_seconds,
                                      tenant=tenant)
        except ReservationTooLarge:
            # The cap shrank below a planned micro-batch: it can never run. Record it with no result file;
            # aggregation writes its requests to the error file. Never stall the queue behind it.
            self._forget(queue, model, rid)
            self._fail_oversized(batch_id, index, meta.requests)
            return "skipped"
        if not res.admitted:
            self.client.hsetnx(keys.waiting_since(model), rid, int(self.client.time()[0]))
            return "full"
        attempt, stage = self.mbs.claim(batch_id, index)
        waited = self._forget(queue, model, rid)
        if not attempt:
            if not res.duplicate:  # a duplicate is someone else's reservation: not ours to give back
                self.budget.release(model, rid)
            return "skipped"
        if stage == Stage.QUEUED:
            transition(self.client, batch_id, Stage.IN_PROGRESS)
        self.client.hincrbyfloat(keys.model_served(model), tenant, meta.tokens)
        self.send(model, batch_id, index, attempt)
        if waited is not None:
            self.on_wait(model, waited)
        return "sent"

    def _forget(self, queue: str, model: str, rid: str) -> int | None:
        """Take a head off its queue, and its budget-wait stamp with it; returns how long it waited for the
        budget (seconds, by Redis's clock), None if it was never refused."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(keys.waiting_since(model), rid)
        pipe.lrem(queue, 1, rid)
        pipe.hdel(keys.waiting_since(model), rid)
        pipe.time()
        since, _, _, (now, _) = pipe.execute()
        return None if since is None else max(0, int(now) - int(since))

    def _fail_oversized(self, batch_id: str, index: int, requests: int) -> None:
        attempt, _ = self.mbs.claim(batch_id, index)
        if attempt:
            done = self.mbs.record(batch_id, index, attempt, ok=0, failed=requests, prompt_tokens=0,
                                   completion_tokens=0, cost=0.0, tokens=0)
            if done.last:
                self.finalize(batch_id)
