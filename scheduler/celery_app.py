"""The one Celery app. Tasks are included by module name, so importing this (the API does) pulls in no
task code and no torch; workers load ``tasks.*`` when they start.

Delivery settings follow the pitfalls we know: ``acks_late`` with ``reject_on_worker_lost`` and a
prefetch of 1 (a killed worker's task is requeued, a long micro-batch does not hold others back), and a
visibility timeout well above any micro-batch. Recovery never waits on that timeout: our own leases and
the periodic sweep re-dispatch lost work within ``lease_seconds``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from scheduler.settings import Settings

CONTROL_QUEUE = "tokenbatch.control"
# Where a plain Celery client's send_task lands when it names no queue: the control worker consumes it too,
# so an internal service needs nothing of ours, not even our routing. Give tokenbatch its own broker database.
DOOR_QUEUE = "celery"


def infer_queue(model: str) -> str:
    return f"tokenbatch.infer.{model}"


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.load()
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("tokenbatch", broker=settings.broker_url or url, backend=url,
                 include=["tasks.pipeline", "tasks.infer", "tasks.sweep", "tasks.signals", "tasks.door"])
    app.conf.update(
        task_default_queue=CONTROL_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "tokenbatch-sweep": {"task": "tokenbatch.sweep", "schedule": settings.sweep_interval,
                                 "options": {"queue": CONTROL_QUEUE, "expires": settings.sweep_interval * 2}},
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    app.tokenbatch_settings = settings  # type: ignore[attr-defined]
    return app


def sender(app: Celery) -> Any:
    """A ``(task name, args)`` callable that sends control tasks by name."""

    def send(name: str, args: list[Any]) -> None:
        app.send_task(name, args=args, queue=CONTROL_QUEUE)

    return send


app = make_app()  # `celery -A scheduler.celery_app worker ...`
