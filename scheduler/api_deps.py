"""What every route of the HTTP face shares: the app's state, the caller's tenant, error rendering and a
bounded JSON body reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from scheduler import auth
from scheduler.errors import InvalidRequest, TokenbatchError, TooLarge, Unauthorized, describe
from scheduler.service import Service
from scheduler.settings import Settings

JSON_BODY_CAP = 64 * 1024  # a batch create is < 1 KiB even with 16 metadata pairs at full length


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    client: redis.Redis
    service: Service


def state(request: Request) -> ApiState:
    return request.app.state.tokenbatch  # type: ignore[no-any-return]


def service(request: Request) -> Service:
    return state(request).service


def tenant(request: Request) -> str:
    """The tenant of the request's bearer key; a sync dependency, so its Redis lookup runs off the loop."""
    key = auth.bearer(request.headers.get("authorization"))
    if key is None:
        raise Unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
    s = state(request)
    found = auth.resolve(s.client, s.settings, key)
    if found is None:
        raise Unauthorized("Incorrect API key provided.")
    return found


def error_response(exc: TokenbatchError) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status == 409:
        headers.setdefault("x-should-retry", "false")  # the SDKs retry 409 by default; a state conflict won't pass
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)




async def read_body(request: Request, cap: int, too_large: str) -> bytes:
    """A small body, whole, refused with ``too_large`` past ``cap`` bytes without reading on."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise TooLarge(too_large, code="request_too_large")
    except ClientDisconnect as exc:
        raise InvalidRequest("The client disconnected before the body was complete.") from exc
    return bytes(body)


async def read_json(request: Request, model: type[BaseModel], cap: int = JSON_BODY_CAP) -> Any:
    """Read and validate a small JSON body, refusing past ``cap`` bytes without reading on."""
    too_large = f"The request body is larger than {cap} bytes."
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise TooLarge(too_large, code="request_too_large")
    body = await read_body(request, cap, too_large)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise describe(exc.errors(include_url=False)) from None
