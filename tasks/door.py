"""The Celery door: internal services submit and follow batches by sending tasks by name, with no import of
tokenbatch (only celery, pointed at the same broker and result backend)::

    app = Celery(broker=URL, backend=URL)
    app.conf.task_routes = {"tokenbatch.*": {"queue": "tokenbatch.control"}}
    batch_id = app.send_task("tokenbatch.submit", kwargs={"tenant": "acme", "requests": [...]}).get()
    batch = app.send_task("tokenbatch.get_batch", kwargs={"batch_id": batch_id, "tenant": "acme"}).get()

Every call goes through ``Service``, so the checks, limits and token budget are those of the HTTP API, and a
refusal comes back as a task error carrying the API's message (``InvalidRequest``, ``NotFound``, ...).
The broker is the trust boundary: whoever can send tasks may name any tenant, as an API key would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import orjson
from celery import Task
from fsspec.core import url_to_fs
from pydantic import ValidationError

from scheduler.auth import check_tenant
from scheduler.celery_app import app
from scheduler.errors import InvalidRequest, TokenbatchError, describe
from scheduler.records import FileRecord
from scheduler.schemas import Batch, BatchCreateRequest
from scheduler.service import ENDPOINT, Service
from scheduler.storage import is_local
from tasks.context import ctx

CHUNK = 1 << 20
CREATED = "CREATED"  # the result state a submit leaves once its batch exists (see ``submit``)


def _tenant(tenant: Any) -> str:
    """The tenant an API key would be bound to, by the same rule (``auth.check_tenant``)."""
    try:
        if not isinstance(tenant, str):
            raise ValueError(f"tenant must be a string, not {type(tenant).__name__}")
        return check_tenant(tenant)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="tenant", code="invalid_tenant") from None


def _lines(requests: list[Any]) -> Iterator[bytes]:
    """The requests as JSONL, a chunk at a time; each item a request object or one JSON line."""
    buf = bytearray()
    for i, item in enumerate(requests):
        if isinstance(item, dict):
            buf += orjson.dumps(item) + b"\n"
        elif isinstance(item, str):
            buf += item.rstrip("\n").encode() + b"\n"
        else:
            raise InvalidRequest(f"requests[{i}] must be a request object or a JSON line, not "
                                 f"{type(item).__name__}", param="requests", code="invalid_requests")
        if len(buf) >= CHUNK:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _read(url: str, storage_root: str | None) -> Iterator[bytes]:
    """The file at ``url`` in chunks. A local path must lie under the local storage root: the copy becomes
    a file the tenant can download, so the door must not read the worker's own files (its settings)."""
    try:
        fs, path = url_to_fs(url)
        if is_local(fs) and (storage_root is None or not os.path.realpath(path).startswith(
                os.path.realpath(storage_root) + os.sep)):
            raise InvalidRequest(f"input_url {url!r}: a local file must lie under the storage root "
                                 "(TOKENBATCH_STORAGE_URL)", param="input_url", code="invalid_input_url")
        with fs.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    except (OSError, ValueError, ImportError) as exc:
        raise InvalidRequest(f"input_url {url!r} could not be read: {exc}", param="input_url",
                             code="invalid_input_url") from None


def _upload(service: Service, tenant: str, requests: Any, input_url: Any) -> FileRecord:
    if (requests is None) == (input_url is None):
        raise InvalidRequest("Give exactly one of 'requests' (a list of request lines) and 'input_url'",
                             param="requests", code="invalid_request")
    if input_url is not None:
        if not isinstance(input_url, str) or not input_url:
            raise InvalidRequest("input_url must be an fsspec URL string", param="input_url",
                                 code="invalid_input_url")
        root = service.storage.root if service.storage.local else None
        return service.store_upload(tenant, input_url.rsplit("/", 1)[-1] or "input.jsonl", "batch",
                                    _read(input_url, root))
    if not isinstance(requests, list):
        raise InvalidRequest("requests must be a list of request lines", param="requests",
                             code="invalid_requests")
    return service.store_upload(tenant, "celery-submit.jsonl", "batch", _lines(requests))


@app.task(name="tokenbatch.submit", bind=True, ignore_result=False, throws=(TokenbatchError,))
def submit(self: Task, tenant: str, requests: list[Any] | None = None, input_url: str | None = None,
           metadata: dict[str, str] | None = None, completion_window: str = "24h",
           endpoint: str = ENDPOINT) -> str:
    """Upload the requests (or copy ``input_url``) and create a batch; returns the batch id.

    The task id is an idempotency key: a redelivered submit (its worker died after the batch was
    created) or one sent again with the same ``task_id`` finds the batch id in the result backend
    (state ``CREATED``, then ``SUCCESS``) and returns it rather than creating a second batch."""
    if self.request.id:
        done = self.backend.get_task_meta(self.request.id, cache=False)
        if done.get("status") == CREATED and isinstance(done.get("result"), dict):
            return str(done["result"]["batch_id"])
        if done.get("status") == "SUCCESS" and isinstance(done.get("result"), str):
            return done["result"]
    tenant = _tenant(tenant)
    try:  # the HTTP face's own request schema: the same types, lengths and messages
        BatchCreateRequest.model_validate({"input_file_id": "-", "endpoint": endpoint,
                                           "completion_window": completion_window, "metadata": metadata})
    except ValidationError as exc:
        raise describe(exc.errors(include_url=False)) from None
    service = ctx().service
    source = _upload(service, tenant, requests, input_url)
    try:
        batch = service.create_batch(tenant, input_file_id=source.id, endpoint=endpoint,
                                     completion_window=completion_window, metadata=metadata)
    except TokenbatchError:
        service.delete_file(tenant, source.id)  # refused: leave no orphan upload behind
        raise
    if self.request.id:
        self.update_state(state=CREATED, meta={"batch_id": batch.id})
    return batch.id


@app.task(name="tokenbatch.get_batch", ignore_result=False, throws=(TokenbatchError,))
def get_batch(batch_id: str, tenant: str) -> dict[str, Any]:
    """The batch as the OpenAI face shows it (``status``, ``request_counts``, file ids, ``stage``...)."""
    record = ctx().service.records.get_batch(_tenant(tenant), str(batch_id))
    return Batch.from_record(record).model_dump(mode="json")


@app.task(name="tokenbatch.cancel_batch", ignore_result=False, throws=(TokenbatchError,))
def cancel_batch(batch_id: str, tenant: str) -> dict[str, Any]:
    """Cancel as ``POST /v1/batches/{id}/cancel`` does; returns the batch object."""
    record = ctx().service.cancel_batch(_tenant(tenant), str(batch_id))
    return Batch.from_record(record).model_dump(mode="json")
