"""The token budget: tokens enqueued per model, held by named reservations under a cap.

A reservation is a micro-batch's tokens, admitted before it is dispatched and released when its results
are recorded. Each has a lease the holder extends while it works; ``reclaim`` frees leases that expired, so
a worker that dies holding tokens cannot leak them. Check-and-count, release and reclaim are each one Lua
script (one round trip, atomic); every time they compare is Redis's own clock.

This module validates arguments and decodes replies; the arithmetic lives in ``lua/*.lua``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import redis

from limits.errors import InvalidArgument, ReservationTooLarge
from limits.keys import MODELS_KEY, check_name, model_keys
from limits.scripts import scripts_for

Reason = Literal["admitted", "duplicate", "cap", "tenant_cap"]

# Codes returned by reserve.lua.
_REASONS: dict[int, Reason] = {1: "admitted", 2: "duplicate", 0: "cap", -1: "tenant_cap"}
_TOO_LARGE_FOR_CAP = -2
_TOO_LARGE_FOR_TENANT_CAP = -3


@dataclass(frozen=True, slots=True)
class Reservation:
    """What ``reserve`` decided. Counts are as Redis saw them right after the decision."""

    admitted: bool  # True for a duplicate too: the tokens are held
    duplicate: bool  # the id was already held; its lease was refreshed, nothing counted twice
    enqueued: int  # the model's enqueued tokens
    cap: int
    free: int  # cap - enqueued, never negative: what a smaller reservation could still get
    tenant_enqueued: int | None  # the tenant's enqueued tokens; None without a tenant
    reason: Reason


@dataclass(frozen=True, slots=True)
class BudgetStats:
    """One model's budget, read in one snapshot (for dashboards and the sweep)."""

    model: str
    enqueued: int
    cap: int  # the last cap a reserve was given; 0 if none ever was
    leases: int  # reservations held
    expired: int  # of those, leases past their expiry and not yet reclaimed

    @property
    def free(self) -> int:
        return max(0, self.cap - self.enqueued)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an int > 0 (bool excluded: ``True`` tokens is a bug, not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return value


def lease_ms(seconds: object) -> int:
    """A lease in whole milliseconds (rounded up, at least 1), the unit of the leases sorted set."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidArgument(f"lease_seconds must be a number, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"lease_seconds must be finite and > 0, got {seconds!r}")
    return max(1, math.ceil(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class TokenBudget:
    """Per-model token budget in Redis. Thread-safe; share one per client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts = scripts_for(client)
        self._listed: set[str] = set()  # models this instance has already added to MODELS_KEY

    def reserve(
        self,
        model: str,
        reservation_id: str,
        tokens: int,
        *,
        cap: int,
        lease_seconds: float,
        tenant: str | None = None,
        tenant_cap: int | None = None,
    ) -> Reservation:
        """Admit ``tokens`` for ``reservation_id`` iff the model's enqueued tokens stay within ``cap`` (and
        the tenant's within ``tenant_cap``, when given). Refusal is an answer, not an error; a reservation
        that could never fit raises ``ReservationTooLarge``.

        An id already held is a redelivery: it keeps the tokens and tenant it was admitted with, only its
        lease is refreshed, and it reports ``duplicate`` even if it would no longer fit.
        """
        keys = model_keys(model)
        check_name(reservation_id, "reservation_id")
        positive_int(tokens, "tokens")
        positive_int(cap, "cap")
        lease = lease_ms(lease_seconds)
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise InvalidArgument(f"tenant must be a non-empty string or None, got {tenant!r}")
        if tenant_cap is not None:
            positive_int(tenant_cap, "tenant_cap")
            if tenant is None:
                raise InvalidArgument("tenant_cap needs a tenant")
        if tokens > cap:
            raise ReservationTooLarge(tokens, cap, model=model)
        if tenant_cap is not None and tokens > tenant_cap:
            raise ReservationTooLarge(tokens, tenant_cap, model=model, tenant=tenant)

        if model not in self._listed:
            # The set of models spans every model's hash tag, so no script may write it beside a model's
            # keys (CROSSSLOT on a cluster). It is written first, apart: a crash between the two leaves a
            # model listed with no state yet, which reads as zeros; never state that no listing finds.
            self.client.sadd(MODELS_KEY, model)
            self._listed.add(model)

        code, enqueued, tenant_enqueued = self._scripts.reserve(
            keys.all,
            [reservation_id, tokens, cap, lease, tenant or "", "" if tenant_cap is None else tenant_cap],
        )
        code, enqueued = int(code), int(enqueued)
        if code == _TOO_LARGE_FOR_CAP:  # unreachable from here (checked above); kept for other callers
            raise ReservationTooLarge(tokens, cap, model=model)
        if code == _TOO_LARGE_FOR_TENANT_CAP:
            raise ReservationTooLarge(tokens, tenant_cap or 0, model=model, tenant=tenant)
        reason = _REASONS[code]
        return Reservation(
            admitted=reason in ("admitted", "duplicate"),
            duplicate=reason == "duplicate",
            enqueued=enqueued,
            cap=cap,
            free=max(0, cap - enqueued),
            tenant_enqueued=None if tenant is None else int(tenant_enqueued),
            reason=reason,
        )

    def release(self, model: str, reservation_id: str) -> bool:
        """Give the reservation's tokens back. False (and nothing changes) when it is not held: unknown,
        released already, or reclaimed after its lease expired."""
        keys = model_keys(model)
        check_name(reservation_id, "reservation_id")
        return int(self._scripts.release(keys.holding, [reservation_id])) > 0

    def extend(self, model: str, reservation_id: str, lease_seconds: float) -> bool:
        """Heartbeat: the lease now ends ``lease_seconds`` from now (Redis's clock). False when the
        reservation is gone, which tells the holder its tokens were reclaimed."""
        keys = model_keys(model)
        check_name(reservation_id, "reservation_id")
        return int(self._scripts.extend([keys.leases], [reservation_id, lease_ms(lease_seconds)])) == 1

    def reclaim(self, model: str, limit: int = 1000) -> list[str]:
        """Free up to ``limit`` reservations whose lease expired and return their ids (oldest first), so
        the caller can dispatch their work again."""
        keys = model_keys(model)
        positive_int(limit, "limit")
        return [_text(rid) for rid in self._scripts.reclaim(keys.holding, [limit])]

    def stats(self, model: str) -> BudgetStats:
        keys = model_keys(model)
        enqueued, cap, leases, expired = self._scripts.stats([keys.enqueued, keys.leases, keys.cap])
        return BudgetStats(model, int(enqueued), int(cap), int(leases), int(expired))

    def tenants(self, model: str) -> dict[str, int]:
        """Tokens held per tenant on ``model`` (tenants holding none are absent); for fair sharing."""
        raw = self.client.hgetall(model_keys(model).tenant_enqueued)
        return {_text(k): int(v) for k, v in raw.items()}

    def models(self) -> list[str]:
        """Every model that ever had a reserve (sorted), including ones holding nothing now."""
        return sorted(_text(m) for m in self.client.smembers(MODELS_KEY))

    def reservation(self, model: str, reservation_id: str) -> tuple[int, float] | None:
        """(tokens, lease expiry in seconds since the epoch by Redis's clock), or None when not held."""
        keys = model_keys(model)
        check_name(reservation_id, "reservation_id")
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(keys.tokens, reservation_id)
        pipe.zscore(keys.leases, reservation_id)
        tokens, expiry = pipe.execute()
        if tokens is None or expiry is None:
            return None
        return int(tokens), float(expiry) / 1000.0
