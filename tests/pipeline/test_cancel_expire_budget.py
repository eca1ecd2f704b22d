"""Cancel and expiry keep partial results; the token budget holds under two competing tenants."""

from __future__ import annotations

import threading
from collections.abc import Callable

from harness import Stack, assert_exactly_once, batch_file, first_results, wait_for

from limits import TokenBudget
from scheduler import keys
from scheduler.lifecycle import Stage


def test_cancel_keeps_partial_results_and_counts_add_up(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)  # the inference worker is frozen with work in flight
    cancelled = stack.service.cancel_batch("acme", b.id)
    assert cancelled.stage in (Stage.CANCELLING, Stage.CANCELLED)
    stack.resume("infer-tiny")
    final = stack.wait(b.id)
    assert final.stage == Stage.CANCELLED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert out and err
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    assert final.total == final.completed + final.failed == 200
    assert {"cancelling_at", "cancelled_at"} <= set(final.times)
    assert TokenBudget(stack.client).stats("tiny").enqueued == 0


def test_cancel_while_validating_ends_cancelled(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(5))
    stack.service.cancel_batch("acme", b.id)
    final = stack.wait(b.id)
    assert final.stage == Stage.CANCELLED
    out, err = stack.lines(final)
    assert final.total == final.completed + final.failed == len(out) + len(err)


def test_expiry_writes_partial_output_and_batch_expired_errors(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.submit(batch_file(200, max_tokens=48))
    first_results(stack, b.id)  # frozen with work unfinished; then the window is made to pass (Redis's clock)
    stack.client.hset(keys.batch(b.id), "expires_at", int(stack.client.time()[0]) - 1)
    wait_for(lambda: stack.client.hget(keys.batch(b.id), "end_reason") == b"expired", 30, "the expiry", stack.logs)
    stack.resume("infer-tiny")
    final = stack.wait(b.id, timeout=120)
    assert final.stage == Stage.EXPIRED, stack.logs()
    out, err = stack.lines(final)
    assert_exactly_once(out, err, [f"r-{i}" for i in range(200)])
    assert out and "batch_expired" in {e["error"]["code"] for e in err}
    assert final.total == final.completed + final.failed == 200
    assert "expired_at" in final.times
    assert TokenBudget(stack.client).stats("tiny").enqueued == 0


def test_budget_cap_holds_and_two_tenants_share_it(make_stack: Callable[..., Stack]) -> None:
    cap = 300
    stack = make_stack(enqueued_tokens_per_model=cap, batch=2)
    budget = TokenBudget(stack.client)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(budget.stats("tiny").enqueued)
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    a1 = stack.submit(batch_file(16, "a1", max_tokens=16), tenant="acme")
    a2 = stack.submit(batch_file(16, "a2", max_tokens=16), tenant="acme")
    g = stack.submit(batch_file(16, "g", max_tokens=16), tenant="globex")
    progress_at_first_finish: dict[str, int] = {}

    def someone_finished() -> bool:
        batches = {x.id: stack.batch(x.id) for x in (a1, a2, g)}
        if any(x.stage == Stage.COMPLETED for x in batches.values()):
            acme = batches[a1.id].completed + batches[a2.id].completed
            progress_at_first_finish.update(acme=acme, globex=batches[g.id].completed)
            return True
        return False

    wait_for(someone_finished, 180, "a first batch to finish", stack.logs)
    finals = [stack.wait(x.id, timeout=180) for x in (a1, a2, g)]
    stop.set()
    sampler.join()
    assert all(f.stage == Stage.COMPLETED for f in finals), stack.logs()
    assert samples and max(samples) <= cap, f"enqueued tokens went over the cap: {max(samples)} > {cap}"
    assert max(samples) > 0
    # Both tenants progressed before anyone was done: globex was not made to wait behind acme's two batches.
    assert progress_at_first_finish["acme"] > 0 and progress_at_first_finish["globex"] > 0, progress_at_first_finish
    assert budget.stats("tiny").enqueued == 0
