"""The whole stack for the service benchmarks (``pipeline.py``, ``service.py``): start it on a models file,
let the workers boot, run one batch from upload to its end and time it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scheduler.celery_app import make_app, sender
from scheduler.lifecycle import TERMINAL, Stage
from scheduler.records import BatchRecord
from scheduler.service import ENDPOINT, Service
from scheduler.settings import Settings
from scheduler.supervisor import Supervisor, stack_parts


@contextmanager
def stack(models: Path, workdir: Path, model: str, boot_seconds: float) -> Iterator[tuple[Supervisor, Service]]:
    """A stack serving ``model`` (no API), waited on for ``boot_seconds``: we time batches, not start-up."""
    settings = Settings.load(env={}, data_dir=workdir, models=models, sweep_interval=5)
    sup = Supervisor(settings, stack_parts(settings, [model], api=False))
    settings = sup.start()
    try:
        svc = Service(settings, redis.Redis.from_url(settings.redis_url or ""), sender(make_app(settings)))
        time.sleep(boot_seconds)
        yield sup, svc
    finally:
        sup.stop()


def run_batch(svc: Service, data: bytes, poll: float) -> tuple[float, BatchRecord]:
    """Upload ``data``, create a batch, wait for its end; seconds from upload to end, and the batch."""
    started = time.perf_counter()
    f = svc.store_upload("bench", "input.jsonl", "batch", [data])
    batch = svc.create_batch("bench", input_file_id=f.id, endpoint=ENDPOINT)
    while (b := svc.records.batch(batch.id)) is not None and b.stage not in TERMINAL:
        time.sleep(poll)
    elapsed = time.perf_counter() - started
    if b is None or b.stage != Stage.COMPLETED:
        raise SystemExit(f"batch ended {b and b.stage}: {b and b.errors}")
    return elapsed, b
