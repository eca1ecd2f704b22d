"""The Lua scripts, read from package data and registered once per Redis client.

``register_script`` computes the SHA locally and sends ``EVALSHA``; on ``NOSCRIPT`` (a restarted or
flushed server) redis-py loads the source and retries, so callers never see a missing script.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from importlib import resources

import redis
from redis.commands.core import Script

NAMES = ("reserve", "release", "extend", "reclaim", "stats", "bucket")


@functools.cache
def source(name: str) -> str:
    """The text of ``limits/lua/<name>.lua``, from package data so it works from a wheel or a zip."""
    if name not in NAMES:
        raise KeyError(f"no script named {name!r}; known: {', '.join(NAMES)}")
    return resources.files("limits").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts of limits/, bound to one client."""

    reserve: Script
    release: Script
    extend: Script
    reclaim: Script
    stats: Script
    bucket: Script


_registered: weakref.WeakKeyDictionary[redis.Redis, Scripts] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def scripts_for(client: redis.Redis) -> Scripts:
    """The client's scripts, registered on first use; every TokenBudget and TokenBucket sharing a client
    shares them (a weak map, so a closed client's entry goes with it)."""
    with _lock:
        found = _registered.get(client)
        if found is None:
            found = Scripts(**{name: client.register_script(source(name)) for name in NAMES})
            _registered[client] = found
        return found
