"""The OpenAI-compatible HTTP API: the app factory, error rendering, health, metrics and models.

Routes live by noun in ``api_files`` and ``api_batches``; the shared operations in ``Service``. Every
failure leaves as ``{"error": {"message", "type", "param", "code"}}`` with its status: the error tree's
own, 400 for a request FastAPI cannot validate, 404 for an unknown URL, 503 when Redis is down, and 500
(logged once, with its traceback) for a fault of ours. Bad input never reaches the 500 path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import redis
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import api_batches, api_deps, api_files, api_together, metrics
from scheduler.api_deps import ApiState
from scheduler.errors import InvalidRequest, NotFound, TokenbatchError
from scheduler.schemas import ModelList, ModelObject
from scheduler.service import Sender, Service
from scheduler.settings import Settings

log = logging.getLogger("tokenbatch.api")

SERVER_ERROR = {"error": {"message": "The server had an error while processing your request; it has been logged.",
                          "type": "server_error", "param": None, "code": "internal_error"}}
UNAVAILABLE = {"error": {"message": "The service's database is unreachable; retry shortly.",
                         "type": "server_error", "param": None, "code": "service_unavailable"}}


class Observe:
    """Outermost app middleware: times every request by route template, and turns an unhandled exception
    into one logged 500 in the error shape (unless the response had already started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        started = False

        async def watch(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # mid-body: the server drops the connection, so the client sees a truncated response
            await JSONResponse(SERVER_ERROR, status_code=500)(scope, receive, send)
            status = 500
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.API_LATENCY.labels(template, scope.get("method", ""), str(status)).observe(
                time.perf_counter() - began)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TokenbatchError)
    async def tokenbatch_error(_: Request, exc: TokenbatchError) -> JSONResponse:
        return api_deps.error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return api_deps.error_response(api_deps.describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})."
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        err = InvalidRequest(message, code="unknown_url" if exc.status_code == 404 else None)
        err.status = exc.status_code
        return JSONResponse(err.body(), status_code=exc.status_code, headers=dict(exc.headers or {}))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", exc)
        return JSONResponse(UNAVAILABLE, status_code=503, headers={"retry-after": "1"})


def create_app(settings: Settings, client: redis.Redis | None = None, send: Sender | None = None) -> FastAPI:
    """The API over one Redis. ``send`` (task name, args) defaults to the Celery app's sender."""
    if client is None:
        # A short retry: a blip is ridden out, an outage answers 503 in about a second, not after ~20 s.
        client = redis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/0", health_check_interval=30,
                                      retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3))
    if send is None:
        from scheduler.celery_app import make_app, sender  # Celery only where tasks are really sent

        send = sender(make_app(settings))
    app = FastAPI(title="tokenbatch", version="0.1.0", summary="An OpenAI-compatible Batch API.")
    app.state.tokenbatch = ApiState(settings=settings, client=client, service=Service(settings, client, send))
    _install_error_handlers(app)
    app.include_router(api_files.router)
    app.include_router(api_batches.router)
    app.include_router(api_together.router)  # the Together face, under /together
    _install_ops_routes(app)
    app.add_middleware(Observe)
    return app


def _install_ops_routes(app: FastAPI) -> None:
    @app.get("/v1/models", response_model=ModelList, tags=["models"])
    def list_models(request: Request, _tenant: str = Depends(api_deps.tenant)) -> ModelList:
        return ModelList(data=_models(request))

    @app.get("/v1/models/{model_id:path}", response_model=ModelObject, tags=["models"])
    def retrieve_model(model_id: str, request: Request,
                       _tenant: str = Depends(api_deps.tenant)) -> ModelObject:
        for m in _models(request):
            if m.id == model_id:
                return m
        raise NotFound(f"The model {model_id!r} is not served here.", param="model",
                                code="model_not_found")

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> JSONResponse:
        """200 when Redis answers a PING, else 503: what a load balancer or systemd watchdog needs."""
        try:
            await run_in_threadpool(api_deps.state(request).client.ping)
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc), **UNAVAILABLE}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def scrape(request: Request) -> Response:
        s = api_deps.state(request)
        body, content_type = await run_in_threadpool(metrics.render, s.client, s.settings)
        return Response(body, media_type=content_type)


def _models(request: Request) -> list[ModelObject]:
    s = api_deps.state(request)
    path = s.settings.models
    created = int(os.path.getmtime(path)) if path and os.path.exists(path) else 0
    return [ModelObject(id=m, created=created) for m in s.service.models]


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread (tests, ``tokenbatch run``); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="tokenbatch-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
