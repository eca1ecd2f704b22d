"""The Together upload's signed URL through the real HTTP API (uvicorn in a thread, real Redis): it uploads
once, before it expires, to its own file, for its own tenant, within the size cap; every refusal keeps
nothing. Plain httpx sends what the SDKs send, and what they never would."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import redis

from scheduler import signing
from scheduler.api import create_app, serve_in_thread
from scheduler.redis_server import EmbeddedRedis
from scheduler.settings import Settings

KEYS = "key-alice:alice,key-bob:bob"
ALICE = {"authorization": "Bearer key-alice"}
BOB = {"authorization": "Bearer key-bob"}
LINE = b'{"custom_id": "r1", "body": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}}\n'


def serve(redis_server: EmbeddedRedis, data_dir: Path, **settings: object) -> Iterator[SimpleNamespace]:
    client = redis.Redis.from_url(redis_server.url)
    config = Settings(redis_url=redis_server.url, data_dir=data_dir, api_keys=KEYS, **settings)  # type: ignore[arg-type]
    app = create_app(config, client, lambda name, args: None)
    with serve_in_thread(app) as url:
        yield SimpleNamespace(url=url, settings=config, client=client)
    client.close()


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    yield from serve(redis_server, tmp_path_factory.mktemp("together"), max_file_bytes=1000)


@pytest.fixture(scope="module")
def proxied_server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    yield from serve(redis_server, tmp_path_factory.mktemp("together-proxied"),
                     public_url="https://batch.example.com/api/")


@pytest.fixture
def api(server: SimpleNamespace, redis_url: str) -> SimpleNamespace:
    """An API capping uploads at 1000 bytes, with Redis flushed and no stored files."""
    shutil.rmtree(server.settings.files_url, ignore_errors=True)
    return server


def stored(api: SimpleNamespace) -> list[Path]:
    return [p for p in Path(api.settings.files_url).rglob("*") if p.is_file()]


def start(api: SimpleNamespace, headers: dict[str, str] = ALICE, **fields: str) -> tuple[str, str]:
    """Step 1 as the 1.x SDK sends it (urlencoded): the signed Location and the announced file id."""
    form = {"purpose": "batch-api", "file_name": "in.jsonl", "file_type": "jsonl", **fields}
    r = httpx.post(f"{api.url}/together/v1/files", data=form, headers=headers)
    assert r.status_code == 302, r.text
    return r.headers["location"], r.headers["x-together-file-id"]


def put(url: str, body: bytes | Iterator[bytes] = LINE, **headers: str) -> httpx.Response:
    return httpx.put(url, content=body, headers=headers)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_step_one_redirects_to_an_absolute_signed_url_and_stores_nothing(api: SimpleNamespace) -> None:
    location, file_id = start(api)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == api.url and parts.path == f"/together/v1/files/{file_id}/upload"
    assert set(parse_qs(parts.query)) == {"tenant", "expires", "nonce", "signature"}
    assert file_id.startswith("file-") and stored(api) == []
    assert httpx.get(f"{api.url}/together/v1/files/{file_id}", headers=ALICE).status_code == 404
    # 3.x sends the same fields as multipart, with a checksum.
    r = httpx.post(f"{api.url}/together/v1/files", files={"purpose": (None, "batch-api"),
                   "file_name": (None, "x.jsonl"), "file_type": (None, "jsonl"),
                   "checksum": (None, hashlib.sha256(LINE).hexdigest())}, headers=ALICE)
    assert r.status_code == 302 and r.headers["location"].startswith(api.url)


def test_the_location_uses_public_url_behind_a_proxy(proxied_server: SimpleNamespace, redis_url: str) -> None:
    location, file_id = start(proxied_server)
    assert location.startswith(f"https://batch.example.com/api/together/v1/files/{file_id}/upload?")


def test_a_url_uploads_once_with_exactly_200_and_preprocess_returns_the_file(api: SimpleNamespace) -> None:
    location, file_id = start(api, checksum=hashlib.sha256(LINE).hexdigest())
    first = put(location)
    assert first.status_code == 200 and first.json()["id"] == file_id
    again = put(location, b"other bytes\n")
    assert again.status_code == 403 and again.json()["error"]["code"] == "upload_url_used"
    done = httpx.post(f"{api.url}/together/v1/files/{file_id}/preprocess", headers=ALICE)
    assert done.status_code == 200
    body = done.json()
    assert (body["id"], body["FileType"], body["type"], body["purpose"], body["bytes"], body["filename"]) == (
        file_id, "jsonl", "jsonl", "batch-api", len(LINE), "in.jsonl")
    assert httpx.get(f"{api.url}/together/v1/files/{file_id}/content", headers=ALICE).content == LINE


def test_an_expired_url_is_refused_and_stores_nothing(api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    location, file_id = start(api)
    later = signing.now() + signing.UPLOAD_URL_SECONDS + 1
    monkeypatch.setattr(signing, "now", lambda: later)  # the server runs in this process
    r = put(location)
    assert r.status_code == 403 and r.json()["error"]["code"] == "upload_url_expired"
    assert stored(api) == []
    assert httpx.post(f"{api.url}/together/v1/files/{file_id}/preprocess", headers=ALICE).status_code == 404


@pytest.mark.parametrize("change", [
    {"expires": "9999999999"}, {"nonce": "0" * 32}, {"signature": "0" * 64}, {"tenant": "bob"},
])
def test_a_tampered_url_is_refused_and_the_real_one_still_works(api: SimpleNamespace, change: dict[str, str]) -> None:
    location, _ = start(api)
    r = put(with_query(location, **change))
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"
    assert r.json()["error"].keys() == {"message", "type", "param", "code"}
    assert stored(api) == []
    assert put(location).status_code == 200  # a refused forgery did not use the grant up


def test_a_url_without_its_signature_or_for_another_file_is_refused(api: SimpleNamespace) -> None:
    location, file_id = start(api)
    bare = urlsplit(location)._replace(query="").geturl()
    assert put(bare).json()["error"]["code"] == "invalid_upload_url"
    other = location.replace(file_id, "file-0123456789abcdef01234567")
    assert put(other).json()["error"]["code"] == "invalid_signature"
    assert stored(api) == []


def test_a_url_is_bound_to_its_tenant(api: SimpleNamespace) -> None:
    alice_url, alice_file = start(api)
    bob_url, bob_file = start(api, BOB)
    # Bob's valid signature does not carry over to alice's file, nor alice's to bob's tenant.
    query = urlsplit(bob_url).query
    assert put(f"{api.url}/together/v1/files/{alice_file}/upload?{query}").status_code == 403
    assert put(with_query(alice_url, tenant="bob")).status_code == 403
    # A client that sends a key anyway must send the grant's tenant's.
    r = put(alice_url, **BOB)
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_tenant"
    assert put(alice_url, **ALICE).status_code == 200
    # The stored file is alice's: bob's preprocess and download answer 404 like for any unknown id.
    assert httpx.post(f"{api.url}/together/v1/files/{alice_file}/preprocess", headers=BOB).status_code == 404
    assert httpx.get(f"{api.url}/together/v1/files/{alice_file}/content", headers=BOB).status_code == 404
    assert put(bob_url).status_code == 200
    assert httpx.post(f"{api.url}/together/v1/files/{bob_file}/preprocess", headers=BOB).status_code == 200


def test_a_put_over_the_cap_is_refused_without_being_stored(api: SimpleNamespace) -> None:
    location, file_id = start(api)
    r = put(location, b"x" * 1001)  # refused on Content-Length, before reading: the URL stays usable
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert stored(api) == []
    chunked = put(location, iter([b"y" * 600, b"y" * 600]))  # no Content-Length: the running count stops it
    assert chunked.status_code == 413 and chunked.json()["error"]["param"] == "file"
    assert stored(api) == []
    assert httpx.post(f"{api.url}/together/v1/files/{file_id}/preprocess", headers=ALICE).status_code == 404
    at_cap, at_cap_file = start(api)
    assert put(at_cap, b"z" * 1000).status_code == 200
    assert [p.name for p in stored(api)] == [at_cap_file]


def test_bytes_that_do_not_match_the_checksum_are_refused_without_being_stored(api: SimpleNamespace) -> None:
    location, file_id = start(api, checksum=hashlib.sha256(b"something else").hexdigest())
    r = put(location)
    assert r.status_code == 400 and r.json()["error"]["code"] == "checksum_mismatch"
    assert stored(api) == []
    assert httpx.get(f"{api.url}/together/v1/files/{file_id}", headers=ALICE).status_code == 404


@pytest.mark.parametrize(("form", "status", "code"), [
    ({"purpose": "fine-tune"}, 400, "invalid_purpose"),
    ({"file_type": "parquet"}, 400, "invalid_file_type"),
    ({"checksum": "abc"}, 400, "invalid_checksum"),
])
def test_step_one_refuses_what_tokenbatch_cannot_batch(api: SimpleNamespace, form: dict[str, str], status: int,
                                                       code: str) -> None:
    r = httpx.post(f"{api.url}/together/v1/files",
                   data={"purpose": "batch-api", "file_name": "a.jsonl", "file_type": "jsonl", **form}, headers=ALICE)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_step_one_refuses_a_file_part_a_big_form_and_a_wrong_key(api: SimpleNamespace) -> None:
    url = f"{api.url}/together/v1/files"
    r = httpx.post(url, data={"purpose": "batch-api"}, files={"file": ("a.jsonl", LINE)}, headers=ALICE)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unexpected_file")
    r = httpx.post(url, data={"purpose": "batch-api", "file_name": "x" * 70_000}, headers=ALICE)
    assert r.status_code == 413
    r = httpx.post(url, content=b"{}", headers={"content-type": "application/json", **ALICE})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_content_type")
    r = httpx.post(url, data={"purpose": "batch-api"}, headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert stored(api) == []
