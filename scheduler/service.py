"""The operations every surface shares (HTTP faces, the Celery door, the CLI): files in, batches created
and cancelled, with the same checks and the same errors wherever they come from."""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any

import redis

from scheduler import keys
from scheduler.errors import Conflict, InvalidRequest, NotFound, TooLarge
from scheduler.lifecycle import TERMINAL, Stage, transition
from scheduler.microbatch import MicroBatches
from scheduler.records import BatchRecord, FileRecord, Records, new_id
from scheduler.settings import Settings
from scheduler.storage import Storage

ENDPOINT = "/v1/chat/completions"
WINDOW = re.compile(r"^(\d+)([smhd])$")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = 7 * 86400
INPUT_PURPOSES = {"batch", "batch-api"}
MAX_METADATA = 16
log = logging.getLogger("tokenbatch.service")
MIN_EXPIRY, MAX_EXPIRY = 3600, 30 * 86400  # OpenAI's bounds on expires_after / output_expires_after

Sender = Callable[[str, list[Any]], None]  # (task name, args) -> None; sends by name, never imports tasks


@dataclass(frozen=True)
class ServedModel:
    id: str
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0


def read_served_models(path: str | None) -> dict[str, ServedModel]:
    """Model ids and prices from the models file, with no model code (the API stays light)."""
    if not path:
        return {}
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    out = {}
    for m in data.get("models", []):
        out[m["id"]] = ServedModel(m["id"], float(m.get("input_price_per_mtok", 0.0)),
                                   float(m.get("output_price_per_mtok", 0.0)))
    return out


def window_seconds(window: str, default: int) -> int:
    """'24h' -> seconds. Any 'N[smhd]' is accepted (tests use seconds); the published default is 24h."""
    if window == "24h":
        return default
    m = WINDOW.match(window or "")
    if not m or int(m.group(1)) <= 0:
        raise InvalidRequest(f"completion_window {window!r} must look like '24h'", param="completion_window",
                             code="invalid_completion_window")
    seconds = int(m.group(1)) * UNIT[m.group(2)]
    if seconds > MAX_WINDOW:
        raise InvalidRequest(f"completion_window {window!r} is longer than 7 days", param="completion_window",
                             code="invalid_completion_window")
    return seconds


def expiry_seconds(anchor: str | None, seconds: str | int | None, param: str) -> int | None:
    """``expires_after`` ({anchor: "created_at", seconds}) checked as OpenAI does; None when not given."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest(f"{param}[anchor] must be 'created_at' (got {anchor!r})", param=f"{param}[anchor]",
                             code="invalid_expires_after")
    try:
        value = int(str(seconds))
    except ValueError:
        value = 0
    if not MIN_EXPIRY <= value <= MAX_EXPIRY:
        raise InvalidRequest(f"{param}[seconds] must be a whole number from {MIN_EXPIRY} (1 hour) to {MAX_EXPIRY} "
                             f"(30 days), got {seconds!r}", param=f"{param}[seconds]", code="invalid_expires_after")
    return value


class Service:
    def __init__(self, settings: Settings, client: redis.Redis, send: Sender) -> None:
        self.settings = settings
        self.r = client
        self.send = send
        self.records = Records(client)
        self.microbatches = MicroBatches(client)

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings.files_url)

    @property
    def models(self) -> dict[str, ServedModel]:
        return read_served_models(str(self.settings.models) if self.settings.models else None)

    # Files
    def store_upload(
        self, tenant: str, filename: str, purpose: str, chunks: Iterable[bytes], *, file_id: str | None = None,
        sha256: str | None = None, expires_in: int | None = None,
    ) -> FileRecord:
        """Stream an upload to storage, refusing past the size cap (or a wrong ``sha256``) without keeping
        anything: the storage writer publishes the file only when the block exits cleanly. ``file_id`` is for
        uploads whose id was announced before the bytes arrived (the Together face's signed PUT)."""
        if purpose not in INPUT_PURPOSES:
            raise InvalidRequest(f"purpose must be 'batch' (got {purpose!r})", param="purpose",
                                 code="invalid_purpose")
        file_id = file_id or new_id("file-")
        path = f"files/{file_id}"
        cap = self.settings.max_file_bytes
        digest = hashlib.sha256()
        size = 0
        with self.storage.writer(path) as out:
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise TooLarge(f"The file is larger than the limit of {cap} bytes",
                                   param="file", code="file_too_large")
                if sha256:
                    digest.update(chunk)
                out.write(chunk)
            if sha256 and digest.hexdigest() != sha256:
                raise InvalidRequest("The uploaded bytes do not match the checksum sent with POST /v1/files.",
                                     param="checksum", code="checksum_mismatch")
        return self.records.create_file(file_id=file_id, tenant=tenant, filename=filename, size=size,
                                        purpose=purpose, path=path, sha256=sha256, expires_in=expires_in)

    def open_file(self, record: FileRecord) -> IO[bytes]:
        return self.storage.open(record.path)

    def delete_file(self, tenant: str, file_id: str) -> FileRecord:
        """The bytes first, then the record: a failure between leaves a record to delete again, never bytes
        that nothing points to."""
        record = self.records.get_file(tenant, file_id, expired_ok=True)
        self.storage.delete(record.path)
        return self.records.delete_file(tenant, file_id)

    def delete_expired_files(self, now: int, limit: int = 500) -> list[str]:
        """Delete files past their ``expires_at``. The input of a batch not yet ended is looked at again a
        minute later (its tenant no longer sees it, but validation may still need it). One file that
        fails (gone meanwhile, a storage error) does not stop the others."""
        expired = self.records.expired_files(now, limit)
        if not expired:
            return []
        in_use = {row["input_file_id"] for row in self.records.active_fields("stage", "input_file_id")
                  if row.get("input_file_id") and row.get("stage") not in TERMINAL}
        gone = []
        for record in expired:
            if record.id in in_use:
                self.records.postpone_expiry(record.id, now + 60)
                continue
            try:
                self.delete_file(record.tenant, record.id)
            except NotFound:
                continue
            except Exception:  # the next sweep tries this one again; the rest go now
                log.exception("could not delete expired file %s", record.id)
                continue
            gone.append(record.id)
        return gone

    # Batches
    def create_batch(
        self, tenant: str, *, input_file_id: str, endpoint: str, completion_window: str = "24h",
        metadata: dict[str, str] | None = None, output_expires_seconds: int | None = None,
    ) -> BatchRecord:
        if endpoint != ENDPOINT:
            raise InvalidRequest(f"endpoint must be {ENDPOINT!r} (got {endpoint!r})", param="endpoint",
                                 code="invalid_endpoint")
        seconds = window_seconds(completion_window, self.settings.completion_window)
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise InvalidRequest(f"metadata must be at most {MAX_METADATA} string pairs", param="metadata",
                                 code="invalid_metadata")
        try:
            source = self.records.get_file(tenant, input_file_id)  # 404 for another tenant's file too
        except NotFound as exc:
            raise NotFound(exc.message, param="input_file_id", code=exc.code) from None
        if source.purpose not in INPUT_PURPOSES:
            raise InvalidRequest(f"File {input_file_id!r} has purpose {source.purpose!r}, not 'batch'",
                                 param="input_file_id", code="invalid_input_file")
        batch = self.records.create_batch(tenant=tenant, input_file_id=input_file_id, endpoint=endpoint,
                                          completion_window=completion_window, window_seconds=seconds,
                                          metadata=metadata, output_expires_seconds=output_expires_seconds)
        # Until a control worker takes it, the sweep will not send it again (see tasks.sweep).
        self.r.set(keys.stage_lease(batch.id, "validate"), "queued", ex=self.settings.lease_seconds)
        self.send("tokenbatch.validate", [batch.id])
        return batch

    def cancel_batch(self, tenant: str, batch_id: str) -> BatchRecord:
        """validating, queued, in_progress -> cancelling: nothing new is dispatched, running work finishes.

        Cancelling twice returns the batch as it is; a batch that already ended (or is being written out)
        is a Conflict."""
        batch = self.records.get_batch(tenant, batch_id)
        if transition(self.r, batch_id, Stage.CANCELLING):
            _, last = self.microbatches.drop_pending(batch_id, "cancelled")
            if last or (batch.stage != Stage.VALIDATING and self._all_finished(batch_id)):
                self.send("tokenbatch.finalize", [batch_id])
        batch = self.records.get_batch(tenant, batch_id)
        if batch.stage not in (Stage.CANCELLING, Stage.CANCELLED):
            raise Conflict(f"Cannot cancel a batch with status {batch.stage.value!r}.", param="batch_id",
                           code="batch_not_cancellable")
        return batch

    def _all_finished(self, batch_id: str) -> bool:
        b = self.records.batch(batch_id)
        return b is not None and b.microbatches_finished >= b.microbatches
