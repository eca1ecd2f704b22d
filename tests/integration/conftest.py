"""The API served for real (uvicorn in a thread) over the session's Redis, with a recording ``send`` in place
of Celery: these tests are about the HTTP faces; tests/pipeline runs the real workers."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
import redis

from scheduler.api import create_app, serve_in_thread
from scheduler.redis_server import EmbeddedRedis
from scheduler.settings import Settings

KEYS = "key-alice:alice,key-bob:bob"
ALICE = {"authorization": "Bearer key-alice"}


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One server per module (starting and stopping uvicorn costs ~0.3 s); tests reset what they need."""
    client = redis.Redis.from_url(redis_server.url)
    sent: list[tuple[str, list[object]]] = []
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path_factory.mktemp("api"), api_keys=KEYS)
    app = create_app(settings, client, lambda name, args: sent.append((name, args)))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=ALICE) as http:
        yield SimpleNamespace(url=url, sent=sent, app=app, client=client, http=http,
                              service=app.state.tokenbatch.service)
    client.close()


@pytest.fixture
def api(server: SimpleNamespace, redis_url: str) -> SimpleNamespace:
    """The module's server with its recorded sends cleared (and Redis flushed by ``redis_url``)."""
    server.sent.clear()
    return server
