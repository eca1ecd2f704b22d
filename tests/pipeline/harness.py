"""The real stack for pipeline tests, as plain helpers (``conftest.py`` holds only the fixture, so no test
module imports ``conftest``, a name every test folder has): the project's own supervisor runs the API, a
control worker, an inference worker on the tiny model and celery beat as subprocesses, against a real
redis-server. Tests kill those processes with SIGKILL; the supervisor restarts them as systemd would."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from ports import quiet_ports

from scheduler.celery_app import make_app, sender
from scheduler.lifecycle import TERMINAL
from scheduler.records import BatchRecord
from scheduler.redis_server import EmbeddedRedis
from scheduler.service import ENDPOINT, Service
from scheduler.settings import Settings
from scheduler.supervisor import Part, Supervisor, stack_parts

TINY = """\
[[models]]
id = "tiny"
path = "{path}"
context_length = 512
max_batch_requests = {batch}
max_batch_tokens = 4096
default_max_tokens = 8
input_price_per_mtok = 1.0
output_price_per_mtok = 2.0
"""
_db = itertools.count(1)
KEYS = "key-acme:acme,key-globex:globex"


def request_line(custom_id: str, content: str, max_tokens: int = 8, model: str = "tiny") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}) + b"\n"


def batch_file(n: int, prefix: str = "r", max_tokens: int = 8) -> bytes:
    words = ["what is the capital of France", "name a colour", "count to three", "say hello", "why is the sky blue"]
    return b"".join(request_line(f"{prefix}-{i}", f"{words[i % 5]} {i}", max_tokens) for i in range(n))


class Stack:
    def __init__(self, tmp: Path, redis_url: str, models: Path, api: bool, **overrides: Any) -> None:
        self.settings = Settings.load(
            env={}, data_dir=tmp, redis_url=redis_url, models=models, lease_seconds=3, sweep_interval=1,
            api_keys=KEYS, port=quiet_ports(), **overrides)
        self.sup = Supervisor(self.settings, stack_parts(self.settings, ["tiny"], api=api), log_dir=tmp / "logs")
        self.api = api
        self.client = redis.Redis.from_url(redis_url)
        self.app = make_app(self.settings)
        self.service = Service(self.settings, self.client, sender(self.app))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> Stack:
        """Start every part and wait until both workers answer a ping (and the API /healthz): a test's first
        task then never waits on a worker still booting. A stack that fails to start is stopped, so none
        of its processes outlives it to take tasks from a later stack on the same database."""
        self.sup.start()
        try:
            wait_for(lambda: len(self.app.control.ping(timeout=1.0, limit=2)) >= 2, 120,
                     "both workers to answer a ping", self.logs)
            if self.api:
                wait_for(lambda: _healthy(self.base_url), 60, "the API to answer /healthz", self.logs)
        except BaseException:
            self.stop()
            raise
        return self

    def part(self, name: str) -> Part:
        return next(p for p in self.sup.parts if p.name == name)

    def kill(self, name: str) -> int:
        """SIGKILL a part (its whole process group); the supervisor restarts it."""
        proc = self.part(name).process
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.pid

    def pause(self, name: str) -> None:
        """SIGSTOP a part: its work in flight stays in flight until ``resume`` (no timing luck in tests)."""
        proc = self.part(name).process
        assert proc is not None
        os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        proc = self.part(name).process
        assert proc is not None
        os.killpg(proc.pid, signal.SIGCONT)

    def submit(self, data: bytes, tenant: str = "acme", window: str = "24h") -> BatchRecord:
        f = self.service.store_upload(tenant, "input.jsonl", "batch", [data])
        return self.service.create_batch(tenant, input_file_id=f.id, endpoint=ENDPOINT, completion_window=window)

    def batch(self, batch_id: str) -> BatchRecord:
        b = self.service.records.batch(batch_id)
        assert b is not None
        return b

    def wait(self, batch_id: str, timeout: float = 120) -> BatchRecord:
        wait_for(lambda: self.batch(batch_id).stage in TERMINAL, timeout, f"batch {batch_id} to end", self.logs)
        return self.batch(batch_id)

    def lines(self, b: BatchRecord) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        def read(file_id: str | None) -> list[dict[str, Any]]:
            if not file_id:
                return []
            rec = self.service.records.get_file(b.tenant, file_id)
            with self.service.open_file(rec) as fh:
                return [orjson.loads(x) for x in fh if x.strip()]

        return read(b.output_file_id), read(b.error_file_id)

    def logs(self) -> str:
        out = []
        for p in sorted(self.sup.log_dir.glob("*.log")):
            out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        self.sup.stop()
        self.client.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(cond: Callable[[], bool], timeout: float, what: str, diag: Callable[[], str] | None = None,
             every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diag() if diag else ''}")


def start_stack(tmp: Path, redis_server: EmbeddedRedis, tiny_dir: Path, api: bool = False, batch: int = 4,
                redis_url: str | None = None, **overrides: Any) -> Stack:
    """A stack serving the tiny model in its own logical database (or on ``redis_url``), started."""
    tmp.mkdir(parents=True, exist_ok=True)
    models = tmp / "models.toml"
    models.write_text(TINY.format(path=tiny_dir.as_posix(), batch=batch))
    url = redis_url or f"redis://{redis_server.host}:{redis_server.port}/{next(_db) % 16}"
    redis.Redis.from_url(url).flushdb()
    return Stack(tmp / "stack", url, models, api, **overrides).start()


def first_results(stack: Stack, batch_id: str) -> None:
    """Wait (tightly: the tiny model can finish a micro-batch in 15 ms) until some requests have results and
    some micro-batch is dispatched but unrecorded, then freeze the inference worker there."""

    def caught() -> bool:
        states = stack.service.microbatches.states(batch_id).values()
        return stack.batch(batch_id).completed > 0 and any(s.startswith("run:") for s in states)

    wait_for(caught, 120, "first results with work still in flight", stack.logs, every=0.001)
    stack.pause("infer-tiny")
    assert stack.batch(batch_id).stage not in TERMINAL, "the batch ended before the worker could be frozen"


def assert_exactly_once(out: list[dict[str, Any]], err: list[dict[str, Any]], ids: list[str]) -> None:
    seen = [line["custom_id"] for line in out + err]
    assert sorted(seen) == sorted(ids), "every custom_id exactly once across output and error files"
