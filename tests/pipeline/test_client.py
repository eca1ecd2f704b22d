"""The Python client end to end against the real stack: upload, create, wait with a progress callback,
download; refusals as ``ClientError`` with the API's status and code; and ``tokenbatch submit --wait``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import Stack, batch_file, request_line, start_stack

from scheduler.client import Client, ClientError
from scheduler.redis_server import EmbeddedRedis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
          tiny_model_dir: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("client"), redis_server, tiny_model_dir, api=True, batch=2)
    yield s
    s.stop()


def test_upload_create_wait_and_download(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_bytes(batch_file(6, prefix="c") + request_line("too-long", "word " * 600))
    client = Client(stack.base_url, "key-acme")
    uploaded = client.upload(path)
    assert (uploaded["object"], uploaded["purpose"], uploaded["bytes"]) == ("file", "batch", path.stat().st_size)
    batch = client.create(uploaded["id"], metadata={"team": "search"})
    assert batch["status"] == "validating" and batch["metadata"] == {"team": "search"}

    seen: list[dict[str, Any]] = []
    final = client.wait(batch["id"], on_progress=seen.append, interval=0.2)
    assert final["status"] == "completed", stack.logs()
    assert seen[-1] == final and len(seen) >= 2
    done = [b["request_counts"]["completed"] + b["request_counts"]["failed"] for b in seen]
    assert done == sorted(done), "progress never goes backwards"
    assert final["request_counts"] == {"total": 7, "completed": 6, "failed": 1}

    out = [orjson.loads(x) for x in client.content(final["output_file_id"]).splitlines()]
    assert [x["custom_id"] for x in out] == [f"c-{i}" for i in range(6)]
    assert all(x["response"]["status_code"] == 200 for x in out)
    err = [orjson.loads(x) for x in client.content(final["error_file_id"]).splitlines()]
    assert [(x["custom_id"], x["error"]["code"]) for x in err] == [("too-long", "context_length_exceeded")]
    assert client.retrieve(batch["id"])["id"] == batch["id"]


def test_refusals_raise_client_errors_with_status_and_code(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(batch_file(1))
    acme = Client(stack.base_url + "/v1", "key-acme")
    file_id = acme.upload(path)["id"]
    with pytest.raises(ClientError) as bad_window:
        acme.create(file_id, completion_window="2 days")
    assert (bad_window.value.status, bad_window.value.code) == (400, "invalid_completion_window")
    with pytest.raises(ClientError) as other_tenant:
        Client(stack.base_url, "key-globex").create(file_id)
    assert other_tenant.value.status == 404
    with pytest.raises(ClientError) as bad_key:
        Client(stack.base_url, "key-nobody").retrieve("batch_x")
    assert (bad_key.value.status, bad_key.value.code) == (401, "invalid_api_key")


def test_cli_submit_waits_with_a_progress_bar_and_saves_the_output(stack: Stack, tmp_path: Path) -> None:
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    path.write_bytes(batch_file(3, prefix="cli"))
    env = {**os.environ, "TOKENBATCH_DATA_DIR": str(tmp_path)}
    env.pop("TOKENBATCH_REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "submit", str(path), "--wait", "--url",
                           stack.base_url, "--key", "key-acme", "-o", str(out)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr + stack.logs()
    assert "created" in proc.stderr and "output:" in proc.stderr
    assert [orjson.loads(x)["custom_id"] for x in out.read_bytes().splitlines()] == ["cli-0", "cli-1", "cli-2"]

    # `tokenbatch status` reads the same Redis: batches per stage (this one completed), budget and queue.
    env["TOKENBATCH_REDIS_URL"] = stack.settings.redis_url or ""
    env["TOKENBATCH_MODELS"] = str(stack.settings.models)
    status = subprocess.run([sys.executable, "-m", "scheduler.cli", "status"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert status.returncode == 0, status.stderr
    completed = re.search(r"completed (\d+)", status.stdout)
    assert completed and int(completed.group(1)) >= 1, status.stdout
    assert re.search(r"^tiny: 0/\d+ tokens enqueued, 0 leases, queue 0$", status.stdout, re.M), status.stdout
