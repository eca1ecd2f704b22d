"""The batch pipeline end to end on the real stack: validate, queue, dispatch, infer, aggregate."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from conftest import Stack, assert_exactly_once, batch_file, request_line

from limits import TokenBudget
from scheduler.lifecycle import Stage


def test_every_request_is_answered_exactly_once_in_input_order(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    data = batch_file(10)
    b = stack.wait(stack.submit(data).id)
    assert b.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(b)
    ids = [f"r-{i}" for i in range(10)]
    assert [line["custom_id"] for line in out] == ids  # input order, though micro-batches ran by length
    assert err == [] and b.error_file_id is None
    assert (b.total, b.completed, b.failed) == (10, 10, 0)
    first = out[0]["response"]
    assert first["status_code"] == 200 and first["body"]["object"] == "chat.completion"
    usage = [line["response"]["body"]["usage"] for line in out]
    assert b.prompt_tokens == sum(u["prompt_tokens"] for u in usage)
    assert b.completion_tokens == sum(u["completion_tokens"] for u in usage)
    # Half the list price (1.0 in, 2.0 out per million), successful requests only.
    assert abs(b.cost - 0.5 * (b.prompt_tokens * 1.0 + b.completion_tokens * 2.0) / 1e6) < 1e-12
    assert {"in_progress_at", "finalizing_at", "completed_at"} <= set(b.times)
    assert TokenBudget(stack.client).stats("tiny").enqueued == 0


def test_per_request_errors_go_to_the_error_file(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    data = (request_line("ok-1", "hello") + request_line("too-long", "word " * 600)
            + request_line("bad-n", "hi").replace(b'"temperature":0', b'"temperature":0,"n":3')
            + request_line("ok-2", "name a colour"))
    b = stack.wait(stack.submit(data).id)
    assert b.stage == Stage.COMPLETED, stack.logs()
    out, err = stack.lines(b)
    assert_exactly_once(out, err, ["ok-1", "too-long", "bad-n", "ok-2"])
    codes = {line["custom_id"]: line["error"]["code"] for line in err}
    assert codes["too-long"] == "context_length_exceeded"
    assert "bad-n" in codes
    assert (b.total, b.completed, b.failed) == (4, 2, 2)


def test_a_bad_file_fails_the_batch_naming_its_lines(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    data = (request_line("a", "hi") + b"not json\n" + request_line("a", "dup")
            + orjson.dumps({"custom_id": "u", "url": "/v1/embeddings", "body": {}}) + b"\n"
            + request_line("m", "hi", model="gpt-9"))
    b = stack.wait(stack.submit(data).id)
    assert b.stage == Stage.FAILED
    found = {(e["line"], e["code"]) for e in b.errors}
    assert found == {(2, "invalid_json"), (3, "duplicate_custom_id"), (4, "invalid_url"), (5, "model_not_found")}


def test_an_empty_file_fails_the_batch(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    b = stack.wait(stack.submit(b"\n\n").id)
    assert b.stage == Stage.FAILED and b.errors[0]["code"] == "empty_file"
