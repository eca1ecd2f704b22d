"""What operators see: /healthz, /metrics read from Redis at scrape time, /v1/models from the models file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from limits import TokenBudget
from scheduler import keys, metrics
from scheduler.api import create_app, serve_in_thread
from scheduler.lifecycle import Stage, transition
from scheduler.records import Records
from scheduler.redis_server import EmbeddedRedis
from scheduler.settings import Settings

KEYS = "key-alice:alice"
MODELS = """
[[models]]
id = "tiny"
path = "/nowhere"
context_length = 512
input_price_per_mtok = 0.1
output_price_per_mtok = 0.2

[[models]]
id = "small-llm"
path = "/nowhere"
context_length = 2048
"""


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    data_dir = tmp_path_factory.mktemp("api")
    (data_dir / "models.toml").write_text(MODELS)
    client = redis.Redis.from_url(redis_server.url)
    settings = Settings(redis_url=redis_server.url, data_dir=data_dir, api_keys=KEYS, models=data_dir / "models.toml",
                        enqueued_tokens_per_model=5000)
    with serve_in_thread(create_app(settings, client, lambda name, args: None)) as url:
        yield SimpleNamespace(url=url, client=client, settings=settings)
    client.close()


@pytest.fixture
def api(server: SimpleNamespace, redis_url: str) -> SimpleNamespace:
    return server  # redis_url flushed Redis


def scrape(api: SimpleNamespace) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{api.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_healthz_answers_when_redis_does(api: SimpleNamespace) -> None:
    r = httpx.get(f"{api.url}/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_models_are_listed_in_openais_shape(api: SimpleNamespace) -> None:
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="key-alice", max_retries=0,
                           _strict_response_validation=True)
    models = list(client.models.list())
    assert [m.id for m in models] == ["tiny", "small-llm"]
    assert all(m.object == "model" and m.owned_by == "tokenbatch" and m.created > 0 for m in models)
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-5")


def test_metrics_read_shared_state_from_redis_at_scrape_time(api: SimpleNamespace) -> None:
    r = api.client
    records = Records(r)
    b1 = records.create_batch(tenant="t", input_file_id="f", endpoint="e", completion_window="24h",
                              window_seconds=60, metadata=None)
    b2 = records.create_batch(tenant="t", input_file_id="f", endpoint="e", completion_window="24h",
                              window_seconds=60, metadata=None)
    b3 = records.create_batch(tenant="t", input_file_id="f", endpoint="e", completion_window="24h",
                              window_seconds=60, metadata=None)
    assert transition(r, b2.id, Stage.QUEUED) and transition(r, b3.id, Stage.FAILED)
    r.hset(keys.requests_by_model(), mapping={"tiny|success": 7, "tiny|error": 2})
    r.rpush("tokenbatch.control", "m1", "m2")
    r.rpush("tokenbatch.infer.tiny", "m3")
    TokenBudget(r).reserve("tiny", f"{b2.id}:0", 1200, cap=5000, lease_seconds=60)

    got = scrape(api)
    assert got[("tokenbatch_redis_up", ())] == 1
    assert got[("tokenbatch_batches", (("stage", "validating"),))] == 1
    assert got[("tokenbatch_batches", (("stage", "queued"),))] == 1
    assert got[("tokenbatch_batches", (("stage", "failed"),))] == 1
    assert got[("tokenbatch_batches", (("stage", "completed"),))] == 0
    assert got[("tokenbatch_requests_total", (("model", "tiny"), ("outcome", "success")))] == 7
    assert got[("tokenbatch_requests_total", (("model", "tiny"), ("outcome", "error")))] == 2
    assert got[("tokenbatch_enqueued_tokens", (("model", "tiny"),))] == 1200
    assert got[("tokenbatch_enqueued_tokens_limit", (("model", "tiny"),))] == 5000
    assert got[("tokenbatch_enqueued_tokens", (("model", "small-llm"),))] == 0  # served, never reserved
    assert got[("tokenbatch_enqueued_tokens_limit", (("model", "small-llm"),))] == 5000  # the configured cap
    assert got[("tokenbatch_queue_length", (("queue", "tokenbatch.control"),))] == 2
    assert got[("tokenbatch_queue_length", (("queue", "tokenbatch.infer.tiny"),))] == 1
    assert got[("tokenbatch_queue_length", (("queue", "tokenbatch.infer.small-llm"),))] == 0
    assert b1.id  # still validating, counted above

    # Another process changes Redis; the next scrape shows it, with nothing cached here.
    assert transition(r, b1.id, Stage.FAILED)
    again = scrape(api)
    assert again[("tokenbatch_batches", (("stage", "validating"),))] == 0
    assert again[("tokenbatch_batches", (("stage", "failed"),))] == 2


def test_api_latency_is_observed_by_route_template(api: SimpleNamespace) -> None:
    httpx.get(f"{api.url}/v1/batches/batch_x", headers={"authorization": "Bearer key-alice"})
    got = scrape(api)
    key = ("tokenbatch_api_request_duration_seconds_count",
           (("method", "GET"), ("route", "/v1/batches/{batch_id}"), ("status", "404")))
    assert got[key] >= 1


def test_render_is_what_workers_expose_too(api: SimpleNamespace) -> None:
    body, content_type = metrics.render(api.client, api.settings)
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in ("tokenbatch_batches", "tokenbatch_requests_total", "tokenbatch_enqueued_tokens",
                 "tokenbatch_enqueued_tokens_limit", "tokenbatch_queue_length",
                 "tokenbatch_api_request_duration_seconds"):
        assert f"# TYPE {name}" in text or f"# HELP {name}" in text, name
    assert Path(api.settings.data_dir).exists()
