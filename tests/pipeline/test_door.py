"""The Celery door end to end: a separate process that imports only celery submits and follows batches by
task name, against the real stack, and gets the HTTP API's own refusals as task errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Stack, batch_file, request_line, start_stack

from scheduler.redis_server import EmbeddedRedis

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter: celery and the standard library only. Each step is (name, kwargs[, options]);
# it prints one JSON line with each step's result, or the error's class name, message, param and code.
CALLER = textwrap.dedent("""
    import json, sys, time
    from celery import Celery

    url, steps = sys.argv[1], json.loads(sys.stdin.read())
    app = Celery("caller", broker=url, backend=url)
    out = []
    for name, kwargs, *options in steps:
        if name == "wait":  # poll get_batch until the batch ends
            deadline = time.monotonic() + 120
            while True:
                batch = app.send_task("tokenbatch.get_batch", kwargs=kwargs).get(timeout=30)
                if batch["status"] in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            out.append({"result": batch})
            continue
        try:
            sent = app.send_task(name, kwargs=kwargs, **(options[0] if options else {}))
            out.append({"result": sent.get(timeout=30)})
        except Exception as exc:
            out.append({"error": type(exc).__name__, "message": exc.args[0], "param": exc.args[1],
                        "code": exc.args[2]})
    ours = sorted(m for m in sys.modules if m.split(".")[0] in ("scheduler", "tasks", "limits", "inference"))
    print(json.dumps({"steps": out, "imported": ours}))
""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
          tiny_model_dir: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("door"), redis_server, tiny_model_dir, api=True, batch=4)
    yield s
    s.stop()


def call(stack: Stack, steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", CALLER, stack.settings.redis_url or ""], input=json.dumps(steps),
                          capture_output=True, text=True, timeout=240, cwd=stack.settings.data_dir)
    assert proc.returncode == 0, proc.stderr + stack.logs()
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reply["imported"] == [], "the caller imported tokenbatch code"
    return reply["steps"]  # type: ignore[no-any-return]


def http_error(stack: Stack, method: str, path: str, key: str = "key-acme", **kwargs: Any) -> dict[str, Any]:
    """The HTTP API's refusal as the door reports it: message, param and code."""
    r = httpx.request(method, stack.base_url + path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
    assert r.status_code >= 400, r.text
    return {k: r.json()["error"][k] for k in ("message", "param", "code")}


def lines(n: int, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(request_line(f"{prefix}-{i}", f"say hello {i}")) for i in range(n)]


def test_a_batch_sent_by_task_name_runs_and_reads_back_as_the_openai_object(stack: Stack) -> None:
    submitted, = call(stack, [("tokenbatch.submit", {"tenant": "acme", "requests": lines(5, "door"),
                                                     "metadata": {"job": "nightly"}})])
    batch_id = submitted["result"]
    assert batch_id.startswith("batch_")
    final, other = call(stack, [("wait", {"batch_id": batch_id, "tenant": "acme"}),
                                ("tokenbatch.get_batch", {"batch_id": batch_id, "tenant": "globex"})])
    batch = final["result"]
    assert batch["object"] == "batch" and batch["id"] == batch_id and batch["status"] == "completed", stack.logs()
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert batch["metadata"] == {"job": "nightly"} and batch["output_file_id"]
    out, err = stack.lines(stack.batch(batch_id))
    assert sorted(x["custom_id"] for x in out) == [f"door-{i}" for i in range(5)] and err == []
    # A tenant sees only its own batches, through the door as over HTTP.
    assert other == {"error": "NotFound", **http_error(stack, "GET", f"/v1/batches/{batch_id}", key="key-globex")}
    assert other["code"] == "batch_not_found"


def test_the_task_id_is_an_idempotency_key(stack: Stack) -> None:
    step = ("tokenbatch.submit", {"tenant": "acme", "requests": lines(2, "idem")}, {"task_id": "nightly-2024-06-01"})
    first, again = call(stack, [step, step])
    assert first["result"] == again["result"]
    final, = call(stack, [("wait", {"batch_id": first["result"], "tenant": "acme"})])
    assert final["result"]["request_counts"]["completed"] == 2


def test_input_url_is_read_through_fsspec_but_never_outside_storage(stack: Stack, tmp_path: Path) -> None:
    source = Path(stack.settings.files_url) / "incoming" / "requests.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(batch_file(3, prefix="url"))
    outside = tmp_path / "secret.jsonl"
    outside.write_bytes(batch_file(1))
    submitted, refused = call(stack, [("tokenbatch.submit", {"tenant": "globex", "input_url": source.as_uri()}),
                                      ("tokenbatch.submit", {"tenant": "globex", "input_url": str(outside)})])
    final, = call(stack, [("wait", {"batch_id": submitted["result"], "tenant": "globex"})])
    assert final["result"]["status"] == "completed" and final["result"]["request_counts"]["completed"] == 3
    assert refused["error"] == "InvalidRequest" and "under the storage root" in refused["message"]


def files_of(stack: Stack, key: str = "key-acme") -> list[str]:
    r = httpx.get(stack.base_url + "/v1/files", headers={"Authorization": f"Bearer {key}"}, params={"limit": 100})
    return [f["id"] for f in r.json()["data"]]


def test_refusals_come_back_as_task_errors_with_the_http_messages(stack: Stack) -> None:
    upload = httpx.post(stack.base_url + "/v1/files", headers={"Authorization": "Bearer key-acme"},
                        data={"purpose": "batch"}, files={"file": ("in.jsonl", batch_file(1))}).json()
    create = {"input_file_id": upload["id"], "endpoint": "/v1/chat/completions"}
    nowhere = (Path(stack.settings.files_url) / "incoming" / "none.jsonl").as_uri()
    window, meta, endpoint, both, missing, tenant = call(stack, [
        ("tokenbatch.submit", {"tenant": "acme", "requests": lines(1, "w"), "completion_window": "2 days"}),
        ("tokenbatch.submit", {"tenant": "acme", "requests": lines(1, "m"), "metadata": {"k": "v" * 600}}),
        ("tokenbatch.submit", {"tenant": "acme", "requests": lines(1, "e"), "endpoint": "/v1/embeddings"}),
        ("tokenbatch.submit", {"tenant": "acme", "requests": lines(1, "b"), "input_url": "file:///x"}),
        ("tokenbatch.submit", {"tenant": "acme", "input_url": nowhere}),
        ("tokenbatch.submit", {"tenant": "acme corp", "requests": lines(1, "t")}),
    ])
    assert window == {"error": "InvalidRequest", **http_error(
        stack, "POST", "/v1/batches", json={**create, "completion_window": "2 days"})}
    assert (window["param"], window["code"]) == ("completion_window", "invalid_completion_window")
    assert meta == {"error": "InvalidRequest", **http_error(
        stack, "POST", "/v1/batches", json={**create, "metadata": {"k": "v" * 600}})}
    assert endpoint == {"error": "InvalidRequest", **http_error(
        stack, "POST", "/v1/batches", json={**create, "endpoint": "/v1/embeddings"})}
    assert both["error"] == "InvalidRequest" and "exactly one" in both["message"]
    assert missing["error"] == "InvalidRequest" and "could not be read" in missing["message"]
    assert tenant["error"] == "InvalidRequest" and "letters, digits" in tenant["message"]
    assert (tenant["param"], tenant["code"]) == ("tenant", "invalid_tenant")
    # A refused submit leaves no upload behind: the newest file is still the one uploaded above.
    assert files_of(stack)[0] == upload["id"]


def test_a_bad_file_fails_the_batch_as_over_http(stack: Stack) -> None:
    bad = [request_line("dup", "hi").decode(), request_line("dup", "again").decode(), "not json"]
    submitted, = call(stack, [("tokenbatch.submit", {"tenant": "acme", "requests": bad})])
    final, cancel = call(stack, [("wait", {"batch_id": submitted["result"], "tenant": "acme"}),
                                 ("tokenbatch.cancel_batch", {"batch_id": submitted["result"], "tenant": "acme"})])
    batch = final["result"]
    assert batch["status"] == "failed"
    assert {e["line"] for e in batch["errors"]["data"]} >= {2, 3}
    assert cancel == {"error": "Conflict", **http_error(stack, "POST", f"/v1/batches/{submitted['result']}/cancel")}

