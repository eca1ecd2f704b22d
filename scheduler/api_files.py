"""``/v1/files``: upload (streamed), list, retrieve, download (streamed, with ``Range``), delete."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from scheduler import api_deps
from scheduler.api_upload import (
    MultipartReader,
    body_puller,
    boundary_of,
    check_declared_length,
    in_thread,
    receive_upload,
)
from scheduler.errors import NotFound, TokenbatchError
from scheduler.schemas import PURPOSE_FILTER, FileDeleted, FileList, FileObject, cursor_page
from scheduler.service import Service

router = APIRouter(prefix="/v1/files", tags=["files"])

Tenant = Annotated[str, Depends(api_deps.tenant)]
Svc = Annotated[Service, Depends(api_deps.service)]
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(TokenbatchError):
    status = 416
    type = "invalid_request_error"
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"The requested range is outside the file's {size} bytes.", param="range")
        self.size = size
        self.headers = {"content-range": f"bytes */{size}"}

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return type(self), (self.size,)


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string", "enum": ["batch"]}},
}}}}}


@router.post("", response_model=FileObject, openapi_extra=_UPLOAD_DOC)
async def create_file(request: Request, tenant: Tenant, service: Svc) -> FileObject:
    """Stream the ``file`` part into storage; past ``max_file_bytes`` it is refused without reading on."""
    check_declared_length(request.headers.get("content-length"), service.settings.max_file_bytes)
    reader = MultipartReader(boundary_of(request.headers.get("content-type")), body_puller(request))
    return FileObject.from_record(await in_thread(lambda: receive_upload(service, tenant, reader)))


@router.get("", response_model=FileList)
def list_files(
    tenant: Tenant, service: Svc,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    """Newest first by default; ``purpose=batch`` also matches files the Together face stored as batch-api."""
    wanted = PURPOSE_FILTER.get(purpose, frozenset({purpose})) if purpose else None
    page, has_more = service.records.list_files(tenant, limit=limit, after=after or None, purposes=wanted,
                                                ascending=order == "asc")
    return cursor_page(FileList, [FileObject.from_record(f) for f in page], has_more)


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, tenant: Tenant, service: Svc) -> FileObject:
    return FileObject.from_record(service.records.get_file(tenant, file_id))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, tenant: Tenant, service: Svc) -> FileDeleted:
    record = service.delete_file(tenant, file_id)
    return FileDeleted(id=record.id, deleted=True)


@router.get("/{file_id}/content", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "A byte range"}})
def file_content(file_id: str, request: Request, tenant: Tenant, service: Svc) -> StreamingResponse:
    """The bytes, streamed with ``Content-Length``; a single ``Range: bytes=a-b`` gets a 206."""
    record = service.records.get_file(tenant, file_id)
    try:
        size = service.storage.size(record.path)
    except FileNotFoundError:
        raise NotFound(f"The content of file {file_id!r} is no longer stored.", param="file_id",
                       code="file_not_found") from None
    span = parse_range(request.headers.get("range"), size)
    start, end = span or (0, size)
    headers = {"content-length": str(end - start), "accept-ranges": "bytes",
               "content-disposition": _disposition(record.filename)}
    if span is not None:
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    body = service.storage.iter_bytes(record.path, start, end) if end > start else iter(())
    return StreamingResponse(body, status_code=206 if span else 200, headers=headers,
                             media_type="application/octet-stream")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single satisfiable range; None to send the whole file.

    Several ranges or a malformed header are ignored (RFC 9110 allows it): the client gets a 200.
    """
    if not header:
        return None
    m = RANGE.match(header.strip().replace(" ", ""))
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, end


def _disposition(name: str) -> str:
    """Header values are latin-1: an ASCII fallback name plus the exact one, percent-encoded (RFC 6266)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
