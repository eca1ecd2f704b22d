"""API keys, each bound to a tenant.

Two sources: ``TOKENBATCH_API_KEYS`` (``key:tenant,...``, for operators who manage secrets outside) and
keys created at run time (``tokenbatch keys create --tenant T``). Run-time keys are stored only as their
sha256 in Redis (``keys.api_keys()``: hash -> tenant), so a copy of the database leaks no usable key.
Lookups hash the presented key first, so comparing never depends on how much of a secret matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import lru_cache

import redis

from scheduler import keys
from scheduler.settings import Settings, parse_api_keys

KEY_PREFIX = "tb-"
TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # tenants appear inside Redis key names


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@lru_cache(maxsize=8)
def _static(spec: str) -> tuple[tuple[str, str], ...]:
    """(sha256(key), tenant) of the configured keys, parsed once per distinct setting."""
    return tuple((digest(k), tenant) for k, tenant in parse_api_keys(spec).items())


def check_tenant(tenant: str) -> str:
    if not TENANT.match(tenant):
        raise ValueError(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return tenant


def create_key(client: redis.Redis, tenant: str) -> str:
    """A new key for ``tenant``; the key itself is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    client.hset(keys.api_keys(), digest(key), check_tenant(tenant))
    return key


def resolve(client: redis.Redis, settings: Settings, key: str | None) -> str | None:
    """The tenant ``key`` belongs to, or None for a missing or unknown key."""
    if not key:
        return None
    hashed = digest(key)
    for known, tenant in _static(settings.api_keys):
        if hmac.compare_digest(known, hashed):
            return tenant
    found = client.hget(keys.api_keys(), hashed)
    return found.decode() if isinstance(found, bytes) else found


def list_tenants(client: redis.Redis) -> dict[str, int]:
    """Tenants with run-time keys -> how many keys each holds (the keys themselves are not recoverable)."""
    counts: dict[str, int] = {}
    for raw in client.hvals(keys.api_keys()):
        tenant = raw.decode() if isinstance(raw, bytes) else str(raw)
        counts[tenant] = counts.get(tenant, 0) + 1
    return dict(sorted(counts.items()))


def revoke_tenant(client: redis.Redis, tenant: str) -> int:
    """Forget every run-time key of ``tenant``; how many were removed."""
    doomed = [h for h, t in client.hgetall(keys.api_keys()).items() if (t.decode() if isinstance(t, bytes) else t)
              == tenant]
    return int(client.hdel(keys.api_keys(), *doomed)) if doomed else 0


def bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
