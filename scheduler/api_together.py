"""The Together-compatible face: ``/together/v1/...``, the ``together`` SDK's ``base_url`` being ``<root>/together``
(3.x) or ``<root>/together/v1`` (1.x).

A thin translation over the same ``Service`` and ``Records`` as the OpenAI face, so a batch made through
one is the same batch through the other, for the same tenant. Only the shapes differ (``sdk-contract.md``):
``POST /batches`` wraps the job as ``{"job": ..., "warning"?}``, ``GET /batches`` is a bare array, files
carry ``FileType``. Errors keep the one ``{"error": {...}}`` shape (1.x raises ``JSONError`` on any other).
The upload's three steps are in ``api_together_upload``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from scheduler import api_deps, api_files, api_together_upload, keys
from scheduler.records import BatchRecord, FileRecord
from scheduler.service import Service
from scheduler.together_schemas import (
    BatchCreated,
    BatchCreateRequest,
    BatchJob,
    TogetherFile,
    TogetherFileDeleted,
    TogetherFileList,
)

router = APIRouter(prefix="/together/v1", tags=["together"])
router.include_router(api_together_upload.router)  # POST /files, PUT /files/{id}/upload, .../preprocess

Tenant = Annotated[str, Depends(api_deps.tenant)]
Svc = Annotated[Service, Depends(api_deps.service)]
LIST_CAP = 1000  # Together lists have no cursor: the newest this many


def is_legacy(request: Request) -> bool:
    """The 1.x SDK (``Together/v1 PythonBindings/1.5.x``) knows ``CANCELING``; 3.x would reject it."""
    return "PythonBindings" in request.headers.get("user-agent", "")


Legacy = Annotated[bool, Depends(is_legacy)]


# Batches
@router.post("/batches", response_model=BatchCreated)
async def create_batch(request: Request, tenant: Tenant, service: Svc, legacy: Legacy) -> JSONResponse:
    """``{"job": BatchJob}``, plus ``warning`` only when there is something to warn of."""
    body: BatchCreateRequest = await api_deps.read_json(request, BatchCreateRequest)

    def create() -> BatchRecord:
        return service.create_batch(tenant, input_file_id=body.input_file_id, endpoint=body.endpoint,
                                    completion_window=body.completion_window)

    batch = await run_in_threadpool(create)
    warnings: list[str] = []
    if body.model_id is not None:
        warnings.append(f"model_id {body.model_id!r} is ignored: each line's body.model names its model.")
    if body.priority is not None:
        warnings.append("priority is ignored: batches are served fairly across tenants, in order within one.")
    job = await run_in_threadpool(_jobs, service, [batch], legacy)
    created = BatchCreated(job=job[0], warning=" ".join(warnings) or None)
    return JSONResponse(created.model_dump(mode="json", by_alias=True, exclude={"warning"} if not warnings else None))


@router.get("/batches", response_model=list[BatchJob])
def list_batches(tenant: Tenant, service: Svc, legacy: Legacy,
                 limit: Annotated[int, Query(ge=1, le=LIST_CAP)] = LIST_CAP) -> list[BatchJob]:
    """Newest first, as a bare array (both SDKs expect one); ``limit`` is a tokenbatch extension."""
    found, _ = service.records.list_batches(tenant, limit=limit)
    return _jobs(service, found, legacy)


@router.get("/batches/{batch_id}", response_model=BatchJob)
def retrieve_batch(batch_id: str, tenant: Tenant, service: Svc, legacy: Legacy) -> BatchJob:
    return _jobs(service, [service.records.get_batch(tenant, batch_id)], legacy)[0]


@router.post("/batches/{batch_id}/cancel", response_model=BatchJob)
def cancel_batch(batch_id: str, tenant: Tenant, service: Svc, legacy: Legacy) -> BatchJob:
    """The same cancel as the OpenAI face: idempotent; a batch that already ended is a 409."""
    return _jobs(service, [service.cancel_batch(tenant, batch_id)], legacy)[0]


def _jobs(service: Service, batches: list[BatchRecord], legacy: bool) -> list[BatchJob]:
    """Batch jobs with their input files' sizes, read in one round trip (0 once a file is deleted)."""
    pipe = service.r.pipeline(transaction=False)
    for b in batches:
        pipe.hget(keys.file(b.input_file_id), "bytes")
    sizes = pipe.execute() if batches else []
    return [BatchJob.from_record(b, int(size or 0), legacy) for b, size in zip(batches, sizes, strict=True)]


# Files
@router.get("/files", response_model=TogetherFileList)
def list_files(tenant: Tenant, service: Svc,
               limit: Annotated[int, Query(ge=1, le=LIST_CAP)] = LIST_CAP) -> TogetherFileList:
    records, _ = service.records.list_files(tenant, limit=limit)
    return TogetherFileList(data=[TogetherFile.from_record(f) for f in records])


@router.get("/files/{file_id}", response_model=TogetherFile)
def retrieve_file(file_id: str, tenant: Tenant, service: Svc) -> TogetherFile:
    return TogetherFile.from_record(service.records.get_file(tenant, file_id))


@router.delete("/files/{file_id}", response_model=TogetherFileDeleted)
def delete_file(file_id: str, tenant: Tenant, service: Svc) -> TogetherFileDeleted:
    record: FileRecord = service.delete_file(tenant, file_id)
    return TogetherFileDeleted(id=record.id, deleted=True)


@router.get("/files/{file_id}/content", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "A byte range"}})
def file_content(file_id: str, request: Request, tenant: Tenant, service: Svc) -> StreamingResponse:
    """The OpenAI face's download: streamed, with ``Content-Length``, honouring ``Range``."""
    return api_files.file_content(file_id, request, tenant, service)
