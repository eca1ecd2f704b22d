"""The Together upload: three requests, as both SDKs make them (``sdk-contract.md``).

1. ``POST /v1/files`` with form fields only (``purpose``, ``file_name``, ``file_type``, 3.x adds ``checksum``;
   multipart from 3.x, urlencoded from 1.x): answered ``302`` with an absolute, signed ``Location`` and
   ``X-Together-File-Id``. Nothing is stored yet; the grant's one-shot record remembers the fields.
2. ``PUT <Location>`` with the raw bytes and no ``Authorization``: the signed URL is the authorization
   (``signing``). The body streams to storage under the announced id, counted against ``max_file_bytes``
   (refused from ``Content-Length`` before reading, else while streaming, keeping nothing) and checked
   against the checksum. Answered with exactly 200.
3. ``POST /v1/files/{id}/preprocess``: the stored file, as a Together file object.

A step 1 whose checksum matches a file the tenant already stored (its bytes were checked against that same
checksum) is answered ``409`` with ``file_id``: the 3.x SDK then returns that file, sending no bytes again.

Content is checked where the OpenAI face checks it: when a batch is validated, line by line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import parse_options_header

from scheduler import api_deps, auth, signing
from scheduler.api_upload import (
    MultipartReader,
    body_puller,
    check_declared_length,
    clean_filename,
    in_thread,
    read_field,
)
from scheduler.errors import Conflict, InvalidRequest
from scheduler.records import FileRecord, new_id
from scheduler.service import INPUT_PURPOSES, Service
from scheduler.together_schemas import TogetherFile

router = APIRouter(prefix="/files")  # included by api_together under /together/v1

Tenant = Annotated[str, Depends(api_deps.tenant)]
Svc = Annotated[Service, Depends(api_deps.service)]
FORM_CAP = 64 * 1024  # four short text fields
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PUT_ROUTE = "together_upload_put"


@router.post("", status_code=302, responses={302: {"description": "PUT the file's bytes to the Location URL"}})
async def start_upload(request: Request, tenant: Tenant, service: Svc) -> JSONResponse:
    """Step 1: validate the form, issue a signed single-use URL, redirect to it."""
    fields = await _read_form(request)
    purpose = fields.get("purpose", "")
    if purpose not in INPUT_PURPOSES:
        raise InvalidRequest(f"purpose must be 'batch-api' (got {purpose!r}).", param="purpose",
                             code="invalid_purpose")
    kind = fields.get("file_type", "jsonl")
    if kind != "jsonl":
        raise InvalidRequest(f"file_type must be 'jsonl': batch input is JSON Lines (got {kind!r}).",
                             param="file_type", code="invalid_file_type")
    checksum = fields.get("checksum", "").lower()
    if checksum and not SHA256.match(checksum):
        raise InvalidRequest("checksum must be the file's SHA-256 in hex.", param="checksum", code="invalid_checksum")
    if checksum and (same := await anyio.to_thread.run_sync(service.records.file_by_checksum, tenant, checksum)):
        # The 3.x SDK reads ``file_id`` from a 409 and returns that file instead of uploading the bytes again.
        err = Conflict(f"These bytes were already uploaded as {same.id}.", param="checksum",
                       code="file_already_exists")
        return JSONResponse({**err.body(), "file_id": same.id}, status_code=409, headers={"x-should-retry": "false"})
    file_id = new_id("file-")
    pending = {"filename": clean_filename(fields.get("file_name")), "purpose": purpose, "checksum": checksum}

    def grant() -> str:
        g = signing.issue(service.r, tenant, file_id, pending)
        path = request.app.url_path_for(PUT_ROUTE, file_id=file_id)
        return f"{_origin(request)}{path}?{urlencode(g.query(signing.secret(service.r)))}"

    location = await anyio.to_thread.run_sync(grant)
    return JSONResponse({"id": file_id, "upload_url": location}, status_code=302,
                        headers={"location": location, "x-together-file-id": file_id})


@router.put("/{file_id}/upload", name=PUT_ROUTE, responses={200: {"description": "Stored"}})
async def put_upload(file_id: str, request: Request, service: Svc) -> TogetherFile:
    """Step 2: the signed URL authorizes the PUT; exactly 200 when stored (the SDKs accept nothing else).

    The URL is checked first, then the declared size (a refusal there leaves the URL usable), then the
    URL is claimed and the body streamed."""
    params = dict(request.query_params)
    bearer = auth.bearer(request.headers.get("authorization"))
    grant = await anyio.to_thread.run_sync(authorize, service, file_id, params, bearer)
    check_declared_length(request.headers.get("content-length"), service.settings.max_file_bytes,
                          overhead=0)  # the raw bytes: no form around them
    pull = body_puller(request)

    def claim_and_store() -> FileRecord:
        return store(service, grant.tenant, file_id, signing.claim(service.r, grant), iter(pull, None))

    return TogetherFile.from_record(await in_thread(claim_and_store))


@router.post("/{file_id}/preprocess")
def preprocess(file_id: str, tenant: Tenant, service: Svc) -> TogetherFile:
    """Step 3: the stored file (another tenant's, or one not PUT yet, is a 404 like any unknown id)."""
    return TogetherFile.from_record(service.records.get_file(tenant, file_id))


def authorize(service: Service, file_id: str, params: dict[str, str], bearer: str | None) -> signing.Grant:
    """The URL's grant if its signature and expiry hold; a bearer key, if one is sent anyway, must be the
    grant's tenant's."""
    grant = signing.verify(signing.secret(service.r), file_id, params)
    if bearer is not None and auth.resolve(service.r, service.settings, bearer) != grant.tenant:
        raise signing.UploadRefused("This upload URL belongs to another tenant.", code="wrong_tenant")
    return grant


def store(service: Service, tenant: str, file_id: str, pending: dict[str, str], chunks: Iterator[bytes]) -> FileRecord:
    """The bytes of a signed PUT, under the id announced in step 1, with the checksum it announced."""
    return service.store_upload(tenant, pending["filename"], pending["purpose"], chunks, file_id=file_id,
                                sha256=pending.get("checksum") or None)


def _origin(request: Request) -> str:
    """Where clients reach the API: ``public_url`` when set (behind a proxy), else the request's own base."""
    public = api_deps.state(request).settings.public_url
    return (public or str(request.base_url)).rstrip("/")


async def _read_form(request: Request) -> dict[str, str]:
    """The text fields of step 1, multipart (3.x) or urlencoded (1.x), read with a small cap."""
    kind, options = parse_options_header(request.headers.get("content-type") or "")
    body = await api_deps.read_body(request, FORM_CAP, "Send the file with PUT to the URL this request returns, "
                                    "not in this form.")
    if kind == b"application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise InvalidRequest("The form is not UTF-8.", code="invalid_form") from None
    if kind == b"multipart/form-data" and options.get(b"boundary"):
        return _multipart_fields(options[b"boundary"], body)
    raise InvalidRequest("Start an upload with form fields purpose, file_name and file_type "
                         "(multipart/form-data or application/x-www-form-urlencoded).", code="invalid_content_type")


def _multipart_fields(boundary: bytes, body: bytes) -> dict[str, str]:
    chunks = iter([body])
    reader = MultipartReader(boundary, lambda: next(chunks, None))
    fields: dict[str, str] = {}
    while (part := reader.next_part()) is not None:
        if part.filename is not None:
            raise InvalidRequest("This endpoint takes no file part: PUT the bytes to the URL it returns "
                                 "(the together SDK does this for you).", param="file", code="unexpected_file")
        fields[part.name] = read_field(reader.data(), part.name)
    return fields
