"""The OpenAI-shaped objects pass the official SDK's own models in every stage, and requests are checked
strictly. No services: records are built by hand."""

from __future__ import annotations

import openai.types as oa
import pytest
from pydantic import ValidationError

from scheduler.errors import describe
from scheduler.lifecycle import Stage
from scheduler.records import BatchRecord, FileRecord
from scheduler.schemas import Batch, BatchCreateRequest, BatchList, FileList, FileObject

REFERENCE_ORDER = [
    "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
    "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts", "usage",
    "metadata",
]
EXTENSIONS = ["stage", "progress", "cost", "tokens_done", "tokens_queued"]


def batch_record(stage: Stage, **kw: object) -> BatchRecord:
    base: dict[str, object] = dict(
        id="batch_1", tenant="t", input_file_id="file-1", endpoint="/v1/chat/completions",
        completion_window="24h", created_at=1_700_000_000, expires_at=1_700_086_400, stage=stage,
    )
    base.update(kw)
    return BatchRecord(**base)  # type: ignore[arg-type]


def file_record(purpose: str = "batch", status: str = "processed") -> FileRecord:
    return FileRecord(id="file-1", tenant="t", filename="in.jsonl", bytes=12, purpose=purpose,
                      created_at=1_700_000_000, status=status, path="files/file-1")


@pytest.mark.parametrize("stage", list(Stage))
def test_every_stage_passes_the_sdks_strict_batch_model(stage: Stage) -> None:
    b = Batch.from_record(batch_record(stage, times={f"{stage.value}_at": 1_700_000_100}, total=3, completed=1))
    sdk = oa.Batch.model_validate(b.model_dump(mode="json"))
    assert sdk.status == ("in_progress" if stage == Stage.QUEUED else stage.value)
    assert b.stage == stage


def test_queued_shows_in_progress_with_the_native_stage_beside_it() -> None:
    data = Batch.from_record(batch_record(Stage.QUEUED)).model_dump(mode="json")
    assert (data["status"], data["stage"]) == ("in_progress", "queued")


def test_batch_fields_follow_the_reference_order_with_extensions_last() -> None:
    assert list(Batch.model_fields) == REFERENCE_ORDER + EXTENSIONS


def test_live_counters_usage_cost_and_tokens_are_shown() -> None:
    rec = batch_record(
        Stage.IN_PROGRESS, total=10, completed=4, failed=1, prompt_tokens=100, completion_tokens=50, cost=0.0123456789,
        tokens_planned=900, tokens_done=300, models=["tiny", "other"], metadata={"k": "v"},
        output_file_id=None, times={"in_progress_at": 5},
    )
    data = Batch.from_record(rec).model_dump(mode="json")
    assert data["request_counts"] == {"total": 10, "completed": 4, "failed": 1}
    assert data["usage"] == {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": 150}
    assert (data["progress"], data["tokens_done"], data["tokens_queued"]) == (50, 300, 600)
    assert data["cost"] == pytest.approx(0.012346)
    assert (data["model"], data["metadata"], data["in_progress_at"]) == ("tiny", {"k": "v"}, 5)
    oa.Batch.model_validate(data)


def test_validation_errors_become_the_errors_list_with_lines() -> None:
    rec = batch_record(Stage.FAILED, errors=[{"code": "invalid_json", "message": "line 3 is not JSON", "line": 3},
                                             {"code": "duplicate_custom_id", "message": "dup", "line": "7",
                                              "param": "custom_id"}])
    data = Batch.from_record(rec).model_dump(mode="json")
    assert data["errors"]["object"] == "list"
    assert [(e["code"], e["line"], e["param"]) for e in data["errors"]["data"]] == [
        ("invalid_json", 3, None), ("duplicate_custom_id", 7, "custom_id")]
    assert oa.Batch.model_validate(data).errors.data[1].line == 7  # type: ignore[union-attr]


def test_no_errors_is_null_not_an_empty_list() -> None:
    assert Batch.from_record(batch_record(Stage.VALIDATING)).errors is None


@pytest.mark.parametrize(("stored", "shown"), [("batch", "batch"), ("batch-api", "batch"),
                                               ("batch_output", "batch_output")])
def test_file_purposes_are_shown_in_openais_enum(stored: str, shown: str) -> None:
    data = FileObject.from_record(file_record(stored)).model_dump(mode="json")
    assert data["purpose"] == shown
    assert oa.FileObject.model_validate(data).purpose == shown


def test_file_object_has_every_field_the_sdk_requires() -> None:
    data = FileObject.from_record(file_record()).model_dump(mode="json")
    assert list(data)[:7] == ["id", "bytes", "created_at", "filename", "object", "purpose", "status"]
    assert data["object"] == "file" and data["status"] == "processed"


def test_lists_carry_cursors_and_has_more() -> None:
    f = FileObject.from_record(file_record())
    assert FileList(data=[f], first_id="file-1", last_id="file-1", has_more=False).model_dump()["object"] == "list"
    b = Batch.from_record(batch_record(Stage.COMPLETED))
    page = BatchList(data=[b], first_id=b.id, last_id=b.id, has_more=True).model_dump(mode="json")
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("batch_1", "batch_1", True)


def test_create_request_is_strict_about_types() -> None:
    ok = BatchCreateRequest.model_validate_json(b'{"input_file_id": "f", "endpoint": "/v1/chat/completions"}')
    assert ok.completion_window == "24h"
    with pytest.raises(ValidationError):
        BatchCreateRequest.model_validate_json(b'{"input_file_id": 5, "endpoint": "/v1/chat/completions"}')
    with pytest.raises(ValidationError):
        BatchCreateRequest.model_validate_json(b'{"input_file_id": "f", "endpoint": "e", "metadata": {"a": 1}}')


@pytest.mark.parametrize("metadata", [{f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}])
def test_metadata_is_limited_like_openais(metadata: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        BatchCreateRequest.model_validate({"input_file_id": "f", "endpoint": "e", "metadata": metadata})
    assert describe(info.value.errors()).param is not None and "metadata" in str(describe(info.value.errors()).param)


def test_sixteen_metadata_pairs_are_fine() -> None:
    body = {"input_file_id": "f", "endpoint": "e", "metadata": {f"k{i}": "v" * 512 for i in range(16)}}
    assert len(BatchCreateRequest.model_validate(body).metadata or {}) == 16


def test_a_validation_error_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as info:
        BatchCreateRequest.model_validate_json(b'{"endpoint": "e"}')
    err = describe(info.value.errors())
    assert (err.status, err.param, err.code) == (400, "input_file_id", "missing_required_parameter")
    with pytest.raises(ValidationError) as info:
        BatchCreateRequest.model_validate_json(b"{not json")
    assert describe(info.value.errors()).code == "invalid_json"
