"""Live scrapes against a real Redis: the API's /metrics and a worker's endpoint pass ``promtool check
metrics``, show shared state read from Redis at scrape time, and the dashboard and alert rules query only
metrics the code exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from limits import TokenBudget
from scheduler import keys
from scheduler import worker_metrics as wm
from scheduler.api import create_app, serve_in_thread
from scheduler.lifecycle import Stage, transition
from scheduler.metrics import RedisCollector
from scheduler.records import Records
from scheduler.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MODELS = '[[models]]\nid = "tiny"\npath = "/nowhere"\ncontext_length = 512\n'
# Built into Prometheus, or produced by its rules: not ours to export.
BUILTIN = {"up", "scrape_duration_seconds", "ALERTS"}


def promtool() -> str:
    """promtool from Debian's prometheus package (`make tools`); CI must have it, a laptop may skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make tools` installs it")
        pytest.skip("promtool is not installed (`make tools`)")
    return found


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, port_run: Callable[[int], int]) -> Settings:
    (tmp_path / "models.toml").write_text(MODELS)
    return Settings(redis_url=redis_url, data_dir=tmp_path, models=tmp_path / "models.toml", api_keys="k:acme",
                    enqueued_tokens_per_model=5000, metrics_port=port_run(3))


@pytest.fixture
def serve(settings: Settings, redis_client: redis.Redis) -> Iterator[Callable[..., int]]:
    """Start worker endpoints (closed after the test); returns each one's port."""
    opened: list[wm.Endpoint] = []

    def start(*extra: Collector, metrics_port: int | None = None) -> int:
        endpoint = wm.serve(settings.replace(metrics_port=metrics_port if metrics_port is not None else
                                             settings.metrics_port), redis_client, *extra)
        assert endpoint is not None
        opened.append(endpoint)
        return endpoint.port

    yield start
    for endpoint in opened:
        endpoint.close()


@pytest.fixture
def api(settings: Settings, redis_client: redis.Redis) -> Iterator[SimpleNamespace]:
    with serve_in_thread(create_app(settings, redis_client, lambda name, args: None)) as url:
        yield SimpleNamespace(url=url)


def check(text: str) -> None:
    proc = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def exported(text: str) -> set[str]:
    """Every series name a scrape can carry: each family's samples, including histogram parts."""
    names: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\w+)", line)
        if m:
            name, kind = m.groups()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            elif kind == "counter":
                names.add(name.removesuffix("_total") + "_created")
    return names


def queried(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions and label names are not followed by '{' or a space)."""
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b", re.sub(r'"[^"]*"', '""', expr)))
    return {w for w in words if w.startswith("tokenbatch_") or w in BUILTIN}


def fake_device() -> list[wm.DeviceMemory]:
    return [wm.DeviceMemory("cuda:0", allocated=2 << 30, reserved=3 << 30, used=5 << 30, total=80 << 30)]


def seed(r: redis.Redis) -> dict[str, str]:
    """A little of everything: batches in three stages, requests, a reservation, a head waiting for budget."""
    records = Records(r)
    ids = {}
    for name in ("validating", "queued", "failed", "near"):
        ids[name] = records.create_batch(tenant="acme", input_file_id="f", endpoint="e", completion_window="24h",
                                         window_seconds=3600, metadata=None).id
    assert transition(r, ids["queued"], Stage.QUEUED) and transition(r, ids["failed"], Stage.FAILED)
    assert transition(r, ids["near"], Stage.QUEUED)
    now = int(r.time()[0])
    r.hset(keys.batch(ids["near"]), mapping={"created_at": now - 95, "expires_at": now + 5})  # 5% of it left
    r.hset(keys.requests_by_model(), mapping={"tiny|success": 7, "tiny|error": 2})
    TokenBudget(r).reserve("tiny", f"{ids['queued']}:0", 1200, cap=5000, lease_seconds=60)
    # Two heads stamped as waiting for the budget 40 s ago: one still pending, one dropped by a cancel.
    r.hset(keys.microbatches(ids["queued"]), mapping={"1": "pending", "2": "drop"})
    since = int(r.time()[0]) - 40
    r.hset(keys.waiting_since("tiny"), mapping={f"{ids['queued']}:1": since, f"{ids['queued']}:2": since})
    r.rpush(keys.model_queue("tiny", "acme"), f"{ids['queued']}:1", f"{ids['queued']}:3")
    r.sadd(keys.model_tenants("tiny"), "acme")
    return ids


def test_a_worker_endpoint_serves_its_own_and_the_shared_metrics(settings: Settings, redis_client: redis.Redis,
                                                                 serve: Callable[..., int]) -> None:
    seed(redis_client)
    wm.microbatch_started()
    wm.microbatch_done("tiny", requests=4, tokens=900, prompt_tokens=120, completion_tokens=32)
    wm.observe_batch_end(100, {"queued_at": 102, "in_progress_at": 103, "finalizing_at": 110,
                               "completed_at": 111}, "completed")
    port = serve(wm.DeviceCollector(fake_device))
    assert port == settings.metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    check(text)
    got = samples(text)
    assert got[("tokenbatch_redis_up", ())] == 1
    assert got[("tokenbatch_batches", (("stage", "queued"),))] == 2
    assert got[("tokenbatch_batches", (("stage", "failed"),))] == 1
    assert got[("tokenbatch_batches_near_deadline", ())] == 1
    assert 0 < got[("tokenbatch_batch_deadline_min_remaining_seconds", ())] <= 6
    assert got[("tokenbatch_requests_total", (("model", "tiny"), ("outcome", "error")))] == 2
    assert got[("tokenbatch_enqueued_tokens", (("model", "tiny"),))] == 1200
    assert got[("tokenbatch_budget_waiting_microbatches", (("model", "tiny"),))] == 1  # the dropped one is not
    assert 39 <= got[("tokenbatch_budget_wait_oldest_seconds", (("model", "tiny"),))] <= 45
    assert got[("tokenbatch_queued_microbatches", (("model", "tiny"),))] == 2
    assert got[("tokenbatch_generated_tokens_total", (("model", "tiny"),))] >= 32
    assert got[("tokenbatch_microbatch_duration_seconds_count", (("model", "tiny"),))] >= 1
    assert got[("tokenbatch_worker_generated_tokens_per_second", (("model", "tiny"),))] > 0
    assert got[("tokenbatch_batch_stage_duration_seconds_sum", (("stage", "in_progress"),))] >= 7
    assert got[("tokenbatch_device_memory_used_bytes", (("device", "cuda:0"),))] == 5 << 30


def test_workers_sharing_a_port_setting_take_the_next_free_ports(settings: Settings, redis_client: redis.Redis,
                                                                 serve: Callable[..., int]) -> None:
    assert serve() == settings.metrics_port
    assert serve() == settings.metrics_port + 1
    assert wm.serve(settings.replace(metrics_port=0), redis_client) is None


def test_the_api_scrape_passes_promtool(api: SimpleNamespace, redis_client: redis.Redis) -> None:
    seed(redis_client)
    httpx.get(f"{api.url}/v1/batches", headers={"authorization": "Bearer k"})
    text = httpx.get(f"{api.url}/metrics").text
    check(text)
    assert samples(text)[("tokenbatch_batches", (("stage", "validating"),))] == 1


def test_an_unreachable_redis_is_a_gauge_not_a_failed_scrape(settings: Settings) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    families = list(RedisCollector(dead, settings).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("tokenbatch_redis_up", [0])]


def test_the_dashboard_and_alerts_query_only_exported_metrics(api: SimpleNamespace,
                                                              serve: Callable[..., int]) -> None:
    names = exported(httpx.get(f"{api.url}/metrics").text)
    names |= exported(httpx.get(f"http://127.0.0.1:{serve(wm.DeviceCollector(fake_device))}/metrics").text)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "tokenbatch.json").read_text())
    panels = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = [v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
                 for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for where, exprs in (("dashboard", panels + variables), ("alert rules", alerts)):
        used = set().union(*(queried(e) for e in exprs))
        assert not used - names - BUILTIN, f"the {where} query metrics never exported: {sorted(used - names)}"
    guide = (DEPLOY.parent / "docs" / "operations.md").read_text()
    documented = {n for n in re.findall(r"\b(tokenbatch_[a-z0-9_]+)", guide) if not n.endswith("_")}
    assert len(documented) > 20 and not documented - names, f"documented, never exported: {documented - names}"
    # The dashboard shows what the issue names: stages, throughput, budget vs cap, queues, latency, workers.
    shown = set().union(*(queried(e) for e in panels))
    assert {"tokenbatch_batches", "tokenbatch_requests_total", "tokenbatch_generated_tokens_total",
            "tokenbatch_enqueued_tokens", "tokenbatch_enqueued_tokens_limit", "tokenbatch_queue_length",
            "tokenbatch_microbatch_duration_seconds_bucket", "up"} <= shown
