"""Leases: heartbeats extend them, reclaim frees the expired ones, and every call is idempotent; a worker
SIGKILLed while holding tokens leaks nothing once its lease runs out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from limits import TokenBudget

MODEL = "tiny-llama"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def budget(redis_client: redis.Redis) -> TokenBudget:
    return TokenBudget(redis_client)


def _wait_reclaim(budget: TokenBudget, model: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if freed := budget.reclaim(model):
            return freed
        time.sleep(0.01)
    return []


def test_double_release_releases_once(budget: TokenBudget) -> None:
    budget.reserve(MODEL, "mb-1", 40, cap=100, lease_seconds=60)
    assert budget.release(MODEL, "mb-1") is True
    assert budget.release(MODEL, "mb-1") is False
    assert budget.release(MODEL, "never-reserved") is False
    assert budget.release("never-seen-model", "mb-1") is False
    assert budget.stats(MODEL).enqueued == 0


def test_extend_moves_the_lease_and_fails_once_the_reservation_is_gone(budget: TokenBudget) -> None:
    budget.reserve(MODEL, "mb-1", 40, cap=100, lease_seconds=1)
    _, before = budget.reservation(MODEL, "mb-1") or (0, 0.0)
    assert budget.extend(MODEL, "mb-1", 120) is True
    tokens, after = budget.reservation(MODEL, "mb-1") or (0, 0.0)
    assert tokens == 40 and after >= before + 118
    assert budget.release(MODEL, "mb-1")
    assert budget.extend(MODEL, "mb-1", 120) is False  # extend after release
    assert budget.extend(MODEL, "never-reserved", 120) is False
    assert budget.reservation(MODEL, "mb-1") is None
    assert budget.stats(MODEL).leases == 0


def test_reclaim_frees_expired_leases_only_and_reports_them(budget: TokenBudget) -> None:
    budget.reserve(MODEL, "live", 10, cap=100, lease_seconds=60, tenant="acme")
    budget.reserve(MODEL, "dead-1", 20, cap=100, lease_seconds=0.001, tenant="acme")
    budget.reserve(MODEL, "dead-2", 30, cap=100, lease_seconds=0.002, tenant="globex")
    time.sleep(0.01)
    assert budget.stats(MODEL).expired == 2
    assert budget.reclaim(MODEL) == ["dead-1", "dead-2"]
    assert budget.reclaim(MODEL) == []
    stats = budget.stats(MODEL)
    assert (stats.enqueued, stats.leases, stats.expired) == (10, 1, 0)
    assert budget.tenants(MODEL) == {"acme": 10}
    assert budget.reservation(MODEL, "live") is not None


def test_reclaim_honours_its_limit(budget: TokenBudget) -> None:
    for i in range(5):
        budget.reserve(MODEL, f"mb-{i}", 1, cap=100, lease_seconds=0.001)
    time.sleep(0.01)
    assert len(budget.reclaim(MODEL, limit=2)) == 2
    assert len(budget.reclaim(MODEL, limit=2)) == 2
    assert len(budget.reclaim(MODEL, limit=2)) == 1
    assert budget.stats(MODEL).enqueued == 0


def test_release_and_extend_after_reclaim_change_nothing(budget: TokenBudget) -> None:
    budget.reserve(MODEL, "late", 50, cap=100, lease_seconds=0.001)
    assert _wait_reclaim(budget, MODEL) == ["late"]
    budget.reserve(MODEL, "other", 70, cap=100, lease_seconds=60)
    assert budget.release(MODEL, "late") is False  # the late worker's release must not free "other"'s tokens
    assert budget.extend(MODEL, "late", 60) is False  # and its heartbeat learns its tokens are gone
    assert budget.stats(MODEL).enqueued == 70


def test_a_heartbeat_keeps_a_reservation_from_being_reclaimed(budget: TokenBudget) -> None:
    budget.reserve(MODEL, "busy", 10, cap=100, lease_seconds=1.0)
    for _ in range(4):  # 2 s in all, twice the lease; each extend leaves a second for the reclaim after it
        time.sleep(0.5)
        assert budget.extend(MODEL, "busy", 1.0)
        assert budget.reclaim(MODEL) == []
    assert budget.stats(MODEL).enqueued == 10


HOLDER = """
import sys, time, redis
from limits import TokenBudget
budget = TokenBudget(redis.Redis.from_url(sys.argv[1]))
r = budget.reserve(sys.argv[2], "held-by-a-dead-worker", 70, cap=100, lease_seconds=1.0, tenant="acme")
print("admitted" if r.admitted else "refused", flush=True)
time.sleep(3600)
"""


def test_a_sigkilled_holder_leaks_nothing_once_its_lease_expires(budget: TokenBudget, redis_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, MODEL], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "admitted"
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(10) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
    assert budget.stats(MODEL).enqueued == 70  # the dead worker's tokens are held until the lease runs out
    assert not budget.reserve(MODEL, "new", 40, cap=100, lease_seconds=60).admitted

    assert _wait_reclaim(budget, MODEL) == ["held-by-a-dead-worker"]
    stats = budget.stats(MODEL)
    assert (stats.enqueued, stats.leases) == (0, 0)
    assert budget.tenants(MODEL) == {}
    assert budget.reserve(MODEL, "new", 40, cap=100, lease_seconds=60).admitted
