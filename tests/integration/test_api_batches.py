"""Batches through the real HTTP API with the official SDK in strict mode. No Celery worker runs here: a
recording ``send`` stands in for the broker, and the stages a worker would reach are set through the
lifecycle table, as a worker would."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import openai
import pytest

from scheduler import keys
from scheduler.lifecycle import Stage, transition

LINE = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "tiny"}}\n'
ENDPOINT = "/v1/chat/completions"


def sdk(api: SimpleNamespace, key: str = "key-alice", retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=retries,
                         _strict_response_validation=True)


def new_batch(client: openai.OpenAI, **kw: object) -> openai.types.Batch:
    f = client.files.create(file=("in.jsonl", LINE), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", **kw)  # type: ignore[arg-type]


def test_create_returns_validating_and_sends_the_validate_task(api: SimpleNamespace) -> None:
    b = new_batch(sdk(api), metadata={"job": "nightly"})
    assert (b.object, b.status, b.endpoint, b.completion_window, b.metadata) == (
        "batch", "validating", ENDPOINT, "24h", {"job": "nightly"})
    assert b.request_counts is not None and (b.request_counts.total, b.request_counts.completed) == (0, 0)
    assert b.expires_at is not None and b.expires_at - b.created_at == 24 * 3600
    assert b.errors is None and b.output_file_id is None
    extra = b.model_extra or {}
    assert (extra["stage"], extra["progress"], extra["tokens_queued"]) == ("validating", 0, 0)
    assert api.sent == [("tokenbatch.validate", [b.id])]


def test_retrieve_shows_the_live_state_a_worker_wrote(api: SimpleNamespace) -> None:
    client = sdk(api)
    b = new_batch(client)
    assert transition(api.client, b.id, Stage.QUEUED, total=4, tokens_planned=1000, models='["tiny"]')
    api.client.hset(keys.batch(b.id), mapping={"completed": 2, "failed": 1, "tokens_done": 600,
                                                        "prompt_tokens": 30, "completion_tokens": 12,
                                                        "cost": 0.25})
    got = client.batches.retrieve(b.id)
    extra = got.model_extra or {}
    assert (got.status, extra["stage"], got.model) == ("in_progress", "queued", "tiny")
    assert got.request_counts is not None and (got.request_counts.completed, got.request_counts.failed) == (2, 1)
    assert (extra["progress"], extra["tokens_done"], extra["tokens_queued"], extra["cost"]) == (75, 600, 400, 0.25)
    assert got.usage is not None and (got.usage.input_tokens, got.usage.total_tokens) == (30, 42)


def test_sdk_auto_pagination_is_newest_first_and_terminates(api: SimpleNamespace) -> None:
    client = sdk(api)
    f = client.files.create(file=("in.jsonl", LINE), purpose="batch")
    ids = [client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h").id
           for _ in range(7)]
    assert [b.id for b in client.batches.list(limit=3)] == ids[::-1]  # 3 pages, then has_more false
    page = client.batches.list(limit=3)
    raw = httpx.get(f"{api.url}/v1/batches", params={"limit": 3}, headers={"authorization": "Bearer key-alice"}).json()
    assert page.has_more and [b.id for b in page.data] == ids[:-4:-1]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[-1], ids[-3], True)
    last = httpx.get(f"{api.url}/v1/batches", params={"limit": 3, "after": ids[1]},
                     headers={"authorization": "Bearer key-alice"}).json()
    assert [b["id"] for b in last["data"]] == [ids[0]] and last["has_more"] is False
    assert [b.id for b in client.batches.list()] == ids[::-1]  # default limit 20: one page


def test_cancel_moves_validating_to_cancelling_and_is_idempotent(api: SimpleNamespace) -> None:
    client = sdk(api)
    b = new_batch(client)
    cancelled = client.batches.cancel(b.id)
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    assert client.batches.cancel(b.id).status == "cancelling"
    assert client.batches.retrieve(b.id).status == "cancelling"


def test_cancelling_a_finished_batch_is_a_409_the_sdk_does_not_retry(api: SimpleNamespace) -> None:
    client = sdk(api, retries=2)
    b = new_batch(client)
    assert transition(api.client, b.id, Stage.FAILED)
    r = httpx.post(f"{api.url}/v1/batches/{b.id}/cancel", headers={"authorization": "Bearer key-alice"})
    assert r.status_code == 409 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["code"] == "batch_not_cancellable"
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(b.id)


def test_other_tenants_batches_are_not_found(api: SimpleNamespace) -> None:
    b = new_batch(sdk(api))
    bob = sdk(api, "key-bob")
    for call in (bob.batches.retrieve, bob.batches.cancel):
        with pytest.raises(openai.NotFoundError):
            call(b.id)
    assert list(bob.batches.list()) == []
    alice_file = sdk(api).files.list().data[0].id
    with pytest.raises(openai.NotFoundError) as info:  # bob cannot batch alice's file either
        bob.batches.create(input_file_id=alice_file, endpoint=ENDPOINT, completion_window="24h")
    assert info.value.param == "input_file_id"
    assert sdk(api).batches.retrieve(b.id).status == "validating"  # bob's cancel changed nothing
