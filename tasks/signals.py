"""Worker signals, in one place: an inference worker loads its model before it takes a task."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init

from tasks.context import ctx
from tasks.infer import engine_for

log = logging.getLogger("tokenbatch.worker")


@worker_init.connect
def load_model(**_: Any) -> None:
    """With the solo pool this runs in the process that serves tasks, so the model loads exactly once
    and never in a parent that forks (CUDA must not be touched before a fork)."""
    model = ctx().settings.worker_model
    if model:
        log.info("loading model %s", model)
        engine_for(ctx(), model)
        log.info("model %s loaded", model)
