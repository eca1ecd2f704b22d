"""Settings: one module, defaults from the published limits, env over file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.settings import Settings, parse_api_keys


def test_defaults_are_the_published_limits() -> None:
    s = Settings.load(env={})
    assert s.enqueued_tokens_per_model == 10_000_000
    assert s.max_requests_per_file == 50_000
    assert s.max_file_bytes == 100 * 1024 * 1024
    assert s.completion_window == 24 * 3600
    assert s.batch_discount == 0.5
    assert s.redis_url is None


def test_environment_wins_over_config_file(tmp_path: Path) -> None:
    config = tmp_path / "tokenbatch.toml"
    config.write_text('enqueued_tokens_per_model = 500\nredis_url = "redis://file/0"\n')
    env = {"TOKENBATCH_CONFIG": str(config), "TOKENBATCH_REDIS_URL": "redis://env/1"}
    s = Settings.load(env=env)
    assert s.enqueued_tokens_per_model == 500
    assert s.redis_url == "redis://env/1"


def test_bad_values_and_unknown_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TOKENBATCH_ENQUEUED_TOKENS_PER_MODEL"):
        Settings.load(env={"TOKENBATCH_ENQUEUED_TOKENS_PER_MODEL": "lots"})
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="unknown settings: colour"):
        Settings.load(env={"TOKENBATCH_CONFIG": str(config)})


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    s = Settings.load(env={}, data_dir=tmp_path, completion_window=5)
    assert Settings.load(env=s.as_env()) == s


def test_api_keys_parse() -> None:
    assert parse_api_keys("k1:acme, k2:globex") == {"k1": "acme", "k2": "globex"}
    with pytest.raises(ValueError, match="not 'key:tenant'"):
        parse_api_keys("k1")


def test_the_broker_is_redis_unless_a_broker_url_is_set(tmp_path: Path) -> None:
    from scheduler.celery_app import make_app

    redis_only = make_app(Settings(redis_url="redis://r:6379/3", data_dir=tmp_path))
    assert redis_only.conf.broker_url == redis_only.conf.result_backend == "redis://r:6379/3"
    rabbit = make_app(Settings.load(env={"TOKENBATCH_BROKER_URL": "amqp://tb:pw@rabbit:5672/tb"},
                                    redis_url="redis://r:6379/3", data_dir=tmp_path))
    assert rabbit.conf.broker_url == "amqp://tb:pw@rabbit:5672/tb"
    assert rabbit.conf.result_backend == "redis://r:6379/3"
