"""`tokenbatch up` as an operator runs it: the whole stack from one command, an SDK batch through it, a
SIGKILLed part restarted, and everything gone after SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from harness import TINY, batch_file, wait_for
from ports import quiet_ports

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    parents: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        parents.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_up_serves_a_batch_restarts_a_killed_part_and_stops_clean(tmp_path: Path, tiny_model_dir: Path) -> None:
    from openai import OpenAI

    models = tmp_path / "models.toml"
    models.write_text(TINY.format(path=tiny_model_dir.as_posix(), batch=4))
    port = quiet_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBATCH_")}
    env.update(TOKENBATCH_DATA_DIR=str(tmp_path / "data"), TOKENBATCH_MODELS=str(models),
               TOKENBATCH_SWEEP_INTERVAL="1", TOKENBATCH_LEASE_SECONDS="3")
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "up", "--port", str(port)], env=env,
                          stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def said() -> str:
        return (tmp_path / "up.log").read_text(errors="replace")

    try:
        wait_for(lambda: "API key:" in said(), 90, "up to print its key", said)
        wait_for(lambda: _ok(base), 60, "the API", said)
        key = re.search(r"API key: (\S+)", said()).group(1)  # type: ignore[union-attr]
        client = OpenAI(base_url=base + "/v1", api_key=key, _strict_response_validation=True)
        f = client.files.create(file=("in.jsonl", batch_file(8)), purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        wait_for(lambda: client.batches.retrieve(batch.id).status == "completed", 120, "the batch", said)
        done = client.batches.retrieve(batch.id)
        ids = [orjson.loads(x)["custom_id"] for x in client.files.content(done.output_file_id).content.splitlines()]
        assert ids == [f"r-{i}" for i in range(8)]

        # A part that dies is restarted, as systemd would.
        worker_pids = {p for p in _children(up.pid) if "worker" in _cmdline(p) and "infer" not in _cmdline(p)}
        assert worker_pids
        os.kill(min(worker_pids), signal.SIGKILL)
        wait_for(lambda: "worker exited" in said() or "restarting" in said(), 30, "the restart", said)
        f2 = client.files.create(file=("in2.jsonl", batch_file(4, "s")), purpose="batch")
        b2 = client.batches.create(input_file_id=f2.id, endpoint="/v1/chat/completions", completion_window="24h")
        wait_for(lambda: client.batches.retrieve(b2.id).status == "completed", 120, "a batch after the restart",
                 said)
        family = _children(up.pid)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        log.close()
    time.sleep(0.5)
    left = {p for p in family if Path(f"/proc/{p}").exists() and _state(p) != "Z"}
    assert not left, f"processes left behind: {[_cmdline(p) for p in left]}"


def _ok(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "gone"
