"""The OpenAI-shaped objects of the HTTP face, and how a record becomes one.

One base model for all of them; fields in the order of OpenAI's API reference, so a response reads like
OpenAI's; tokenbatch's own fields sit at the end of a model, under the ``tokenbatch extensions`` marker.
The SDK ignores unknown keys, so extensions never break a strict client. Request bodies are validated
strictly (no ``123`` silently becoming ``"123"``), so a wrong type is a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from scheduler.lifecycle import Stage, openai_status
from scheduler.records import BatchRecord, FileRecord
from scheduler.service import INPUT_PURPOSES, MAX_EXPIRY, MAX_METADATA, MIN_EXPIRY

FileStatus = Literal["uploaded", "processed", "error"]
BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
# Stored purpose -> the purpose this face shows. Together's "batch-api" is not in OpenAI's enum, and a
# strict `files.list()` would fail on the first file the Together face uploaded.
_PURPOSE_VIEW = {"batch-api": "batch"}
# The reverse: a `purpose=` filter on the OpenAI face matches every stored purpose that shows as it.
PURPOSE_FILTER: dict[str, frozenset[str]] = {"batch": frozenset(INPUT_PURPOSES)}
PageT = TypeVar("PageT", bound=BaseModel)
MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class OpenAIBaseModel(BaseModel):
    """Every OpenAI-shaped object: unknown request keys are ignored (newer SDKs may send more)."""

    model_config = ConfigDict(extra="ignore")


# Files
class FileObject(OpenAIBaseModel):
    id: str
    bytes: int
    created_at: int
    filename: str
    object: Literal["file"] = "file"
    purpose: str
    status: FileStatus
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def from_record(cls, record: FileRecord) -> FileObject:
        status = record.status if record.status in ("uploaded", "processed", "error") else "processed"
        return cls(id=record.id, bytes=record.bytes, created_at=record.created_at, filename=record.filename,
                   purpose=_PURPOSE_VIEW.get(record.purpose, record.purpose), status=status,  # type: ignore[arg-type]
                   expires_at=record.expires_at)


def cursor_page(cls: type[PageT], data: list[Any], has_more: bool) -> PageT:
    """An OpenAI list page; ``first_id`` and ``last_id`` follow from ``data``."""
    return cls(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
               has_more=has_more)


class FileList(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class FileDeleted(OpenAIBaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


# Batches
class BatchError(OpenAIBaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(OpenAIBaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(OpenAIBaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(OpenAIBaseModel):
    reasoning_tokens: int = 0


class BatchUsage(OpenAIBaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class Batch(OpenAIBaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None = None
    # --- tokenbatch extensions (ignored by the SDKs) ---
    stage: Stage  # the native status: "queued" shows as status "in_progress"
    progress: int  # 0-100, requests with a result
    cost: float  # USD at the batch price, successful requests only
    tokens_done: int
    tokens_queued: int  # planned (prompt + max_tokens) and not yet done

    @classmethod
    def from_record(cls, b: BatchRecord) -> Batch:
        errors = BatchErrors(data=[_batch_error(e) for e in b.errors]) if b.errors else None
        t = b.times
        return cls(
            id=b.id, endpoint=b.endpoint, model=b.models[0] if b.models else None, errors=errors,
            input_file_id=b.input_file_id, completion_window=b.completion_window,
            status=openai_status(b.stage),  # type: ignore[arg-type]
            output_file_id=b.output_file_id, error_file_id=b.error_file_id, created_at=b.created_at,
            in_progress_at=t.get("in_progress_at"), expires_at=b.expires_at or None,
            finalizing_at=t.get("finalizing_at"), completed_at=t.get("completed_at"), failed_at=t.get("failed_at"),
            expired_at=t.get("expired_at"), cancelling_at=t.get("cancelling_at"), cancelled_at=t.get("cancelled_at"),
            request_counts=BatchRequestCounts(total=b.total, completed=b.completed, failed=b.failed),
            usage=BatchUsage(input_tokens=b.prompt_tokens, output_tokens=b.completion_tokens,
                             total_tokens=b.prompt_tokens + b.completion_tokens),
            metadata=b.metadata,
            stage=b.stage, progress=b.progress, cost=round(b.cost, 6), tokens_done=b.tokens_done,
            tokens_queued=max(0, b.tokens_planned - b.tokens_done),
        )


class BatchList(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class OutputExpiresAfter(OpenAIBaseModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY, le=MAX_EXPIRY)


class BatchCreateRequest(OpenAIBaseModel):
    """``POST /v1/batches``. Endpoint and window values are checked by the Service (one place for every
    surface); here only shapes and types. ``completion_window`` defaults to 24h for clients that omit it."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input_file_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    endpoint: str
    completion_window: str = "24h"
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA)] | None = None
    # The output and error files get ``expires_at``; the sweep deletes them then.
    output_expires_after: OutputExpiresAfter | None = None


# Models
class ModelObject(OpenAIBaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tokenbatch"


class ModelList(OpenAIBaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def _batch_error(e: Any) -> BatchError:
    if not isinstance(e, dict):  # tolerate a bare message written by an older worker
        return BatchError(message=str(e))
    return BatchError(code=_opt_str(e.get("code")), message=_opt_str(e.get("message")),
                      param=_opt_str(e.get("param")), line=_opt_int(e.get("line")))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
