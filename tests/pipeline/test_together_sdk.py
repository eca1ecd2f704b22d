"""The ``together`` SDKs against the whole stack, changing nothing but ``base_url`` and the key: 3.x in this
venv with strict response validation, and the launch post's 1.x sample run by ``together<2`` from its own
venv (``make .venv-together1``), whose pydantic models always validate what they read."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import Stack, assert_exactly_once, first_results

from scheduler.service import ENDPOINT

ROOT = Path(__file__).resolve().parents[2]
TOGETHER1 = ROOT / ".venv-together1" / "bin" / "python"
SCRIPTS = ROOT / "tests" / "together1"
ENDED = ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED")
WORDS = ["what is the capital of France", "name a colour", "count to three", "say hello", "why is the sky blue"]


def together_lines(n: int, prefix: str = "t", max_tokens: int = 8) -> bytes:
    """Input in Together's own form: ``custom_id`` and ``body``, no ``method`` or ``url``."""
    return b"".join(orjson.dumps({"custom_id": f"{prefix}-{i}", "body": {
        "model": "tiny", "messages": [{"role": "user", "content": f"{WORDS[i % 5]} {i}"}], "max_tokens": max_tokens,
        "temperature": 0}}) + b"\n" for i in range(n))


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in data.splitlines() if x.strip()]


@pytest.mark.slow
def test_together_3x_sdk_round_trip_cancel_list_and_errors(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    import together
    from openai import OpenAI
    from together import Together
    from together.lib.types.error import FileTypeError

    stack = make_stack(api=True)
    client = Together(base_url=stack.base_url + "/together", api_key="key-acme", _strict_response_validation=True)

    def wait(batch_id: str, until: Callable[[Any], bool] = lambda j: j.status in ENDED) -> Any:
        deadline = time.monotonic() + 120
        while not until(job := client.batches.retrieve(batch_id)) and time.monotonic() < deadline:
            time.sleep(0.3)
        return job

    # Upload (the SDK's three requests), create, poll to completion, download.
    path = tmp_path / "batch_input.jsonl"
    path.write_bytes(together_lines(6))
    uploaded = client.files.upload(file=path, purpose="batch-api")
    assert (uploaded.purpose, uploaded.file_type, uploaded.bytes, uploaded.filename) == (
        "batch-api", "jsonl", path.stat().st_size, "batch_input.jsonl")
    created = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT)
    assert created.job is not None and created.job.status == "VALIDATING" and created.warning is None
    job = wait(created.job.id)
    assert job.status == "COMPLETED", stack.logs()
    assert (job.progress, job.x_model_id, job.error_file_id, job.file_size_bytes) == (100, "tiny", None, uploaded.bytes)
    assert job.output_file_id and job.completed_at is not None and job.created_at is not None
    out = jsonl(client.files.content(job.output_file_id).read())
    assert [x["custom_id"] for x in out] == [f"t-{i}" for i in range(6)]
    assert client.files.retrieve(job.output_file_id).purpose == "batch-api"
    # One core, two faces: the OpenAI SDK sees the same batch for the same key.
    openai_client = OpenAI(base_url=stack.base_url + "/v1", api_key="key-acme", _strict_response_validation=True)
    assert openai_client.batches.retrieve(job.id).status == "completed"

    # Cancel in flight: partial results, every custom_id once across the output and error files.
    path.write_bytes(together_lines(160, "c", max_tokens=48))  # long enough that the cancel lands in flight
    big = client.batches.create(input_file_id=client.files.upload(file=path, purpose="batch-api").id,
                                endpoint=ENDPOINT).job
    assert big is not None and big.id
    first_results(stack, big.id)  # the inference worker is frozen with work in flight
    assert client.batches.cancel(big.id).status == "CANCELLED"  # 3.x has no CANCELLING: it shows as CANCELLED
    stack.resume("infer-tiny")
    final = wait(big.id, lambda j: (j.model_extra or {}).get("stage") == "cancelled")
    assert final.status == "CANCELLED", stack.logs()
    errors = jsonl(client.files.content(final.error_file_id).read()) if final.error_file_id else []
    outputs = jsonl(client.files.content(final.output_file_id).read()) if final.output_file_id else []
    assert_exactly_once(outputs, errors, [f"c-{i}" for i in range(160)])
    assert {e["error"]["code"] for e in errors} <= {"batch_cancelled"}

    # List: a bare array, newest first.
    assert [j.id for j in client.batches.list()] == [big.id, job.id]

    # A bad file: the SDK's own check refuses it; sent anyway, the batch fails naming the line.
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(together_lines(1) + b"not json\n")
    with pytest.raises(FileTypeError):
        client.files.upload(file=bad, purpose="batch-api")
    sent = client.files.upload(file=bad, purpose="batch-api", check=False)
    failed = wait(client.batches.create(input_file_id=sent.id, endpoint=ENDPOINT).job.id)  # type: ignore[union-attr]
    assert failed.status == "FAILED" and failed.error and "Line 2" in failed.error, failed
    with pytest.raises(together.NotFoundError) as missing:
        client.batches.create(input_file_id="file-nope", endpoint=ENDPOINT)
    assert missing.value.body["error"]["param"] == "input_file_id"  # type: ignore[index]

    # A wrong key: 401 in the error shape.
    stranger = Together(base_url=stack.base_url + "/together", api_key="key-wrong", max_retries=0,
                        _strict_response_validation=True)
    with pytest.raises(together.AuthenticationError) as denied:
        stranger.batches.list()
    assert denied.value.status_code == 401 and denied.value.body["error"]["code"] == "invalid_api_key"  # type: ignore[index]


@pytest.mark.slow
def test_together_1x_launch_sample_runs_unchanged(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    if not TOGETHER1.exists():
        pytest.skip("no .venv-together1: `make .venv-together1` builds it (make test does)")
    stack = make_stack(api=True)
    (tmp_path / "batch_input.jsonl").write_bytes(together_lines(8))
    (tmp_path / "cancel_input.jsonl").write_bytes(together_lines(200, "c"))
    (tmp_path / "bad_input.jsonl").write_bytes(together_lines(1) + b"not json\n")  # 1.x checks no batch file
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOGETHER_", "PYTHON"))}
    env.update(TOGETHER_BASE_URL=stack.base_url + "/together/v1", TOGETHER_API_KEY="key-acme", TQDM_DISABLE="1",
               TOGETHER_NO_BANNER="1")

    def run(script: str, *args: str) -> dict[str, Any]:
        done = subprocess.run([str(TOGETHER1), str(SCRIPTS / script), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, f"{done.stderr[-4000:]}\n{stack.logs()}"
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    sample = run("sample.py")
    job = sample["job"]
    assert (job["status"], job["user_id"], job["progress"], job["error_file_id"]) == ("COMPLETED", "acme", 100, None)
    assert sample["file"]["purpose"] == "batch-api" and sample["file"]["type"] == "jsonl"
    out = jsonl((tmp_path / "batch_output.jsonl").read_bytes())
    assert_exactly_once(out, [], [f"t-{i}" for i in range(8)])
    assert all(line["response"]["status_code"] == 200 for line in out)

    report = run("flows.py", job["output_file_id"], "key-wrong")
    assert report["cancel_first"]["status"] in ("CANCELING", "CANCELLED")  # 1.x knows CANCELING
    assert report["cancel_final"]["status"] == "CANCELLED"
    assert report["bad"]["status"] == "FAILED" and "Line 2" in report["bad"]["error"]
    listed = [j["id"] for j in report["list"]]
    assert listed == [report["bad"]["id"], report["cancel_final"]["id"], job["id"]]  # newest first
    assert job["output_file_id"] in {f["id"] for f in report["files"]}
    assert report["output_file"]["purpose"] == "batch-api"
    assert (report["unknown_file"]["type"], report["unknown_file"]["status"]) == ("InvalidRequestError", 404)
    assert (report["wrong_endpoint"]["type"], report["wrong_endpoint"]["status"]) == ("InvalidRequestError", 400)
    assert "invalid_endpoint" in report["wrong_endpoint"]["message"]
    assert (report["wrong_key"]["type"], report["wrong_key"]["status"]) == ("AuthenticationError", 401)
