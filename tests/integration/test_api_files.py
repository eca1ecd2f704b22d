"""Files through the real HTTP API (uvicorn on a free port, real Redis): the official SDK in strict mode,
plus plain httpx for what the SDK never sends (Range, chunked uploads, odd multipart)."""

from __future__ import annotations

import secrets
import shutil
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import redis

from scheduler.api import create_app, serve_in_thread
from scheduler.api_files import RangeNotSatisfiable, parse_range
from scheduler.redis_server import EmbeddedRedis
from scheduler.settings import Settings

KEYS = "key-alice:alice,key-bob:bob"
ALICE = {"authorization": "Bearer key-alice"}
LINE = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "tiny"}}\n'


def serve(redis_server: EmbeddedRedis, data_dir: Path, **settings: object) -> Iterator[SimpleNamespace]:
    """One server per module (starting and stopping uvicorn costs ~0.3 s); ``fresh`` resets it per test."""
    client = redis.Redis.from_url(redis_server.url)
    sent: list[tuple[str, list[object]]] = []
    config = Settings(redis_url=redis_server.url, data_dir=data_dir, api_keys=KEYS, **settings)  # type: ignore[arg-type]
    app = create_app(config, client, lambda name, args: sent.append((name, args)))
    with serve_in_thread(app) as url:
        yield SimpleNamespace(url=url, sent=sent, settings=config, app=app)
    client.close()


def fresh(server: SimpleNamespace) -> SimpleNamespace:
    server.sent.clear()
    shutil.rmtree(server.settings.files_url, ignore_errors=True)
    return server


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    yield from serve(redis_server, tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def small_server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    yield from serve(redis_server, tmp_path_factory.mktemp("api-small"), max_file_bytes=1000)


@pytest.fixture
def api(server: SimpleNamespace, redis_url: str) -> SimpleNamespace:
    return fresh(server)  # redis_url flushed Redis


@pytest.fixture
def small(small_server: SimpleNamespace, redis_url: str) -> SimpleNamespace:
    """An API whose uploads are capped at 1000 bytes."""
    return fresh(small_server)


def sdk(api: SimpleNamespace, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0, _strict_response_validation=True)


def stored(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.files_url).rglob("*") if p.is_file()]


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    body = b""
    for name, filename, value in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}", **ALICE}


def test_upload_list_retrieve_download_delete_through_the_strict_sdk(api: SimpleNamespace) -> None:
    client = sdk(api)
    content = LINE * 3
    f = client.files.create(file=("in.jsonl", content), purpose="batch")
    assert (f.object, f.purpose, f.status, f.bytes, f.filename) == ("file", "batch", "processed", len(content),
                                                                     "in.jsonl")
    assert f.id.startswith("file-") and f.created_at > 0
    assert client.files.retrieve(f.id) == f
    assert [x.id for x in client.files.list()] == [f.id]
    assert client.files.content(f.id).read() == content
    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (f.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    assert stored(api.settings) == []


def test_files_list_is_newest_first_pages_with_after_and_filters_purpose(api: SimpleNamespace) -> None:
    client = sdk(api)
    ids = [client.files.create(file=(f"{i}.jsonl", LINE), purpose="batch").id for i in range(5)]
    service = api.app.state.tokenbatch.service
    together = service.store_upload("alice", "t.jsonl", "batch-api", iter([LINE])).id  # the Together face's purpose
    ids.append(together)
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # auto-pagination over 3 pages
    page = client.files.list(limit=2)
    assert page.has_more and len(page.data) == 2
    assert [f.id for f in client.files.list(order="asc", limit=4)] == ids
    shown = {f.id: f.purpose for f in client.files.list(purpose="batch", limit=1)}
    assert shown[together] == "batch" and len(shown) == 6
    assert list(client.files.list(purpose="batch_output")) == []


def test_content_is_streamed_with_length_and_honours_a_single_range(api: SimpleNamespace) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, across several storage chunks
    f = sdk(api).files.create(file=("b.jsonl", data), purpose="batch")
    url = f"{api.url}/v1/files/{f.id}/content"
    with httpx.Client(headers=ALICE) as http:
        whole = http.get(url)
        assert (whole.status_code, whole.headers["content-length"], whole.content) == (200, str(len(data)), data)
        assert whole.headers["accept-ranges"] == "bytes"
        part = http.get(url, headers={"range": "bytes=10-19"})
        assert (part.status_code, part.content, part.headers["content-range"]) == (206, data[10:20],
                                                                                   f"bytes 10-19/{len(data)}")
        assert part.headers["content-length"] == "10"
        assert http.get(url, headers={"range": "bytes=-5"}).content == data[-5:]
        assert http.get(url, headers={"range": f"bytes={len(data) - 3}-"}).content == data[-3:]
        assert http.get(url, headers={"range": "bytes=0-1,5-6"}).status_code == 200  # several ranges: whole file
        bad = http.get(url, headers={"range": f"bytes={len(data)}-"})
        assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
        assert bad.json()["error"]["code"] == "range_not_satisfiable"


def test_parse_range_covers_the_forms_of_rfc_9110() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=2-100", 10) == (2, 10)
    assert parse_range("bytes=-100", 10) == (0, 10)
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=-", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 10)


def test_a_file_streamed_in_chunks_without_length_is_stored_whole(api: SimpleNamespace) -> None:
    body, headers = multipart([("purpose", None, b"batch"), ("file", "big.jsonl", b"@@")])
    head, tail = body.split(b"@@")
    chunk = LINE * 1000

    def gen() -> Iterator[bytes]:  # a generator body: chunked transfer encoding, no Content-Length
        yield head
        for _ in range(50):
            yield chunk
        yield tail

    r = httpx.post(f"{api.url}/v1/files", content=gen(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == 50 * len(chunk)
    assert sdk(api).files.content(r.json()["id"]).read() == chunk * 50


def test_a_file_part_before_its_purpose_is_accepted(api: SimpleNamespace) -> None:
    body, headers = multipart([("file", "../../etc/x.jsonl", LINE), ("purpose", None, b"batch")])
    r = httpx.post(f"{api.url}/v1/files", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["filename"], r.json()["bytes"]) == ("x.jsonl", len(LINE))


def test_an_upload_over_the_cap_is_413_and_nothing_is_stored(small: SimpleNamespace) -> None:
    client = sdk(small)
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")  # counted while streaming
    assert info.value.status_code == 413
    assert info.value.code == "file_too_large"
    assert list(client.files.list()) == [] and stored(small.settings) == []
    # Far over: refused on Content-Length alone, before the body is read.
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("huge.jsonl", secrets.token_bytes(300_000)), purpose="batch")
    assert info.value.status_code == 413
    # Chunked, no Content-Length: the running count stops it.
    body, headers = multipart([("purpose", None, b"batch"), ("file", "c.jsonl", b"y" * 3000)])
    r = httpx.post(f"{small.url}/v1/files", content=iter([body[:100], body[100:]]), headers=headers)
    assert r.status_code == 413 and r.json()["error"]["param"] == "file"
    # The same file first, purpose after: refused while spooling.
    body, headers = multipart([("file", "c.jsonl", b"y" * 3000), ("purpose", None, b"batch")])
    assert httpx.post(f"{small.url}/v1/files", content=body, headers=headers).status_code == 413
    assert stored(small.settings) == []
    assert client.files.create(file=("ok.jsonl", b"z" * 1000), purpose="batch").bytes == 1000  # at the cap: fine


@pytest.mark.parametrize(("parts", "param"), [
    ([("purpose", None, b"fine-tune"), ("file", "a.jsonl", LINE)], "purpose"),
    ([("purpose", None, b"batch")], "file"),
    ([("file", "a.jsonl", LINE)], "purpose"),
    ([("purpose", None, b"batch"), ("file", "a.jsonl", LINE), ("file", "b.jsonl", LINE)], "file"),
])
def test_a_bad_form_is_a_400_naming_the_field(api: SimpleNamespace, parts: list, param: str) -> None:
    body, headers = multipart(parts)
    r = httpx.post(f"{api.url}/v1/files", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    assert stored(api.settings) == []


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data", "text/plain"])
def test_an_upload_that_is_not_multipart_is_a_400(api: SimpleNamespace, content_type: str | None) -> None:
    headers = dict(ALICE, **({"content-type": content_type} if content_type else {}))
    r = httpx.post(f"{api.url}/v1/files", content=b'{"file": 1}', headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"


def test_a_truncated_multipart_body_is_a_400_and_stores_nothing(api: SimpleNamespace) -> None:
    body, headers = multipart([("purpose", None, b"batch"), ("file", "a.jsonl", LINE * 10)])
    r = httpx.post(f"{api.url}/v1/files", content=body[:-40], headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_multipart"
    assert stored(api.settings) == [] and list(sdk(api).files.list()) == []


def test_other_tenants_files_are_not_found(api: SimpleNamespace) -> None:
    f = sdk(api).files.create(file=("a.jsonl", LINE), purpose="batch")
    bob = sdk(api, "key-bob")
    for call in (bob.files.retrieve, bob.files.delete, lambda i: bob.files.content(i).read()):
        with pytest.raises(openai.NotFoundError):
            call(f.id)
    assert list(bob.files.list()) == []
    assert sdk(api).files.retrieve(f.id).id == f.id  # still there for its owner


def raw_request(api: SimpleNamespace, head: bytes, body: bytes) -> bytes:
    """Send the head and part of a body, then wait for an answer without sending the rest."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = s.recv(65536)
            if not got:
                break
            answer += got
        return answer


def test_a_refusal_does_not_wait_for_the_rest_of_the_body(small: SimpleNamespace) -> None:
    body, headers = multipart([("purpose", None, b"batch"), ("file", "a.jsonl", b"x" * 3000)])
    ctype = headers["content-type"]
    declared = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-alice\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {10**9}\r\n\r\n").encode()
    assert raw_request(small, declared, b"").startswith(b"HTTP/1.1 413")  # from the header alone
    chunked = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-alice\r\nContent-Type: {ctype}\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n").encode()
    first = body[:2000]
    assert raw_request(small, chunked, b"%x\r\n%s\r\n" % (len(first), first)).startswith(b"HTTP/1.1 413")
    assert stored(small.settings) == []


def test_a_large_upload_is_never_held_in_memory(api: SimpleNamespace) -> None:
    body, headers = multipart([("purpose", None, b"batch"), ("file", "big.jsonl", b"@@")])
    head, tail = body.split(b"@@")
    chunk = b"z" * (256 * 1024)
    rounds = 160  # 40 MiB

    def gen() -> Iterator[bytes]:
        yield head
        for _ in range(rounds):
            yield chunk
        yield tail

    tracemalloc.start()
    try:
        r = httpx.post(f"{api.url}/v1/files", content=gen(), headers=headers, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200 and r.json()["bytes"] == rounds * len(chunk)
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while uploading {rounds * len(chunk)}"
