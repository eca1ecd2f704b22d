"""Every process of a running stack serves metrics that pass ``promtool check metrics``, and a batch moves
the workers' own counters: micro-batches and tokens on the inference worker, stage times and budget waits
on the control worker. The stack is the real one: the supervisor's API, workers and beat, a tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from scheduler.celery_app import make_app, sender
from scheduler.lifecycle import TERMINAL, Stage
from scheduler.redis_server import EmbeddedRedis
from scheduler.service import ENDPOINT, Service
from scheduler.settings import Settings
from scheduler.supervisor import Supervisor, stack_parts

pytestmark = pytest.mark.slow

MODELS = """\
[[models]]
id = "tiny"
path = "{path}"
context_length = 512
max_batch_requests = 4
max_batch_tokens = 4096
default_max_tokens = 8
"""
CAP = 80  # about two requests: one micro-batch at a time, so the next one waits for the budget


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
          tiny_model_dir: Path, port_run: Callable[[int], int]) -> Iterator[Settings]:
    tmp = tmp_path_factory.mktemp("metrics-live")
    (tmp / "models.toml").write_text(MODELS.format(path=tiny_model_dir.as_posix()))
    url = f"redis://{redis_server.host}:{redis_server.port}/14"
    redis.Redis.from_url(url).flushdb()
    base = port_run(3)  # the API, then the two workers' metrics ports
    settings = Settings.load(env={}, data_dir=tmp, redis_url=url, models=tmp / "models.toml", port=base,
                             metrics_port=base + 1, api_keys="k:acme", enqueued_tokens_per_model=CAP,
                             lease_seconds=5, sweep_interval=1)
    sup = Supervisor(settings, stack_parts(settings, ["tiny"]), log_dir=tmp / "logs")
    sup.start()
    yield settings
    sup.stop()


def test_every_process_serves_metrics_that_pass_promtool(stack: Settings) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make tools` installs it")
        pytest.skip("promtool is not installed (`make tools`)")
    ports = range(stack.metrics_port, stack.metrics_port + 2)  # the control and the inference worker
    wait_until(lambda: all(get(f"http://127.0.0.1:{p}/metrics") for p in ports), 90, "both worker endpoints")
    wait_until(lambda: get(f"http://127.0.0.1:{stack.port}/healthz"), 60, "the API")

    client = redis.Redis.from_url(stack.redis_url or "")
    service = Service(stack, client, sender(make_app(stack)))
    lines = b"".join(orjson.dumps({"custom_id": f"m-{i}", "method": "POST", "url": ENDPOINT, "body": {
        "model": "tiny", "messages": [{"role": "user", "content": f"say hi {i}"}], "max_tokens": 8}}) + b"\n"
        for i in range(8))
    f = service.store_upload("acme", "in.jsonl", "batch", [lines])
    batch = service.create_batch("acme", input_file_id=f.id, endpoint=ENDPOINT)
    wait_until(lambda: (b := service.records.batch(batch.id)) is not None and b.stage in TERMINAL, 120, "the batch")
    assert service.records.batch(batch.id).stage == Stage.COMPLETED  # type: ignore[union-attr]

    def scrape() -> dict[str, str | None]:
        scrapes = {"api": get(f"http://127.0.0.1:{stack.port}/metrics")}
        for p in ports:
            text = get(f"http://127.0.0.1:{p}/metrics") or ""
            scrapes["infer" if "tokenbatch_worker_model_loaded{" in text else "control"] = text
        return scrapes

    def settled(s: dict[str, str | None]) -> bool:
        """Process-local observations land just after the Redis writes a test sees (task_postrun)."""
        completed = ("tokenbatch_batch_duration_seconds_count", (("stage", "completed"),))
        done = values(s.get("control") or "").get(completed)
        ran = values(s.get("infer") or "").get(("tokenbatch_microbatch_requests_sum", (("model", "tiny"),)), 0)
        return done == 1 and ran >= 8

    scrapes = scrape()
    deadline = time.monotonic() + 30
    while not settled(scrapes) and time.monotonic() < deadline:
        time.sleep(0.2)
        scrapes = scrape()
    assert set(scrapes) == {"api", "control", "infer"}
    for name, text in scrapes.items():
        proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stdout.strip(), f"{name}: {proc.stdout}{proc.stderr}"

    infer, control = values(scrapes["infer"] or ""), values(scrapes["control"] or "")
    tiny = (("model", "tiny"),)
    assert infer[("tokenbatch_worker_model_loaded", tiny)] == 1
    assert infer[("tokenbatch_microbatch_duration_seconds_count", tiny)] >= 4  # 8 requests, at most 2 a time
    assert infer[("tokenbatch_microbatch_requests_sum", tiny)] >= 8
    assert infer[("tokenbatch_generated_tokens_total", tiny)] > 0
    assert infer[("tokenbatch_prompt_tokens_total", tiny)] > 0
    assert infer[("tokenbatch_worker_generated_tokens_per_second", tiny)] > 0
    assert control[("tokenbatch_batch_duration_seconds_count", (("stage", "completed"),))] == 1
    assert control[("tokenbatch_batch_stage_duration_seconds_count", (("stage", "in_progress"),))] == 1
    assert control[("tokenbatch_budget_wait_seconds_count", tiny)] >= 1
    # Shared state agrees wherever it is scraped.
    for text in scrapes.values():
        got = values(text or "")
        assert got[("tokenbatch_requests_total", (("model", "tiny"), ("outcome", "success")))] == 8
        assert got[("tokenbatch_batches", (("stage", "completed"),))] == 1
        assert got[("tokenbatch_enqueued_tokens", tiny)] == 0
