"""Bad input gets a clear 4xx in OpenAI's error shape, never a 500; a fault of ours is a logged 500 in
the same shape. Keys: missing or unknown is a 401; runtime keys work and are stored hashed."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scheduler import auth, keys
from scheduler.api import create_app, serve_in_thread
from scheduler.settings import Settings

KEYS = "key-alice:alice,key-bob:bob"
ALICE = {"authorization": "Bearer key-alice"}
LINE = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "tiny"}}\n'
ENDPOINT = "/v1/chat/completions"


@pytest.fixture
def file_id(api: SimpleNamespace) -> str:
    r = api.http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", LINE)})
    return str(r.json()["id"])


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    """The response is ``status`` with exactly OpenAI's error shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


# Auth
@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer nope"}, {"authorization": "key-alice"},
                                     {"authorization": "Basic key-alice"}, {"authorization": "Bearer"}])
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/files"), ("POST", "/v1/batches"),
                                              ("GET", "/v1/batches/batch_x"), ("GET", "/v1/models")])
def test_a_missing_or_unknown_key_is_a_401(api: SimpleNamespace, headers: dict[str, str], method: str,
                                           path: str) -> None:
    r = httpx.request(method, f"{api.url}{path}", headers=headers)
    assert error_of(r, 401)["type"] == "authentication_error"


def test_the_sdk_sees_a_wrong_key_as_an_authentication_error(api: SimpleNamespace) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=f"{api.url}/v1", api_key="wrong", max_retries=0).batches.list()
    assert info.value.code == "invalid_api_key"


def test_a_runtime_key_works_and_only_its_hash_is_stored(api: SimpleNamespace) -> None:
    key = auth.create_key(api.client, "carol")
    assert key.encode() not in b"".join(api.client.hkeys(keys.api_keys()))
    assert auth.list_tenants(api.client) == {"carol": 1}
    r = httpx.get(f"{api.url}/v1/files", headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["data"] == []
    assert auth.revoke_tenant(api.client, "carol") == 1
    error_of(httpx.get(f"{api.url}/v1/files", headers={"authorization": f"Bearer {key}"}), 401)
    with pytest.raises(ValueError):
        auth.create_key(api.client, "no spaces or colons:")


def test_health_and_metrics_need_no_key(api: SimpleNamespace) -> None:
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    assert httpx.get(f"{api.url}/metrics").status_code == 200


# Unknown ids, unknown routes
@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/v1/files/file-nope", "file_not_found"),
    ("GET", "/v1/files/file-nope/content", "file_not_found"),
    ("DELETE", "/v1/files/file-nope", "file_not_found"),
    ("GET", "/v1/batches/batch_nope", "batch_not_found"),
    ("POST", "/v1/batches/batch_nope/cancel", "batch_not_found"),
    ("GET", "/v1/models/no-such-model", "model_not_found"),
    ("GET", "/v1/nothing-here", "unknown_url"),
    ("GET", "/nothing", "unknown_url"),
])
def test_unknown_ids_and_urls_are_404(api: SimpleNamespace, method: str, path: str, code: str) -> None:
    assert error_of(api.http.request(method, path), 404)["code"] == code


def test_a_wrong_method_is_405_in_the_error_shape(api: SimpleNamespace) -> None:
    error_of(api.http.put("/v1/batches"), 405)


# Batch create: every way to get it wrong
BAD_CREATES: list[tuple[str, Any, str | None]] = [
    ("wrong endpoint", {"endpoint": "/v1/embeddings"}, "endpoint"),
    ("bad window", {"completion_window": "soon"}, "completion_window"),
    ("zero window", {"completion_window": "0h"}, "completion_window"),
    ("17 metadata pairs", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ("metadata value too long", {"metadata": {"k": "v" * 513}}, "metadata"),
    ("metadata not strings", {"metadata": {"k": 1}}, "metadata"),
    ("metadata a list", {"metadata": ["a"]}, "metadata"),
    ("file id a number", {"input_file_id": 12}, "input_file_id"),
    ("file id missing", {"input_file_id": None}, "input_file_id"),
    ("endpoint missing", {"endpoint": None}, "endpoint"),
    ("unknown file", {"input_file_id": "file-nope"}, "input_file_id"),
]


@pytest.mark.parametrize(("case", "change", "param"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
def test_a_bad_batch_create_is_a_4xx_naming_the_parameter(api: SimpleNamespace, file_id: str, case: str,
                                                          change: dict[str, Any], param: str) -> None:
    body = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h", **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = api.http.post("/v1/batches", json=body)
    err = error_of(r, 404 if case == "unknown file" else 400)
    assert err["param"] == param, err
    assert api.sent == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"a": 1' * 3])
def test_a_malformed_json_body_is_a_400(api: SimpleNamespace, raw: bytes) -> None:
    r = api.http.post("/v1/batches", content=raw, headers={"content-type": "application/json"})
    error_of(r, 400)


def test_a_huge_body_is_a_413_without_reading_it(api: SimpleNamespace, file_id: str) -> None:
    body = {"input_file_id": file_id, "endpoint": ENDPOINT, "metadata": {"k": "v" * 200_000}}
    assert error_of(api.http.post("/v1/batches", json=body), 413)["code"] == "request_too_large"


def test_the_sdk_sees_bad_requests_as_bad_request_errors(api: SimpleNamespace, file_id: str) -> None:
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="key-alice", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(input_file_id=file_id, endpoint="/v1/responses", completion_window="24h")
    assert (info.value.param, info.value.code) == ("endpoint", "invalid_endpoint")
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.jsonl", LINE), purpose="fine-tune")
    assert info.value.param == "purpose"


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/v1/batches", {"limit": 0}, "limit"),
    ("/v1/batches", {"limit": 101}, "limit"),
    ("/v1/batches", {"limit": "many"}, "limit"),
    ("/v1/batches", {"limit": "1e9"}, "limit"),
    ("/v1/files", {"limit": 10_001}, "limit"),
    ("/v1/files", {"limit": -1}, "limit"),
    ("/v1/files", {"order": "sideways"}, "order"),
    ("/v1/batches", {"after": "batch_unknown"}, "after"),
    ("/v1/files", {"after": "file-unknown"}, "after"),
])
def test_bad_list_parameters_are_a_400(api: SimpleNamespace, path: str, params: dict[str, Any], param: str) -> None:
    assert error_of(api.http.get(path, params=params), 400)["param"] == param


def test_a_fault_of_ours_is_a_logged_500_in_the_error_shape(api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api.app.state.tokenbatch.service.records, "get_batch", broken)
    with caplog.at_level(logging.ERROR, logger="tokenbatch.api"):
        err = error_of(api.http.get("/v1/batches/batch_x"), 500)
    assert err["type"] == "server_error" and "disk on fire" not in err["message"]
    assert any("disk on fire" in (r.exc_text or "") for r in caplog.records)


def test_a_redis_outage_is_a_503_not_a_500(redis_url: str, tmp_path: Path) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    app = create_app(Settings(redis_url=redis_url, data_dir=tmp_path, api_keys=KEYS), dead, lambda n, a: None)
    with serve_in_thread(app) as url:
        assert error_of(httpx.get(f"{url}/v1/batches/batch_x", headers=ALICE), 503)["code"] == "service_unavailable"
        r = httpx.get(f"{url}/healthz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert b"tokenbatch_redis_up 0.0" in httpx.get(f"{url}/metrics").content
