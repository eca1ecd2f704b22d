"""Worker signals, in one place: an inference worker loads its model before it takes a task, every worker
serves its metrics, and the task signals feed the process-local counters and histograms.

The metric hooks never fail a task: a Redis hiccup while reading a timestamp costs one observation.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from celery import Task
from celery.signals import task_failure, task_postrun, task_prerun, worker_init

from scheduler import worker_metrics as wm
from scheduler.errors import TokenbatchError
from scheduler.lifecycle import TERMINAL
from tasks.context import ctx
from tasks.infer import engine_for

log = logging.getLogger("tokenbatch.worker")


@worker_init.connect
def load_model(**_: Any) -> None:
    """With the solo pool this runs in the process that serves tasks, so the model loads exactly once
    and never in a parent that forks (CUDA must not be touched before a fork). Metrics are served first,
    so a long load shows as ``tokenbatch_worker_model_loaded 0``, not as a worker down."""
    c = ctx()
    model = c.settings.worker_model
    serve_metrics(model)
    if model:
        wm.MODEL_LOADED.labels(model).set(0)
        log.info("loading model %s", model)
        engine_for(c, model)
        wm.MODEL_LOADED.labels(model).set(1)
        log.info("model %s loaded", model)


def serve_metrics(model: str | None) -> None:
    """Start this worker's metrics endpoint (``metrics_port``, 0: off); GPU workers add device memory."""
    c = ctx()
    extra = [wm.DeviceCollector(_cuda_memory)] if model and _has_cuda() else []
    try:
        wm.serve(c.settings, c.client, *extra)
    except OSError as exc:  # metrics are not worth refusing work for
        log.warning("metrics endpoint not started: %s", exc)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cuda_memory() -> Iterator[wm.DeviceMemory]:
    torch = sys.modules["torch"]
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        yield wm.DeviceMemory(device=f"cuda:{i}", allocated=int(torch.cuda.memory_allocated(i)),
                              reserved=int(torch.cuda.memory_reserved(i)), used=int(total - free), total=int(total))


@task_prerun.connect
def before_task(task_id: str | None = None, task: Task | None = None, args: Any = None, **_: Any) -> None:
    if task is None:
        return
    if (task.request.delivery_info or {}).get("redelivered"):
        wm.REDELIVERIES.labels(task.name).inc()
    if task.name == "tokenbatch.infer":
        wm.microbatch_started()


@task_postrun.connect
def after_task(task_id: str | None = None, task: Task | None = None, args: Any = None, retval: Any = None,
               **_: Any) -> None:
    if task is None:
        return
    with contextlib.suppress(Exception):
        if (task.name == "tokenbatch.finalize" and retval in TERMINAL) or (
                task.name == "tokenbatch.validate" and retval == "failed"):
            _observe_batch(str(args[0]), "failed" if task.name == "tokenbatch.validate" else str(retval))


def _observe_batch(batch_id: str, stage: str) -> None:
    b = ctx().records.batch(batch_id)
    if b is not None and b.stage.value == stage:
        wm.observe_batch_end(b.created_at, b.times, stage)


@task_failure.connect
def count_failure(sender: Task | None = None, exception: BaseException | None = None, **_: Any) -> None:
    """Infrastructure faults, not a caller's mistake: the door's refusals are answers, not failures."""
    if sender is not None and not isinstance(exception, TokenbatchError):
        wm.TASK_FAILURES.labels(sender.name).inc()
