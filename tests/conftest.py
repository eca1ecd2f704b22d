"""Shared fixtures, one per test session: a real redis-server from the project's own launcher, and the tiny
model (trained for a few seconds, saved with save_pretrained, loaded with from_pretrained; never mocked).
torch is imported only when a test asks for a model fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from ports import quiet_ports

from scheduler.redis_server import EmbeddedRedis

if TYPE_CHECKING:
    from inference.engine import Engine
    from inference.registry import ModelSpec


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The session's server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def port_run() -> Callable[[int], int]:
    """``port_run(n)``: a base port whose ``n`` consecutive ports are free (``ports.quiet_ports``)."""
    return quiet_ports


TINY_MODELS_TOML = """\
[[models]]
id = "tiny"
path = "{path}"
engine = "transformers"
context_length = 512
max_batch_requests = 8
max_batch_tokens = 4096
default_max_tokens = 32
input_price_per_mtok = 0.10
output_price_per_mtok = 0.20
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama chat model and tokenizer, trained on the shipped text (a few seconds, once a session)."""
    from inference.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_models_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models TOML serving the tiny model as id ``tiny`` (context 512, micro-batches of 8)."""
    path = tmp_path_factory.mktemp("models") / "models.toml"
    path.write_text(TINY_MODELS_TOML.format(path=tiny_model_dir.as_posix()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_spec(tiny_models_file: Path) -> ModelSpec:
    from inference.registry import load_models

    return load_models(tiny_models_file)["tiny"]


@pytest.fixture(scope="session")
def tiny_engine(tiny_spec: ModelSpec) -> Engine:
    """The tiny model loaded once through the transformers engine, on the CPU."""
    from inference.engine import load_engine

    return load_engine(tiny_spec)
