"""Faults are features: SIGKILLed workers and a restarted Redis lose no request and leak no token."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from harness import Stack, assert_exactly_once, batch_file, first_results, wait_for

from limits import TokenBudget
from scheduler import keys
from scheduler.lifecycle import Stage
from scheduler.redis_server import EmbeddedRedis

pytestmark = pytest.mark.slow


def test_killed_inference_worker_loses_no_request(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)  # frozen with micro-batches in flight
    stack.kill("infer-tiny")
    killed_at = time.monotonic()
    final = stack.wait(b.id, timeout=180)
    assert final.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert err == [] and final.completed == 200
    assert time.monotonic() - killed_at < 120  # the lease, not the broker's 1 h visibility timeout
    assert TokenBudget(stack.client).stats("tiny").enqueued == 0
    assert stack.part("infer-tiny").restarts >= 1


def test_killed_control_worker_during_validation_recovers(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(batch=64)
    b = stack.submit(batch_file(3000, max_tokens=1))
    lease = keys.stage_lease(b.id, "validate")
    wait_for(lambda: stack.client.get(lease) not in (None, b"queued"), 60, "validation to start", stack.logs,
             every=0.002)
    stack.pause("worker")  # nothing moves between the look and the kill (SIGKILL ends a stopped group too)
    assert stack.batch(b.id).stage == Stage.VALIDATING
    stack.kill("worker")
    final = stack.wait(b.id, timeout=240)
    assert final.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(3000)])


def test_killed_control_worker_during_aggregation_recovers(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(batch=64)
    caught = None
    for attempt in range(5):
        b = stack.submit(batch_file(3000, f"t{attempt}", max_tokens=1))
        deadline = time.monotonic() + 240
        while (stage := stack.batch(b.id).stage) not in (Stage.FINALIZING, Stage.COMPLETED):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.002)
        if stage != Stage.FINALIZING:
            continue
        # Freeze the worker first, then look again: if it is still aggregating, the kill lands mid-write.
        worker = stack.part("worker").process
        assert worker is not None
        os.killpg(worker.pid, signal.SIGSTOP)
        if stack.batch(b.id).stage == Stage.FINALIZING:
            os.killpg(worker.pid, signal.SIGKILL)
            caught = b
            break
        os.killpg(worker.pid, signal.SIGCONT)
    assert caught is not None, "never caught a batch while it was being aggregated"
    final = stack.wait(caught.id, timeout=120)
    assert final.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [line["custom_id"] for line in out + err])
    assert final.total == 3000 == len(out) + len(err)


def test_state_survives_a_redis_restart_mid_batch(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis").start()
    try:
        stack = make_stack(redis_url=server.url)
        b = stack.submit(batch_file(200, max_tokens=32))
        first_results(stack, b.id)  # frozen mid-batch
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        time.sleep(1)
        server.start()  # same directory and port: the AOF replays
        stack.client = redis.Redis.from_url(server.url)
        stack.resume("infer-tiny")
        final = stack.wait(b.id, timeout=180)
        assert final.stage == Stage.COMPLETED, stack.logs()
        out, err = stack.lines(final)
        assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
        assert TokenBudget(stack.client).stats("tiny").enqueued == 0
        stack.stop()  # before its Redis goes: workers that lose Redis at shutdown crash and get restarted
    finally:
        server.stop()


def test_cancel_then_killed_worker_still_ends_cancelled(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)
    stack.service.cancel_batch("acme", b.id)
    stack.kill("infer-tiny")  # the running micro-batch dies with it; its lease must not strand the batch
    final = stack.wait(b.id, timeout=180)
    assert final.stage == Stage.CANCELLED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert final.total == final.completed + final.failed == 200
    assert TokenBudget(stack.client).stats("tiny").enqueued == 0


def test_a_duplicate_validate_after_cancel_loses_nothing(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)
    stack.service.cancel_batch("acme", b.id)
    stack.service.send("tokenbatch.validate", [b.id])  # a late duplicate (the sweep re-sends validate)
    stack.resume("infer-tiny")
    final = stack.wait(b.id, timeout=180)
    assert final.stage == Stage.CANCELLED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert final.total == 200


def test_a_running_micro_batch_that_lost_its_reservation_still_completes(make_stack: Callable[..., Stack]) -> None:
    """As if Redis lost its last second of writes, or a sweep died between reclaiming and requeueing."""
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)
    budget = TokenBudget(stack.client)
    running = [i for i, s in stack.service.microbatches.states(b.id).items() if s.startswith("run:")]
    for index in running:
        budget.release("tiny", f"{b.id}:{index}")  # the reservation vanishes; the micro-batch stays run:N
    stack.resume("infer-tiny")
    final = stack.wait(b.id, timeout=180)
    assert final.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert err == []
    wait_for(lambda: budget.stats("tiny").enqueued == 0, 30, "the budget to drain")
