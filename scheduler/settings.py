"""Every setting of tokenbatch, read in one place.

This is the only module that reads the environment. Values come, in order of precedence, from
``TOKENBATCH_*`` environment variables, then from an optional TOML config file (``TOKENBATCH_CONFIG``),
then from the defaults below, which are the product's published limits. Everything else receives a
``Settings`` object (or the few values it needs) as an argument.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "TOKENBATCH_"

MIB = 1024 * 1024


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tokenbatch"


@dataclass(frozen=True)
class Settings:
    """Typed settings; field ``foo_bar`` is read from ``TOKENBATCH_FOO_BAR`` or ``foo_bar`` in the file."""

    # Where state lives. No redis_url: `up`/`run` start the embedded redis-server in data_dir.
    redis_url: str | None = None
    data_dir: Path = field(default_factory=lambda: _default_data_dir(os.environ))
    storage_url: str | None = None  # fsspec URL; default: <data_dir>/files
    models: Path | None = None  # models TOML file

    # The published limits (DESIGN.md, "Defaults").
    max_requests_per_file: int = 50_000
    max_file_bytes: int = 100 * MIB
    enqueued_tokens_per_model: int = 10_000_000
    completion_window: int = 24 * 3600  # seconds
    batch_discount: float = 0.5  # batch price = list price x this

    # Leases and sweeps: a micro-batch whose worker stops heartbeating is dispatched again after
    # lease_seconds, and the sweep that notices runs every sweep_interval seconds.
    lease_seconds: int = 120
    sweep_interval: float = 15.0

    # The HTTP API.
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: str = ""  # "key:tenant,key:tenant"
    public_url: str | None = None  # base URL clients reach the API at (signed upload URLs)
    api_key: str | None = None  # the key `tokenbatch submit` uses as a client

    # Metrics ports of the worker processes (0: none).
    metrics_port: int = 0

    # Set by `tokenbatch infer-worker --model M` for its process: the model it loads at start.
    worker_model: str | None = None

    # Celery's broker: the Redis above unless set (``amqp://`` for RabbitMQ). Results stay in Redis.
    broker_url: str | None = None
    visibility_timeout: int = 3600  # Redis broker only: seconds before an unacknowledged task is redelivered

    @property
    def files_url(self) -> str:
        return self.storage_url or str(self.data_dir / "files")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment and the optional config file; ``overrides`` win over both."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        config = env.get(PREFIX + "CONFIG")
        if config:
            with open(config, "rb") as fh:
                values.update(tomllib.load(fh))
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        if "data_dir" not in values:
            values["data_dir"] = _default_data_dir(env)
        return cls(**{name: _coerce(cls, name, value) for name, value in values.items()})

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand down to child processes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[PREFIX + f.name.upper()] = str(value)
        return out


def _coerce(cls: type[Settings], name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(cls)}[name]
    if value is None:
        return None
    try:
        if "Path" in str(kind):
            return Path(value).expanduser()
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value) if "str" in str(kind) else value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {PREFIX}{name.upper()}={value!r} is not a valid {kind}") from exc


def parse_api_keys(spec: str) -> dict[str, str]:
    """``"key:tenant,key:tenant"`` -> ``{key: tenant}``; a malformed entry is a clear error."""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        key, sep, tenant = entry.partition(":")
        if not sep or not key or not tenant:
            raise ValueError(f"{PREFIX}API_KEYS entry {entry!r} is not 'key:tenant'")
        keys[key] = tenant
    return keys
