"""The periodic sweep (celery beat, every ``sweep_interval`` seconds): what a lost message or a dead
worker left behind moves again. Everything here is also triggered directly on the happy path; the sweep
only makes sure that a lost trigger delays and never stalls.

1. Expired budget leases are reclaimed; their micro-batches go back to the front of their queue.
2. A batch whose validation or aggregation lease lapsed gets that stage sent again.
3. Batches past their completion window stop dispatching and are finalized as ``expired``.
4. Every model with queued work gets a dispatch.
"""

from __future__ import annotations

import logging

from scheduler import keys, worker_metrics
from scheduler.celery_app import app
from scheduler.lease import lease_held
from scheduler.lifecycle import RUNNABLE, TERMINAL, Stage
from scheduler.microbatch import parse_entry
from tasks.context import Context, ctx
from tasks.pipeline import enqueue

log = logging.getLogger("tokenbatch.sweep")


def reclaim_leases(c: Context) -> tuple[int, set[str]]:
    requeued, models = 0, set()
    for model in c.budget.models():
        for rid in c.budget.reclaim(model):
            worker_metrics.LEASES_RECLAIMED.labels(model).inc()
            batch_id, index = parse_entry(rid)
            batch = c.records.batch(batch_id)
            if batch is None or not c.mbs.requeue(batch_id, index):
                continue
            log.warning("lease of %s expired: dispatching it again", rid)
            requeued += 1
            if batch.end_reason:  # cancelled or expired meanwhile: it will not run again
                if c.mbs.drop_pending(batch_id, batch.end_reason)[1]:
                    c.send_control("tokenbatch.finalize", [batch_id])
            else:
                c.mbs.push(batch_id, batch.tenant, [index], front=True)
            models.add(model)
    return requeued, models


def check_batches(c: Context) -> int:
    now = int(c.client.time()[0])
    moved = 0
    for batch_id in c.records.active_batch_ids():
        b = c.records.batch(batch_id)
        if b is None or b.stage in TERMINAL:
            c.client.srem(keys.active_batches(), batch_id)
            continue
        if b.stage == Stage.VALIDATING:
            if not lease_held(c.client, batch_id, "validate"):
                c.send_control("tokenbatch.validate", [batch_id])
                moved += 1
            continue
        if b.stage in RUNNABLE and now >= b.expires_at and b.end_reason is None:
            log.warning("batch %s passed its completion window", batch_id)
            c.mbs.drop_pending(batch_id, "expired")
            b = c.records.batch(batch_id) or b
        elif b.end_reason and b.microbatches_finished < b.microbatches:
            c.mbs.drop_pending(batch_id, b.end_reason)  # a pending straggler of an ending batch never runs
            b = c.records.batch(batch_id) or b
        if (b.stage == Stage.QUEUED and not c.client.hget(keys.batch(batch_id), "enqueued")
                and not lease_held(c.client, batch_id, "validate")):
            enqueue(c, batch_id)  # validation died between queued and queueing its micro-batches
            moved += 1
        if b.microbatches_finished >= b.microbatches and not lease_held(c.client, batch_id, "finalize"):
            c.send_control("tokenbatch.finalize", [batch_id])
            moved += 1
    return moved


@app.task(name="tokenbatch.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    c = ctx()
    requeued, models = reclaim_leases(c)
    moved = check_batches(c)
    models |= {m.decode() for m in c.client.smembers(keys.models_with_work())}
    c.trigger_dispatch(models)
    return {"requeued": requeued, "batches": moved, "models": len(models)}
