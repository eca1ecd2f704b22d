"""Argument checks of limits/: refused on the Python side, before any round trip.

The client points at a socket that does not exist, so any round trip would raise ConnectionError;
getting ValueError (or ReservationTooLarge) instead shows the check ran first.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from limits import (
    BudgetStats,
    CostTooLarge,
    InvalidArgument,
    LimitsError,
    ReservationTooLarge,
    TokenBucket,
    TokenBudget,
)
from limits.bucket import ttl_ms
from limits.budget import lease_ms
from limits.scripts import scripts_for


@pytest.fixture
def offline(tmp_path: Any) -> redis.Redis:
    path = str(tmp_path / "nobody-listens.sock")
    return redis.Redis(unix_socket_path=path, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))


GOOD: dict[str, Any] = {"cap": 100, "lease_seconds": 30.0}


def test_the_offline_client_really_is_offline(offline: redis.Redis) -> None:
    with pytest.raises(redis.ConnectionError):
        TokenBudget(offline).reserve("m", "r", 1, **GOOD)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("m", "r", 0), GOOD),
        (("m", "r", -5), GOOD),
        (("m", "r", 1.5), GOOD),
        (("m", "r", True), GOOD),
        (("m", "r", "10"), GOOD),
        (("m", "", 1), GOOD),
        (("m", "a{b}", 1), GOOD),
        (("", "r", 1), GOOD),
        (("m{x}", "r", 1), GOOD),
        (("m", "r", 1), {"cap": 0, "lease_seconds": 1}),
        (("m", "r", 1), {"cap": 10.0, "lease_seconds": 1}),
        (("m", "r", 1), {"cap": 10, "lease_seconds": 0}),
        (("m", "r", 1), {"cap": 10, "lease_seconds": -1}),
        (("m", "r", 1), {"cap": 10, "lease_seconds": math.inf}),
        (("m", "r", 1), {"cap": 10, "lease_seconds": math.nan}),
        (("m", "r", 1), {"cap": 10, "lease_seconds": "5"}),
        (("m", "r", 1), {**GOOD, "tenant": ""}),
        (("m", "r", 1), {**GOOD, "tenant_cap": 10}),  # a sub-cap without a tenant
        (("m", "r", 1), {**GOOD, "tenant": "t", "tenant_cap": 0}),
    ],
)
def test_bad_reserve_arguments_are_a_value_error(offline: redis.Redis, args: tuple, kwargs: dict) -> None:
    with pytest.raises(ValueError) as caught:
        TokenBudget(offline).reserve(*args, **kwargs)
    assert isinstance(caught.value, InvalidArgument | LimitsError)


def test_bad_arguments_of_the_other_calls_are_a_value_error(offline: redis.Redis) -> None:
    budget = TokenBudget(offline)
    for call in (
        lambda: budget.release("m", ""),
        lambda: budget.release("", "r"),
        lambda: budget.extend("m", "r", 0),
        lambda: budget.extend("m", "", 1),
        lambda: budget.reclaim("m", limit=0),
        lambda: budget.stats("a}"),
        lambda: budget.reservation("m", ""),
    ):
        with pytest.raises(InvalidArgument):
            call()


def test_a_reservation_larger_than_the_cap_is_refused_before_any_round_trip(offline: redis.Redis) -> None:
    with pytest.raises(ReservationTooLarge) as caught:
        TokenBudget(offline).reserve("llama", "mb-1", 150, cap=100, lease_seconds=1)
    error = caught.value
    assert (error.tokens, error.cap, error.model, error.tenant) == (150, 100, "llama", None)
    assert "150 tokens" in str(error) and "cap of 100 tokens" in str(error) and "'llama'" in str(error)
    assert isinstance(error, LimitsError) and not isinstance(error, ValueError)


def test_a_reservation_larger_than_the_tenant_cap_names_the_tenant(offline: redis.Redis) -> None:
    with pytest.raises(ReservationTooLarge) as caught:
        TokenBudget(offline).reserve(
            "llama", "mb-1", 60, cap=100, lease_seconds=1, tenant="acme", tenant_cap=50
        )
    assert caught.value.tenant == "acme"
    assert "60 tokens" in str(caught.value) and "cap of 50 tokens" in str(caught.value)
    assert "'acme'" in str(caught.value)


@pytest.mark.parametrize(
    ("cost", "capacity", "rate"),
    [(0, 10, 1.0), (1, 0, 1.0), (1, 10, 0), (1, 10, -1.0), (1, 10, math.inf), (1.0, 10, 1.0), (1, 10, "1")],
)
def test_bad_bucket_arguments_are_a_value_error(
    offline: redis.Redis, cost: Any, capacity: Any, rate: Any
) -> None:
    with pytest.raises(InvalidArgument):
        TokenBucket(offline).take("k", cost, capacity=capacity, refill_per_second=rate)


def test_a_cost_above_the_capacity_is_refused_before_any_round_trip(offline: redis.Redis) -> None:
    with pytest.raises(CostTooLarge) as caught:
        TokenBucket(offline).take("acme", 11, capacity=10, refill_per_second=1.0)
    assert "11 tokens" in str(caught.value) and "capacity 10" in str(caught.value)


def test_scripts_are_registered_once_per_client(offline: redis.Redis, tmp_path: Any) -> None:
    assert scripts_for(offline) is scripts_for(offline)
    assert TokenBudget(offline)._scripts is TokenBucket(offline)._scripts
    other = redis.Redis(unix_socket_path=str(tmp_path / "other.sock"))
    assert scripts_for(other) is not scripts_for(offline)


def test_leases_round_up_to_whole_milliseconds() -> None:
    assert lease_ms(1) == 1000
    assert lease_ms(0.0001) == 1
    assert lease_ms(1.0001) == 1001


def test_a_bucket_key_lives_until_the_bucket_would_be_full_again() -> None:
    assert ttl_ms(10, 2.0) == 6000
    assert ttl_ms(10**9, 1e-9) == 2**40  # bounded, whatever the rate


def test_stats_report_what_is_free() -> None:
    assert BudgetStats("m", enqueued=30, cap=100, leases=2, expired=0).free == 70
    assert BudgetStats("m", enqueued=120, cap=100, leases=2, expired=0).free == 0  # a cap lowered under load
