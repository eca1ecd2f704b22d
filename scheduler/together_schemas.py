"""The Together-shaped objects of the ``/together`` face, and how a record becomes one.

They satisfy both SDKs at once (``sdk-contract.md``): a file carries ``FileType`` (3.x) and ``type`` (1.x),
and shows every stored purpose as ``batch-api`` (the only batch purpose in either SDK's enum); a batch
job has every key 1.x requires, UPPERCASE statuses (``CANCELING`` only for 1.x, which knows it) and
ISO-8601 datetimes. tokenbatch's own fields sit at the end, under the ``tokenbatch extensions`` marker;
both SDKs ignore unknown keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from scheduler.lifecycle import Stage, together_status
from scheduler.records import BatchRecord, FileRecord

FileType = Literal["jsonl", "csv", "parquet"]
PURPOSE = "batch-api"
MAX_ERRORS_IN_MESSAGE = 10


class TogetherModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def file_type(filename: str) -> FileType:
    """From the name's extension, as the SDKs choose it; tokenbatch reads every input as JSONL."""
    lowered = filename.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith(".parquet"):
        return "parquet"
    return "jsonl"


class TogetherFile(TogetherModel):
    id: str
    object: Literal["file"] = "file"
    created_at: int
    filename: str
    bytes: int
    purpose: str
    file_type: FileType = Field(alias="FileType")  # 3.x reads this key, required even by default
    type: FileType  # 1.x reads this one
    processed: bool = Field(True, alias="Processed")
    processing_status: Literal["COMPLETED"] = "COMPLETED"

    @classmethod
    def from_record(cls, record: FileRecord) -> TogetherFile:
        kind = file_type(record.filename)
        return cls(id=record.id, created_at=record.created_at, filename=record.filename, bytes=record.bytes,
                   purpose=PURPOSE, FileType=kind, type=kind)


class TogetherFileList(TogetherModel):
    object: Literal["list"] = "list"
    data: list[TogetherFile]


class TogetherFileDeleted(TogetherModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class RequestCounts(TogetherModel):
    total: int
    completed: int
    failed: int


class BatchJob(TogetherModel):
    id: str
    user_id: str
    input_file_id: str
    file_size_bytes: int
    status: str
    job_deadline: datetime
    created_at: datetime
    endpoint: str
    progress: float
    model_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None  # null without errors: an empty error file breaks the 3.x download
    error: str | None = None
    completed_at: datetime | None = None
    # --- tokenbatch extensions (ignored by the SDKs) ---
    stage: Stage
    request_counts: RequestCounts

    @classmethod
    def from_record(cls, b: BatchRecord, file_size: int, legacy: bool = False) -> BatchJob:
        return cls(
            id=b.id, user_id=b.tenant, input_file_id=b.input_file_id, file_size_bytes=file_size,
            status=together_status(b.stage, legacy=legacy), job_deadline=_when(b.expires_at),
            created_at=_when(b.created_at), endpoint=b.endpoint, progress=float(b.progress),
            model_id=b.models[0] if b.models else None, output_file_id=b.output_file_id,
            error_file_id=b.error_file_id, error=_error(b), completed_at=_ended_at(b),
            stage=b.stage, request_counts=RequestCounts(total=b.total, completed=b.completed, failed=b.failed),
        )


class BatchCreated(TogetherModel):
    job: BatchJob
    warning: str | None = None


class BatchCreateRequest(TogetherModel):
    """``POST /v1/batches``: 3.x sends endpoint and input_file_id (model_id and priority optional), 1.x adds
    ``completion_window: "24h"``. Types are strict, so a wrong one is a 400 naming the field."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input_file_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    endpoint: str
    completion_window: str = "24h"
    model_id: str | None = None
    priority: int | None = None


def _when(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _ended_at(b: BatchRecord) -> datetime | None:
    for name in ("completed_at", "failed_at", "expired_at", "cancelled_at"):
        if name in b.times:
            return _when(b.times[name])
    return None


def _error(b: BatchRecord) -> str | None:
    """Together has one string where OpenAI has a list: the first file-level errors, each naming its line."""
    if not b.errors:
        return "The completion window passed before every request ran." if b.stage == Stage.EXPIRED else None
    shown = [_describe(e) for e in b.errors[:MAX_ERRORS_IN_MESSAGE]]
    more = len(b.errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _describe(e: Any) -> str:
    if not isinstance(e, dict):
        return str(e)
    message = str(e.get("message") or e.get("code") or "invalid line")
    line = e.get("line")
    return message if line is None or f"line {line}" in message.lower() else f"Line {line}: {message}"
