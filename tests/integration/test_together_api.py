"""The Together face's shapes through the real HTTP API, with the 3.x SDK in strict mode and plain httpx. No
Celery worker runs here: a recording ``send`` stands in for the broker, and the stages a worker would reach
are set through the lifecycle table, as a worker would."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import orjson
import pytest
import together
from together import Together
from together.lib.resources.files import FileAlreadyExistsError

from scheduler import keys
from scheduler.lifecycle import Stage, transition

ALICE = {"authorization": "Bearer key-alice"}
LEGACY = {**ALICE, "user-agent": "Together/v1 PythonBindings/1.5.35"}
LINE = b'{"custom_id": "r1", "body": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}}\n'
ENDPOINT = "/v1/chat/completions"


def sdk(api: SimpleNamespace, key: str = "key-alice") -> Together:
    return Together(base_url=f"{api.url}/together", api_key=key, max_retries=0, _strict_response_validation=True)


def openai_sdk(api: SimpleNamespace, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0, _strict_response_validation=True)


def upload(client: Together, tmp_path: Path, data: bytes = LINE) -> str:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    return client.files.upload(file=path, purpose="batch-api").id


def test_strict_sdk_uploads_creates_retrieves_lists_and_cancels(api: SimpleNamespace, tmp_path: Path) -> None:
    client = sdk(api)
    file_id = upload(client, tmp_path)
    f = client.files.retrieve(file_id)
    assert (f.file_type, f.purpose, f.bytes, f.filename, f.object) == ("jsonl", "batch-api", len(LINE), "in.jsonl",
                                                                       "file")
    assert [x.id for x in client.files.list().data] == [file_id]
    created = client.batches.create(input_file_id=file_id, endpoint=ENDPOINT)
    job = created.job
    assert job is not None and job.id and created.warning is None
    assert (job.status, job.user_id, job.input_file_id, job.file_size_bytes, job.endpoint, job.progress) == (
        "VALIDATING", "alice", file_id, len(LINE), ENDPOINT, 0)
    assert job.job_deadline and job.created_at and (job.job_deadline - job.created_at).total_seconds() == 24 * 3600
    assert api.sent == [("tokenbatch.validate", [job.id])]
    assert client.batches.retrieve(job.id) == job
    assert [b.id for b in client.batches.list()] == [job.id]
    assert client.batches.cancel(job.id).status == "CANCELLED"  # cancelling: 3.x's enum has no such value
    assert (client.batches.retrieve(job.id).model_extra or {})["stage"] == "cancelling"
    assert client.files.content(file_id).read() == LINE
    assert client.files.delete(file_id).deleted is True
    with pytest.raises(together.NotFoundError):
        client.files.retrieve(file_id)


def test_the_same_bytes_uploaded_again_are_the_same_file(api: SimpleNamespace, tmp_path: Path) -> None:
    """A 3.x upload announces its SHA-256; for bytes the tenant already stored, step 1 answers 409 with the
    file id and the SDK returns that file without sending the bytes again."""
    client = sdk(api)
    first = upload(client, tmp_path)
    assert upload(client, tmp_path) == first
    assert [f.id for f in client.files.list().data] == [first]
    with pytest.raises(FileAlreadyExistsError):
        client.files.upload(file=tmp_path / "in.jsonl", purpose="batch-api", raise_if_already_exists=True)
    assert upload(sdk(api, "key-bob"), tmp_path) != first  # another tenant's bytes are its own
    assert upload(client, tmp_path, LINE * 2) != first
    client.files.delete(first)
    assert upload(client, tmp_path) != first  # deleted: uploaded afresh


def test_the_wire_shapes_are_wrapped_bare_and_iso(api: SimpleNamespace, tmp_path: Path) -> None:
    file_id = upload(sdk(api), tmp_path)
    r = httpx.post(f"{api.url}/together/v1/batches", json={"input_file_id": file_id, "endpoint": ENDPOINT,
                                                           "completion_window": "24h"}, headers=ALICE)
    assert r.status_code == 200 and set(r.json()) == {"job"}  # "warning" only when there is one
    job = r.json()["job"]
    assert {"id", "user_id", "input_file_id", "file_size_bytes", "status", "job_deadline", "created_at", "endpoint",
            "progress", "model_id", "output_file_id", "error_file_id", "error", "completed_at"} <= set(job)
    assert job["stage"] == "validating" and job["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert datetime.fromisoformat(job["created_at"]).utcoffset() is not None  # ISO-8601, with its zone
    listed = httpx.get(f"{api.url}/together/v1/batches", headers=ALICE).json()
    assert isinstance(listed, list) and [j["id"] for j in listed] == [job["id"]]
    assert httpx.get(f"{api.url}/together/v1/batches/{job['id']}", headers=ALICE).json()["id"] == job["id"]


def test_model_id_and_priority_are_accepted_with_a_warning(api: SimpleNamespace, tmp_path: Path) -> None:
    client = sdk(api)
    created = client.batches.create(input_file_id=upload(client, tmp_path), endpoint=ENDPOINT, model_id="tiny",
                                    priority=1)
    assert created.warning and "model_id" in created.warning and "priority" in created.warning


@pytest.mark.parametrize(("stage", "shown", "legacy"), [
    (Stage.QUEUED, "IN_PROGRESS", "IN_PROGRESS"),
    (Stage.IN_PROGRESS, "IN_PROGRESS", "IN_PROGRESS"),
    (Stage.FINALIZING, "IN_PROGRESS", "IN_PROGRESS"),
    (Stage.CANCELLING, "CANCELLED", "CANCELING"),
    (Stage.FAILED, "FAILED", "FAILED"),
])
def test_each_stage_shows_in_both_sdks_enums(api: SimpleNamespace, tmp_path: Path, stage: Stage, shown: str,
                                            legacy: str) -> None:
    client = sdk(api)
    job = client.batches.create(input_file_id=upload(client, tmp_path), endpoint=ENDPOINT).job
    assert job is not None and job.id
    path = {Stage.QUEUED: [Stage.QUEUED], Stage.IN_PROGRESS: [Stage.QUEUED, Stage.IN_PROGRESS],
            Stage.FINALIZING: [Stage.QUEUED, Stage.FINALIZING], Stage.CANCELLING: [Stage.CANCELLING],
            Stage.FAILED: [Stage.FAILED]}[stage]
    for step in path:
        assert transition(api.client, job.id, step)
    assert client.batches.retrieve(job.id).status == shown  # strict: a value outside 3.x's enum would raise
    raw = httpx.get(f"{api.url}/together/v1/batches/{job.id}", headers=LEGACY).json()
    assert (raw["status"], raw["stage"]) == (legacy, stage.value)


def test_a_finished_batch_shows_progress_files_and_its_end(api: SimpleNamespace, tmp_path: Path) -> None:
    client = sdk(api)
    job = client.batches.create(input_file_id=upload(client, tmp_path), endpoint=ENDPOINT).job
    assert job is not None and job.id
    for step in (Stage.QUEUED, Stage.IN_PROGRESS, Stage.FINALIZING):
        assert transition(api.client, job.id, step, total=2, models='["tiny"]')
    out = api.service.store_upload("alice", f"{job.id}_output.jsonl", "batch", iter([b"{}\n"]))
    api.client.hset(keys.file(out.id), "purpose", "batch_output")
    assert transition(api.client, job.id, Stage.COMPLETED, completed=2, output_file_id=out.id)
    done = client.batches.retrieve(job.id)
    assert (done.status, done.progress, done.x_model_id, done.output_file_id, done.error_file_id) == (
        "COMPLETED", 100, "tiny", out.id, None)
    assert done.completed_at is not None
    assert client.files.retrieve(out.id).purpose == "batch-api"  # batch_output is in neither SDK's enum


def test_a_failed_batch_names_its_lines_in_error(api: SimpleNamespace, tmp_path: Path) -> None:
    client = sdk(api)
    job = client.batches.create(input_file_id=upload(client, tmp_path), endpoint=ENDPOINT).job
    assert job is not None and job.id
    errors = [{"code": "invalid_json", "line": 2, "message": "Line 2: not JSON"},
              {"code": "duplicate_custom_id", "line": 3, "message": "custom_id 'a' repeats"}]
    assert transition(api.client, job.id, Stage.FAILED, errors=orjson.dumps(errors).decode())
    failed = client.batches.retrieve(job.id)
    assert failed.status == "FAILED" and failed.completed_at is not None
    assert failed.error == "Line 2: not JSON; Line 3: custom_id 'a' repeats"


def test_one_batch_through_both_faces_for_its_tenant_only(api: SimpleNamespace, tmp_path: Path) -> None:
    t, o = sdk(api), openai_sdk(api)
    via_together = t.batches.create(input_file_id=upload(t, tmp_path), endpoint=ENDPOINT).job
    assert via_together is not None and via_together.id
    seen = o.batches.retrieve(via_together.id)
    assert (seen.status, seen.input_file_id) == ("validating", via_together.input_file_id)
    assert o.files.retrieve(via_together.input_file_id or "").purpose == "batch"
    f = o.files.create(file=("o.jsonl", LINE), purpose="batch")
    via_openai = o.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h")
    assert [j.id for j in t.batches.list()] == [via_openai.id, via_together.id]
    assert t.files.retrieve(f.id).purpose == "batch-api"
    o.batches.cancel(via_openai.id)
    assert t.batches.retrieve(via_openai.id).status == "CANCELLED"
    bob = sdk(api, "key-bob")
    assert bob.batches.list() == [] and bob.files.list().data == []
    for call in (bob.batches.retrieve, bob.batches.cancel):
        with pytest.raises(together.NotFoundError):
            call(via_together.id)
    with pytest.raises(together.NotFoundError):
        bob.batches.create(input_file_id=f.id, endpoint=ENDPOINT)


def test_errors_keep_the_error_shape(api: SimpleNamespace, tmp_path: Path) -> None:
    base = f"{api.url}/together/v1"
    cases = [
        (httpx.get(f"{base}/batches/batch_nope", headers=ALICE), 404, "batch_not_found"),
        (httpx.get(f"{base}/batches", headers={"authorization": "Bearer wrong"}), 401, "invalid_api_key"),
        (httpx.get(f"{base}/batches"), 401, "invalid_api_key"),
        (httpx.post(f"{base}/batches", content=b"{", headers=ALICE), 400, "invalid_json"),
        (httpx.post(f"{base}/batches", json={"input_file_id": 5, "endpoint": ENDPOINT}, headers=ALICE), 400,
         "invalid_value"),
        (httpx.post(f"{base}/batches", json={"input_file_id": "file-x", "endpoint": "/v1/embeddings"},
                    headers=ALICE), 400, "invalid_endpoint"),
        (httpx.get(f"{base}/nothing", headers=ALICE), 404, "unknown_url"),
        (httpx.get(f"{base}/files/file-nope/content", headers=ALICE), 404, "file_not_found"),
    ]
    for r, status, code in cases:
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    client = sdk(api)
    job = client.batches.create(input_file_id=upload(client, tmp_path), endpoint=ENDPOINT).job
    assert job is not None and job.id and transition(api.client, job.id, Stage.FAILED)
    r = httpx.post(f"{base}/batches/{job.id}/cancel", headers=ALICE)
    assert (r.status_code, r.headers["x-should-retry"]) == (409, "false")
    with pytest.raises(together.ConflictError):
        client.batches.cancel(job.id)


def test_downloads_send_length_and_honour_range(api: SimpleNamespace, tmp_path: Path) -> None:
    data = LINE * 50
    file_id = upload(sdk(api), tmp_path, data)
    url = f"{api.url}/together/v1/files/{file_id}/content"
    whole = httpx.get(url, headers=ALICE)
    assert (whole.status_code, whole.headers["content-length"], whole.content) == (200, str(len(data)), data)
    part = httpx.get(url, headers={**ALICE, "range": "bytes=0-1"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, data[:2],
                                                                               f"bytes 0-1/{len(data)}")
