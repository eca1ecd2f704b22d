"""``/v1/batches``: create, retrieve, list (newest first, cursor ``after``), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from scheduler import api_deps
from scheduler.errors import Conflict, NotFound
from scheduler.lifecycle import Stage, openai_status
from scheduler.records import BatchRecord
from scheduler.schemas import Batch, BatchCreateRequest, BatchList
from scheduler.service import Service

router = APIRouter(prefix="/v1/batches", tags=["batches"])

Tenant = Annotated[str, Depends(api_deps.tenant)]
Svc = Annotated[Service, Depends(api_deps.service)]
CANCEL_DONE = frozenset({Stage.CANCELLING, Stage.CANCELLED})

_CREATE_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": BatchCreateRequest.model_json_schema()}}}}


@router.post("", response_model=Batch, openapi_extra=_CREATE_DOC)
async def create_batch(request: Request, tenant: Tenant, service: Svc) -> Batch:
    """The body is read here, bounded, rather than by FastAPI, so an oversized or broken body is a clean 4xx."""
    body: BatchCreateRequest = await api_deps.read_json(request, BatchCreateRequest)

    def create() -> BatchRecord:
        try:
            return service.create_batch(tenant, input_file_id=body.input_file_id, endpoint=body.endpoint,
                                        completion_window=body.completion_window, metadata=body.metadata)
        except NotFound as exc:  # the caller named it input_file_id
            raise NotFound(exc.message, param="input_file_id", code=exc.code) from None

    return Batch.from_record(await run_in_threadpool(create))


@router.get("", response_model=BatchList)
def list_batches(
    tenant: Tenant, service: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> BatchList:
    records, more = service.records.list_batches(tenant, limit=limit, after=after or None)
    data = [Batch.from_record(b) for b in records]
    return BatchList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                     has_more=more)


@router.get("/{batch_id}", response_model=Batch)
def retrieve_batch(batch_id: str, tenant: Tenant, service: Svc) -> Batch:
    return Batch.from_record(service.records.get_batch(tenant, batch_id))


@router.post("/{batch_id}/cancel", response_model=Batch)
def cancel_batch(batch_id: str, tenant: Tenant, service: Svc) -> Batch:
    """Cancelling twice is harmless (the same batch back); a batch that already ended is a 409."""
    record = service.cancel_batch(tenant, batch_id)
    if record.stage not in CANCEL_DONE:
        raise Conflict(f"Cannot cancel a batch with status {openai_status(record.stage)!r}.", param="batch_id",
                       code="batch_not_cancellable")
    return Batch.from_record(record)
