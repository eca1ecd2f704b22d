"""Micro-batches: their payload files, their states in Redis, and their place in a model's queues.

A micro-batch's state moves ``pending -> run:<attempt> -> done:<attempt>`` (or ``drop``) through the Lua
scripts in ``lua/``, one step each, so a redelivered task, a reclaimed lease and a cancel can race
without a request counted twice or lost. The last one to finish is told so, and it triggers the
aggregation ("the last finisher triggers the next stage", no chord).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson
import redis

from scheduler import keys
from scheduler.plan import Plan
from scheduler.scripts import script
from scheduler.storage import Storage


def payload_path(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/mb/{index}.jsonl"


def result_path(batch_id: str, index: int, attempt: int) -> str:
    return f"batches/{batch_id}/res/{index}.{attempt}.jsonl"


def validation_errors_path(batch_id: str) -> str:
    return f"batches/{batch_id}/validation.jsonl"


def entry(batch_id: str, index: int) -> str:
    """A queue entry and a budget reservation id: ``<batch>:<index>``."""
    return f"{batch_id}:{index}"


def parse_entry(value: str) -> tuple[str, int]:
    batch_id, _, index = value.rpartition(":")
    return batch_id, int(index)


@dataclass(frozen=True)
class Meta:
    model: str
    tokens: int
    requests: int

    def encode(self) -> str:
        return f"{self.model}|{self.tokens}|{self.requests}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Meta:
        text = raw.decode() if isinstance(raw, bytes) else raw
        model, tokens, requests = text.rsplit("|", 2)
        return cls(model, int(tokens), int(requests))


@dataclass(frozen=True)
class Recorded:
    first: bool  # this call recorded it (False: a duplicate)
    last: bool  # and it was the batch's last micro-batch


def write_payloads(storage: Storage, batch_id: str, plan: Plan, source: IO[bytes]) -> None:
    """One JSONL file per micro-batch (``{"i", "custom_id", "body"}``), read back from the input by offset,
    plus the per-request validation errors; the input is never loaded whole."""
    for k, mb in enumerate(plan.microbatches):
        with storage.writer(payload_path(batch_id, k)) as out:
            for i in mb.indexes:
                req = plan.requests[i]  # a request's index is its place in the plan
                source.seek(req.offset)
                body = orjson.loads(source.read(req.length))["body"]
                out.write(orjson.dumps({"i": i, "custom_id": req.custom_id, "body": body}) + b"\n")
    with storage.writer(validation_errors_path(batch_id)) as out:
        for e in plan.errors:
            out.write(orjson.dumps({"i": e.index, "custom_id": e.custom_id,
                                    "error": {"code": e.code, "message": e.message}}) + b"\n")


def read_jsonl(storage: Storage, path: str) -> Iterator[dict[str, Any]]:
    with storage.open(path) as fh:
        for raw in fh:
            if raw.strip():
                yield orjson.loads(raw)


class MicroBatches:
    """State operations on the micro-batches of all batches."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def reset(self, batch_id: str) -> None:
        """Forget a half-done plan (a validation that died), so validating again starts clean."""
        pipe = self.r.pipeline()
        pipe.delete(keys.microbatches(batch_id), keys.microbatch_meta(batch_id), keys.microbatch_attempts(batch_id))
        pipe.hdel(keys.batch(batch_id), "planned")
        pipe.execute()

    def store_plan(self, batch_id: str, plan: Plan) -> None:
        """States (all pending), meta and the batch's totals, in one transaction."""
        pipe = self.r.pipeline()
        pipe.delete(keys.microbatches(batch_id), keys.microbatch_meta(batch_id))
        if plan.microbatches:
            pipe.hset(keys.microbatches(batch_id), mapping={k: "pending" for k in range(len(plan.microbatches))})
            pipe.hset(keys.microbatch_meta(batch_id), mapping={
                k: Meta(mb.model, mb.tokens, len(mb.indexes)).encode() for k, mb in enumerate(plan.microbatches)})
        pipe.hset(keys.batch(batch_id), mapping={
            "total": len(plan.requests), "failed": len(plan.errors), "completed": 0,
            "microbatches": len(plan.microbatches), "microbatches_finished": 0, "planned": 1,
            "tokens_planned": sum(mb.tokens for mb in plan.microbatches),
            "models": orjson.dumps(sorted({mb.model for mb in plan.microbatches})).decode(),
        })
        pipe.execute()

    def meta(self, batch_id: str, index: int) -> Meta | None:
        raw = self.r.hget(keys.microbatch_meta(batch_id), index)
        return Meta.decode(raw) if raw else None

    def all_meta(self, batch_id: str) -> dict[int, Meta]:
        return {int(k): Meta.decode(v) for k, v in self.r.hgetall(keys.microbatch_meta(batch_id)).items()}

    def states(self, batch_id: str) -> dict[int, str]:
        return {int(k): v.decode() for k, v in self.r.hgetall(keys.microbatches(batch_id)).items()}

    def state(self, batch_id: str, index: int) -> str | None:
        raw = self.r.hget(keys.microbatches(batch_id), index)
        return raw.decode() if raw else None

    def snapshot(self, batch_id: str, index: int) -> tuple[str | None, Meta | None, bool]:
        """State, meta and whether the batch is ending (cancelled or expired), in one atomic round trip."""
        pipe = self.r.pipeline()  # one hash tag, {b:<id>}: a MULTI is fine on a cluster too
        pipe.hget(keys.microbatches(batch_id), index)
        pipe.hget(keys.microbatch_meta(batch_id), index)
        pipe.hget(keys.batch(batch_id), "end_reason")
        state, meta, ending = pipe.execute()
        return (state.decode() if state else None, Meta.decode(meta) if meta else None, bool(ending))

    def push(self, batch_id: str, tenant: str, indexes: Iterable[int], front: bool = False) -> set[str]:
        """Queue micro-batches on their models' per-tenant queues; returns the models touched.

        A tenant joining a model's rotation starts at the least 'served' count among those already in it,
        so a newcomer shares fairly from now on instead of being owed the past (start-time fair queuing).
        """
        metas = self.all_meta(batch_id)
        by_model: dict[str, list[str]] = {}
        for i in indexes:
            by_model.setdefault(metas[i].model, []).append(entry(batch_id, i))
        for model, entries in by_model.items():
            served = {k.decode(): float(v) for k, v in self.r.hgetall(keys.model_served(model)).items()}
            active = {m.decode() for m in self.r.smembers(keys.model_tenants(model))}
            floor = min((served.get(t, 0.0) for t in active), default=0.0)
            pipe = self.r.pipeline()
            if tenant not in active and served.get(tenant, 0.0) < floor:
                pipe.hset(keys.model_served(model), tenant, floor)
            queue = keys.model_queue(model, tenant)
            if front:
                pipe.lpush(queue, *reversed(entries))
            else:
                pipe.rpush(queue, *entries)
            pipe.sadd(keys.model_tenants(model), tenant)
            pipe.execute()
            self.r.sadd(keys.models_with_work(), model)
        return set(by_model)

    def claim(self, batch_id: str, index: int) -> tuple[int, str]:
        """pending -> run:<attempt>; (attempt, batch stage) or (0, why not)."""
        attempt, info = script(self.r, "claim")(
            keys=[keys.batch(batch_id), keys.microbatches(batch_id), keys.microbatch_attempts(batch_id)],
            args=[index],
        )
        return int(attempt), info.decode() if isinstance(info, bytes) else str(info)

    def record(
        self, batch_id: str, index: int, attempt: int, *, ok: int, failed: int, prompt_tokens: int,
        completion_tokens: int, cost: float, tokens: int,
    ) -> Recorded:
        first, last = script(self.r, "record")(
            keys=[keys.batch(batch_id), keys.microbatches(batch_id)],
            args=[index, attempt, ok, failed, prompt_tokens, completion_tokens, repr(cost), tokens],
        )
        return Recorded(bool(first), bool(last))

    def drop_pending(self, batch_id: str, reason: str) -> tuple[int, bool]:
        """Drop the pending micro-batches; (how many, whether that finished the batch)."""
        dropped, last = script(self.r, "drop")(
            keys=[keys.batch(batch_id), keys.microbatches(batch_id), keys.microbatch_meta(batch_id)],
            args=[reason],
        )
        return int(dropped), bool(last)

    def drop_one(self, batch_id: str, index: int, attempt: int) -> Recorded:
        """run:<attempt> -> drop, for a delivery whose batch is ending before it started."""
        dropped, last = script(self.r, "drop_one")(
            keys=[keys.batch(batch_id), keys.microbatches(batch_id), keys.microbatch_meta(batch_id)],
            args=[index, attempt],
        )
        return Recorded(bool(dropped), bool(last))

    def attempts(self, batch_id: str, index: int) -> int:
        return int(self.r.hget(keys.microbatch_attempts(batch_id), index) or 0)

    def requeue(self, batch_id: str, index: int) -> bool:
        return bool(script(self.r, "requeue")(keys=[keys.microbatches(batch_id)], args=[index]))
