"""Files and batches as records in Redis: create, read, list (newest first, cursor ``after``), delete.

A record is a Redis hash; the typed views below are what the rest of the code reads. Tenancy is part
of every lookup: a record of another tenant is reported exactly like a missing one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import redis

from scheduler import keys
from scheduler.errors import InvalidRequest, NotFound
from scheduler.lifecycle import TERMINAL, Stage


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    bytes: int
    purpose: str
    created_at: int
    status: str  # uploaded | processed | error (OpenAI's deprecated-but-required field)
    path: str  # where the content lives in storage
    expires_at: int | None = None
    sha256: str | None = None  # known when the client announced it (Together's upload) and it was checked

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> FileRecord:
        return cls(
            id=h["id"], tenant=h["tenant"], filename=h["filename"], bytes=int(h["bytes"]),
            purpose=h["purpose"], created_at=int(h["created_at"]), status=h.get("status", "processed"),
            path=h["path"], expires_at=int(h["expires_at"]) if h.get("expires_at") else None,
            sha256=h.get("sha256") or None,
        )

    def expired(self, now: float | None = None) -> bool:
        """Past its ``expires_at``: gone for its tenant at once, deleted by the next sweep."""
        return self.expires_at is not None and self.expires_at <= (time.time() if now is None else now)


@dataclass(frozen=True)
class BatchRecord:
    id: str
    tenant: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    expires_at: int
    stage: Stage
    metadata: dict[str, str] | None = None
    times: dict[str, int] = field(default_factory=dict)  # <stage>_at -> epoch seconds
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    tokens_planned: int = 0  # prompt + max_tokens of every dispatchable request
    tokens_done: int = 0
    microbatches: int = 0
    microbatches_finished: int = 0
    models: list[str] = field(default_factory=list)
    end_reason: str | None = None  # "cancelled" | "expired" once asked
    output_expires_seconds: int | None = None  # output and error files expire this long after they are written

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> BatchRecord:
        def i(name: str) -> int:
            return int(float(h.get(name) or 0))

        return cls(
            id=h["id"], tenant=h["tenant"], input_file_id=h["input_file_id"], endpoint=h["endpoint"],
            completion_window=h["completion_window"], created_at=i("created_at"), expires_at=i("expires_at"),
            stage=Stage(h["stage"]),
            metadata=orjson.loads(h["metadata"]) if h.get("metadata") else None,
            times={k: int(v) for k, v in h.items() if k.endswith("_at") and k not in ("created_at", "expires_at")},
            output_file_id=h.get("output_file_id") or None, error_file_id=h.get("error_file_id") or None,
            errors=orjson.loads(h["errors"]) if h.get("errors") else [],
            total=i("total"), completed=i("completed"), failed=i("failed"),
            prompt_tokens=i("prompt_tokens"), completion_tokens=i("completion_tokens"),
            cost=float(h.get("cost") or 0.0), tokens_planned=i("tokens_planned"), tokens_done=i("tokens_done"),
            microbatches=i("microbatches"), microbatches_finished=i("microbatches_finished"),
            models=orjson.loads(h["models"]) if h.get("models") else [],
            end_reason=h.get("end_reason") or None,
            output_expires_seconds=i("output_expires_seconds") or None,
        )

    @property
    def progress(self) -> int:
        """0-100: requests with a result, as a share of the total (validation counts as 0)."""
        if self.stage == Stage.COMPLETED:
            return 100
        if not self.total:
            return 0
        return min(100, int(100 * (self.completed + self.failed) / self.total))


class Records:
    """Files and batches of all tenants, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    # Files
    def create_file(
        self, *, file_id: str, tenant: str, filename: str, size: int, purpose: str, path: str,
        status: str = "processed", expires_in: int | None = None, sha256: str | None = None,
    ) -> FileRecord:
        """``expires_in``: seconds from its ``created_at`` until the file expires (None: kept until deleted)."""
        now = int(time.time())
        expires_at = now + expires_in if expires_in else None
        h = {
            "id": file_id, "tenant": tenant, "filename": filename, "bytes": size, "purpose": purpose,
            "created_at": now, "status": status, "path": path,
        }
        if expires_at:
            h["expires_at"] = expires_at
        if sha256:
            h["sha256"] = sha256
        pipe = self.r.pipeline()
        pipe.hset(keys.file(file_id), mapping=h)
        pipe.zadd(keys.tenant_files(tenant), {file_id: time.time_ns() // 1000})
        if expires_at:
            pipe.zadd(keys.expiring_files(), {file_id: expires_at})
        if sha256:
            pipe.hset(keys.tenant_checksums(tenant), sha256, file_id)
        pipe.execute()
        return FileRecord.from_hash({k: str(v) for k, v in h.items()})

    def set_file_expiry(self, record: FileRecord, expires_at: int) -> FileRecord:
        """From now on the sweep deletes the file once ``expires_at`` (epoch seconds) has passed."""
        pipe = self.r.pipeline()
        pipe.hset(keys.file(record.id), "expires_at", expires_at)
        pipe.zadd(keys.expiring_files(), {record.id: expires_at})
        pipe.execute()
        return replace(record, expires_at=expires_at)

    def postpone_expiry(self, file_id: str, until: int) -> None:
        """Look at an expired file again at ``until`` (the index only: its ``expires_at`` stays)."""
        self.r.zadd(keys.expiring_files(), {file_id: until}, xx=True)

    def expired_files(self, now: int, limit: int) -> list[FileRecord]:
        """Files of any tenant whose ``expires_at`` has passed, soonest first (ids whose record is already
        gone are dropped from the index on the way)."""
        ids = [_s(m) or "" for m in self.r.zrangebyscore(keys.expiring_files(), "-inf", now, start=0, num=limit)]
        pipe = self.r.pipeline(transaction=False)
        for fid in ids:
            pipe.hgetall(keys.file(fid))
        out = []
        for fid, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                out.append(FileRecord.from_hash(_decode(raw)))
            else:
                self.r.zrem(keys.expiring_files(), fid)
        return out

    def get_file(self, tenant: str, file_id: str, *, expired_ok: bool = False) -> FileRecord:
        h = _decode(self.r.hgetall(keys.file(file_id)))
        record = FileRecord.from_hash(h) if h and h.get("tenant") == tenant else None
        if record is None or (record.expired() and not expired_ok):
            raise NotFound(f"No such file: {file_id!r}", param="file_id", code="file_not_found")
        return record

    def list_files(
        self, tenant: str, *, limit: int, after: str | None = None, purposes: Collection[str] | None = None,
        ascending: bool = False,
    ) -> tuple[list[FileRecord], bool]:
        """A page of files, newest first (or oldest with ``ascending``), only of ``purposes`` when given (one
        purpose a face shows may be stored as several); the bool says if more follow."""
        out: list[FileRecord] = []
        key = keys.tenant_files(tenant)
        start = self._after_rank(key, after, ascending)
        while len(out) <= limit:
            ids = self._range(key, start, start + 2 * limit, ascending)
            if not ids:
                break
            start += len(ids)
            pipe = self.r.pipeline(transaction=False)
            for fid in ids:
                pipe.hgetall(keys.file(fid))
            for raw in pipe.execute():
                h = _decode(raw)
                if h and (purposes is None or h["purpose"] in purposes):
                    record = FileRecord.from_hash(h)
                    if not record.expired():
                        out.append(record)
        return out[:limit], len(out) > limit

    def delete_file(self, tenant: str, file_id: str) -> FileRecord:
        record = self.get_file(tenant, file_id, expired_ok=True)
        pipe = self.r.pipeline()
        pipe.delete(keys.file(file_id))
        pipe.zrem(keys.tenant_files(tenant), file_id)
        pipe.zrem(keys.expiring_files(), file_id)
        pipe.execute()
        if record.sha256 and _s(self.r.hget(keys.tenant_checksums(tenant), record.sha256)) == file_id:
            self.r.hdel(keys.tenant_checksums(tenant), record.sha256)
        return record

    def file_by_checksum(self, tenant: str, sha256: str) -> FileRecord | None:
        """The tenant's stored file with these bytes, if an upload announced and proved them."""
        file_id = _s(self.r.hget(keys.tenant_checksums(tenant), sha256))
        if file_id is None:
            return None
        try:
            return self.get_file(tenant, file_id)
        except NotFound:  # deleted, or expired: upload the bytes again
            return None

    # Batches
    def create_batch(
        self, *, tenant: str, input_file_id: str, endpoint: str, completion_window: str,
        window_seconds: int, metadata: dict[str, str] | None, output_expires_seconds: int | None = None,
    ) -> BatchRecord:
        batch_id = new_id("batch_")
        now = int(time.time())
        h: dict[str, str | int] = {
            "id": batch_id, "tenant": tenant, "input_file_id": input_file_id, "endpoint": endpoint,
            "completion_window": completion_window, "created_at": now, "expires_at": now + window_seconds,
            "stage": Stage.VALIDATING.value, "total": 0, "completed": 0, "failed": 0,
        }
        if metadata:
            h["metadata"] = orjson.dumps(metadata).decode()
        if output_expires_seconds:
            h["output_expires_seconds"] = output_expires_seconds
        pipe = self.r.pipeline()
        pipe.hset(keys.batch(batch_id), mapping=h)
        pipe.zadd(keys.tenant_batches(tenant), {batch_id: time.time_ns() // 1000})
        pipe.sadd(keys.active_batches(), batch_id)
        pipe.execute()
        return BatchRecord.from_hash({k: str(v) for k, v in h.items()})

    def batch(self, batch_id: str) -> BatchRecord | None:
        """Any tenant's batch, for the workers; None if it does not exist."""
        h = _decode(self.r.hgetall(keys.batch(batch_id)))
        return BatchRecord.from_hash(h) if h else None

    def get_batch(self, tenant: str, batch_id: str) -> BatchRecord:
        record = self.batch(batch_id)
        if record is None or record.tenant != tenant:
            raise NotFound(f"No such batch: {batch_id!r}", param="batch_id", code="batch_not_found")
        return record

    def list_batches(self, tenant: str, *, limit: int, after: str | None = None) -> tuple[list[BatchRecord], bool]:
        key = keys.tenant_batches(tenant)
        start = self._after_rank(key, after, ascending=False)
        ids = self._range(key, start, start + limit + 1, ascending=False)
        pipe = self.r.pipeline(transaction=False)
        for bid in ids:
            pipe.hgetall(keys.batch(bid))
        found = [BatchRecord.from_hash(_decode(raw)) for raw in pipe.execute() if raw]
        return found[:limit], len(found) > limit

    def active_batch_ids(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(keys.active_batches()))

    def active_fields(self, *names: str) -> list[dict[str, str]]:
        """The named fields of every active batch in one pipelined read (gauges and ``tokenbatch status``)."""
        pipe = self.r.pipeline(transaction=False)
        for batch_id in self.active_batch_ids():
            pipe.hmget(keys.batch(batch_id), *names)
        return [{n: v.decode() for n, v in zip(names, row, strict=True) if v is not None} for row in pipe.execute()]

    def stage_counts(self, active: list[dict[str, str]] | None = None) -> dict[Stage, int]:
        """Batches per stage: active ones by the stage they are in (``active`` rows from ``active_fields``
        with ``stage``, read here when not given), ended ones from the tally kept by their transition (a
        batch leaves the active set just after it, so a terminal stage is never counted from the set)."""
        counts = dict.fromkeys(Stage, 0)
        for row in self.active_fields("stage") if active is None else active:
            stage = Stage(row["stage"]) if row.get("stage") in Stage._value2member_map_ else None
            if stage is not None and stage not in TERMINAL:
                counts[stage] += 1
        for raw, n in self.r.hgetall(keys.finished_batches()).items():
            name = raw.decode()
            if name in Stage._value2member_map_ and Stage(name) in TERMINAL:
                counts[Stage(name)] = int(n)
        return counts

    def set_batch_fields(self, batch_id: str, **fields: str | int | float) -> None:
        self.r.hset(keys.batch(batch_id), mapping=fields)

    # Cursor helpers: ``after`` is an id; the page starts just past it. An unknown cursor is a 400
    # rather than a silent restart from the top (which would make the SDK's iterator loop forever).
    def _after_rank(self, key: str, after: str | None, ascending: bool) -> int:
        if not after:
            return 0
        rank = self.r.zrank(key, after) if ascending else self.r.zrevrank(key, after)
        if rank is None:
            raise InvalidRequest(f"Unknown 'after' cursor: {after!r}", param="after", code="invalid_cursor")
        return int(rank) + 1

    def _range(self, key: str, start: int, stop: int, ascending: bool) -> list[str]:
        fn = self.r.zrange if ascending else self.r.zrevrange
        return [_s(m) or "" for m in fn(key, start, stop - 1)]
