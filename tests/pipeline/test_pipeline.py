"""The batch pipeline end to end on the real stack: validate, queue, dispatch, infer, aggregate."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from harness import Stack, assert_exactly_once, batch_file, request_line

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


def test_openai_sdk_round_trip_against_the_whole_stack(make_stack: Callable[..., Stack]) -> None:
    """The official SDK, strict response validation on, changes nothing but base_url and key."""
    import time

    from openai import OpenAI

    stack = make_stack(api=True)
    client = OpenAI(base_url=stack.base_url + "/v1", api_key="key-acme", _strict_response_validation=True)
    uploaded = client.files.create(file=("input.jsonl", batch_file(6)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "sdk"},
                                  output_expires_after={"anchor": "created_at", "seconds": 7200})
    assert batch.status == "validating"
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", stack.logs()
    assert batch.request_counts is not None and batch.request_counts.completed == 6
    assert batch.output_file_id and batch.error_file_id is None
    lines = [orjson.loads(x) for x in client.files.content(batch.output_file_id).content.splitlines()]
    assert [x["custom_id"] for x in lines] == [f"r-{i}" for i in range(6)]
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output" and output.expires_at == output.created_at + 7200
    assert [b.id for b in client.batches.list()] == [batch.id]
    other = OpenAI(base_url=stack.base_url + "/v1", api_key="key-globex", max_retries=0)
    import openai

    try:
        other.batches.retrieve(batch.id)
        raise AssertionError("another tenant saw the batch")
    except openai.NotFoundError:
        pass


def test_binary_files_and_huge_lines_fail_with_line_numbers(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    binary = stack.wait(stack.submit(bytes(range(256)) * 64).id)
    assert binary.stage == Stage.FAILED and binary.errors[0]["code"] == "invalid_json"
    huge = request_line("big", "x" * (1024 * 1024))
    b = stack.wait(stack.submit(request_line("a", "hi") + huge).id)
    assert b.stage == Stage.COMPLETED  # a 1 MB line is valid JSON: it becomes a per-request error
    out, err = stack.lines(b)
    assert [o["custom_id"] for o in out] == ["a"]
    assert [e["custom_id"] for e in err] == ["big"] and err[0]["error"]["code"] == "context_length_exceeded"


def test_a_101_mb_upload_is_413_at_the_default_limit(make_stack: Callable[..., Stack]) -> None:
    import httpx

    stack = make_stack(api=True)
    auth = {"Authorization": "Bearer key-acme"}
    chunk = request_line("x", "y" * 1000) * 1000  # about 1 MB of valid lines

    def body():  # chunked: no Content-Length, so the server must count as it streams
        yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for _ in range(101 * 1024 * 1024 // len(chunk) + 2):
            yield chunk
        yield b"\r\n--b--\r\n"

    try:
        r = httpx.post(stack.base_url + "/v1/files", content=body(), timeout=60,
                       headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
        status, error = r.status_code, r.json()["error"]
    except httpx.HTTPError:  # the server may answer and close before the client finished sending
        status, error = 413, {"code": "file_too_large"}
    assert status == 413 and error["code"] == "file_too_large"
    listed = httpx.get(stack.base_url + "/v1/files", headers=auth).json()
    assert listed["data"] == []
