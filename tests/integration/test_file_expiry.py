"""Files expire as the SDK asks: ``expires_after`` on upload and ``output_expires_after`` on a batch set the
file's ``expires_at``; the sweep's ``delete_expired_files`` removes the record and the bytes once it has
passed, and keeps the input of a batch still running until that batch ends."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import openai
import pytest

from scheduler import keys
from scheduler.lifecycle import Stage, transition
from scheduler.service import ENDPOINT

LINE = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "tiny"}}\n'


def sdk(api: SimpleNamespace) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key="key-alice", max_retries=0,
                         _strict_response_validation=True)


def stored(api: SimpleNamespace, file_id: str) -> bool:
    return bool(api.service.storage.exists(api.service.records.get_file("alice", file_id).path))


def test_expires_after_on_upload_sets_expires_at(api: SimpleNamespace) -> None:
    f = sdk(api).files.create(file=("in.jsonl", LINE), purpose="batch",
                              expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    assert sdk(api).files.retrieve(f.id).expires_at == f.expires_at
    assert api.client.zscore(keys.expiring_files(), f.id) == f.expires_at
    plain = sdk(api).files.create(file=("in.jsonl", LINE), purpose="batch")
    assert plain.expires_at is None and api.client.zscore(keys.expiring_files(), plain.id) is None


@pytest.mark.parametrize(("anchor", "seconds", "param"), [
    ("last_active_at", "3600", "expires_after[anchor]"),
    ("created_at", "59", "expires_after[seconds]"),
    ("created_at", str(31 * 86400), "expires_after[seconds]"),
    ("created_at", "an hour", "expires_after[seconds]"),
    (None, "3600", "expires_after[anchor]"),
])
@pytest.mark.parametrize("file_first", [False, True])
def test_a_bad_expires_after_is_a_400_and_nothing_is_kept(api: SimpleNamespace, anchor: str | None, seconds: str,
                                                          param: str, file_first: bool) -> None:
    fields = {"purpose": "batch", "expires_after[seconds]": seconds}
    if anchor is not None:
        fields["expires_after[anchor]"] = anchor
    files = {"file": ("in.jsonl", LINE, "application/octet-stream")}
    storage = api.service.storage
    before = storage.fs.find(storage.root)
    # httpx sends data fields before files; a raw body puts the file first.
    request = httpx.Request("POST", f"{api.url}/v1/files", data=fields, files=files)
    body = request.read()
    if file_first:
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        parts = body.split(b"--" + boundary)
        body = b"--" + boundary + (b"--" + boundary).join([parts[-2], *parts[1:-2], parts[-1]])
    r = api.http.post("/v1/files", content=body, headers={"content-type": request.headers["content-type"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["code"] == "invalid_expires_after"
    assert api.service.records.list_files("alice", limit=10)[0] == []
    assert storage.fs.find(storage.root) == before


def test_the_sweep_deletes_expired_files_but_not_a_running_batchs_input(api: SimpleNamespace) -> None:
    service, records = api.service, api.service.records
    now = int(api.client.time()[0])
    expired, in_use, later = (service.store_upload("alice", f"{n}.jsonl", "batch", [LINE]) for n in "abc")
    batch = service.create_batch("alice", input_file_id=in_use.id, endpoint=ENDPOINT)
    records.set_file_expiry(expired, now - 5)
    records.set_file_expiry(in_use, now - 5)
    records.set_file_expiry(later, now + 3600)

    assert service.delete_expired_files(now) == [expired.id]
    assert not service.storage.exists(expired.path)
    # The running batch's input: gone for its tenant, kept for validation, looked at again a minute later.
    with pytest.raises(openai.NotFoundError):
        sdk(api).files.retrieve(in_use.id)
    assert service.storage.exists(in_use.path)
    assert api.client.zscore(keys.expiring_files(), in_use.id) == now + 60
    assert service.delete_expired_files(now) == []

    transition(api.client, batch.id, Stage.FAILED)  # the batch ended: its input may go now
    assert service.delete_expired_files(now + 60) == [in_use.id]
    assert not service.storage.exists(in_use.path)
    assert service.delete_expired_files(now + 3600) == [later.id]
    assert api.client.zcard(keys.expiring_files()) == 0


def test_an_expired_file_is_gone_for_its_tenant_before_the_sweep(api: SimpleNamespace) -> None:
    f = api.service.store_upload("alice", "in.jsonl", "batch", [LINE])
    api.service.records.set_file_expiry(f, int(time.time()) - 1)
    client = sdk(api)
    assert list(client.files.list()) == []
    for call in (lambda: client.files.retrieve(f.id), lambda: client.files.content(f.id),
                 lambda: client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()


def test_one_file_that_fails_does_not_stop_the_others(api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    service = api.service
    now = int(api.client.time()[0])
    files = [service.store_upload("alice", f"{n}.jsonl", "batch", [LINE]) for n in range(3)]
    for i, f in enumerate(files):
        service.records.set_file_expiry(f, now - 10 + i)  # deleted in this order
    service.delete_file("alice", files[0].id)  # deleted by its tenant after the sweep read the index
    read = service.records.expired_files
    monkeypatch.setattr(service.records, "expired_files", lambda now, limit: [files[0], *read(now, limit)])
    real = service.storage.delete

    def flaky(path: str, recursive: bool = False) -> None:
        if path == files[1].path:
            raise OSError("storage unavailable")
        real(path, recursive)

    monkeypatch.setattr(service.storage, "delete", flaky)
    assert service.delete_expired_files(now) == [files[2].id]
    monkeypatch.undo()
    assert service.delete_expired_files(now) == [files[1].id]  # the next sweep finishes it
    assert not service.storage.exists(files[1].path)


def test_a_deleted_file_leaves_the_expiry_index(api: SimpleNamespace) -> None:
    f = sdk(api).files.create(file=("in.jsonl", LINE), purpose="batch",
                              expires_after={"anchor": "created_at", "seconds": 3600})
    sdk(api).files.delete(f.id)
    assert api.client.zcard(keys.expiring_files()) == 0
    assert api.service.delete_expired_files(int(time.time()) + 7200) == []


def test_output_expires_after_is_kept_on_the_batch(api: SimpleNamespace) -> None:
    f = sdk(api).files.create(file=("in.jsonl", LINE), purpose="batch")
    b = sdk(api).batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h",
                                output_expires_after={"anchor": "created_at", "seconds": 7200})
    assert api.service.records.batch(b.id).output_expires_seconds == 7200
    r = api.http.post("/v1/batches", json={"input_file_id": f.id, "endpoint": ENDPOINT,
                                           "output_expires_after": {"anchor": "created_at", "seconds": 5}})
    assert r.status_code == 400, r.text
