"""Every Redis key of limits/, built here and nowhere else.

All keys of one model carry one hash tag, ``{m:<model>}``, so they hash to one Redis Cluster slot and a
script may touch them together (else: CROSSSLOT). The only key outside any model's tag is the set of known
models, which spans models by nature and is never touched by a script.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from limits.errors import InvalidArgument

PREFIX = "tb:lim"
MODELS_KEY = f"{PREFIX}:models"
MAX_NAME_LENGTH = 512


def check_name(value: object, what: str) -> str:
    """A non-empty string without braces: a brace would end or open the hash tag early."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
    if "{" in value or "}" in value:
        raise InvalidArgument(f"{what} must not contain '{{' or '}}' (they delimit hash tags): {value!r}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    return value


def model_tag(model: str) -> str:
    """The hash tag every key of ``model`` shares."""
    return "{m:" + check_name(model, "model") + "}"


@dataclass(frozen=True, slots=True)
class ModelKeys:
    """The keys of one model's budget; the fields are in the order the scripts take them as KEYS."""

    enqueued: str  # string: tokens held by live reservations
    tokens: str  # hash: reservation id -> tokens
    leases: str  # zset: reservation id -> lease expiry, ms since the epoch by Redis's clock
    tenants: str  # hash: reservation id -> tenant
    tenant_enqueued: str  # hash: tenant -> tokens held
    cap: str  # string: the last cap a reserve was given, for dashboards

    @property
    def holding(self) -> list[str]:
        """KEYS 1-5 of reserve, release and reclaim: everything that describes held reservations."""
        return [self.enqueued, self.tokens, self.leases, self.tenants, self.tenant_enqueued]

    @property
    def all(self) -> list[str]:
        return [*self.holding, self.cap]


@functools.lru_cache(maxsize=4096)
def model_keys(model: str) -> ModelKeys:
    """Keys of ``model``'s budget (cached: the dispatcher asks for the same few models all day)."""
    base = f"{PREFIX}:{model_tag(model)}"
    return ModelKeys(
        enqueued=f"{base}:enqueued",
        tokens=f"{base}:tokens",
        leases=f"{base}:leases",
        tenants=f"{base}:tenants",
        tenant_enqueued=f"{base}:tenant_enqueued",
        cap=f"{base}:cap",
    )


def bucket_key(name: str) -> str:
    """Key of the token bucket called ``name`` (a caller's name such as ``tenant:acme:model:x``)."""
    return f"{PREFIX}:bucket:{{b:{check_name(name, 'bucket key')}}}"
