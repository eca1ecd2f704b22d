"""``/v1/batches``: create, retrieve, list (newest first, cursor ``after``), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from scheduler import api_deps
from scheduler.records import BatchRecord
from scheduler.schemas import Batch, BatchCreateRequest, BatchList, cursor_page
from scheduler.service import Service

router = APIRouter(prefix="/v1/batches", tags=["batches"])

Tenant = Annotated[str, Depends(api_deps.tenant)]
Svc = Annotated[Service, Depends(api_deps.service)]

_CREATE_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": BatchCreateRequest.model_json_schema()}}}}


@router.post("", response_model=Batch, openapi_extra=_CREATE_DOC)
async def create_batch(request: Request, tenant: Tenant, service: Svc) -> Batch:
    """The body is read here, bounded, rather than by FastAPI, so an oversized or broken body is a clean 4xx."""
    body: BatchCreateRequest = await api_deps.read_json(request, BatchCreateRequest)

    def create() -> BatchRecord:
        return service.create_batch(tenant, input_file_id=body.input_file_id, endpoint=body.endpoint,
                                    completion_window=body.completion_window, metadata=body.metadata,
                                    output_expires_seconds=expiry.seconds if (expiry := body.output_expires_after)
                                    else None)

    return Batch.from_record(await run_in_threadpool(create))


@router.get("", response_model=BatchList)
def list_batches(
    tenant: Tenant, service: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> BatchList:
    records, more = service.records.list_batches(tenant, limit=limit, after=after or None)
    return cursor_page(BatchList, [Batch.from_record(b) for b in records], more)


@router.get("/{batch_id}", response_model=Batch)
def retrieve_batch(batch_id: str, tenant: Tenant, service: Svc) -> Batch:
    return Batch.from_record(service.records.get_batch(tenant, batch_id))


@router.post("/{batch_id}/cancel", response_model=Batch)
def cancel_batch(batch_id: str, tenant: Tenant, service: Svc) -> Batch:
    """Cancelling twice is harmless (the same batch back); a batch that already ended is a 409."""
    return Batch.from_record(service.cancel_batch(tenant, batch_id))
