"""The control plane's Lua scripts, read from package data and registered once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

_registered: dict[tuple[int, str], Script] = {}


@cache
def source(name: str) -> str:
    return resources.files("scheduler").joinpath("lua", f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Script:
    """The registered script ``name`` for this client (EVALSHA, falling back to EVAL after a restart)."""
    key = (id(client), name)
    found = _registered.get(key)
    if found is None:
        found = _registered[key] = client.register_script(source(name))
    return found
