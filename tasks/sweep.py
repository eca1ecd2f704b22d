"""The periodic sweep (celery beat, every ``sweep_interval`` seconds): what a lost message or a dead
worker left behind moves again. Everything here is also triggered directly on the happy path; the sweep
only makes sure that a lost trigger delays and never stalls.

1. Expired budget leases are reclaimed; their micro-batches go back to the front of their queue (running
   micro-batches that hold no reservation at all too); one that killed its worker 3 times fails instead.
2. A batch whose validation or aggregation lease lapsed gets that stage sent again.
3. Batches past their completion window stop dispatching and are finalized as ``expired``.
4. Every model with queued work gets a dispatch.
5. Files past their ``expires_at`` (``expires_after`` on upload, ``output_expires_after`` on a batch) are
   deleted.
"""

from __future__ import annotations

import logging

from scheduler import keys, worker_metrics
from scheduler.celery_app import app
from scheduler.lease import lease_held
from scheduler.lifecycle import RUNNABLE, TERMINAL, Stage
from scheduler.microbatch import entry, parse_entry
from tasks.context import Context, ctx
from tasks.infer import fail_microbatch
from tasks.pipeline import enqueue

log = logging.getLogger("tokenbatch.sweep")


MAX_ATTEMPTS = 3  # a micro-batch whose worker died this often fails per request instead of crash-looping


def put_back(c: Context, batch_id: str, index: int, reason: str) -> bool:
    """A running micro-batch lost its worker (its lease expired, or its reservation is gone): run it again,
    drop it if its batch is ending, or fail its requests once it has killed MAX_ATTEMPTS workers."""
    batch = c.records.batch(batch_id)
    state = c.mbs.state(batch_id, index) or ""
    if batch is None or not state.startswith("run:"):
        return False
    attempts = c.mbs.attempts(batch_id, index)
    log.warning("micro-batch %s:%d lost its worker (%s), attempt %d", batch_id, index, reason, attempts)
    if attempts >= MAX_ATTEMPTS:
        message = f"The micro-batch was lost with its worker {attempts} times; its requests were not retried again."
        fail_microbatch(c, batch_id, index, int(state[4:]), "inference_error", message)
        return True
    if not c.mbs.requeue(batch_id, index):
        return False
    if batch.end_reason:  # cancelled or expired meanwhile: it will not run again
        if c.mbs.drop_pending(batch_id, batch.end_reason)[1]:
            c.send_control("tokenbatch.finalize", [batch_id])
    else:
        c.mbs.push(batch_id, batch.tenant, [index], front=True)
    return True


def reclaim_leases(c: Context, models: set[str]) -> int:
    requeued = 0
    for model in sorted(models):
        for rid in c.budget.reclaim(model):
            worker_metrics.LEASES_RECLAIMED.labels(model).inc()
            requeued += put_back(c, *parse_entry(rid), reason="lease expired")
    return requeued


def find_orphans(c: Context, batch_id: str) -> int:
    """Running micro-batches with no reservation at all: the sweep that reclaimed them died before it put
    them back, or Redis lost the last second of writes. A running micro-batch always holds one (reserve
    comes before claim, release after record), so these would otherwise never move again."""
    found = 0
    meta = c.mbs.all_meta(batch_id)
    for index, state in c.mbs.states(batch_id).items():
        if state.startswith("run:") and index in meta and c.budget.reservation(
                meta[index].model, entry(batch_id, index)) is None:
            found += put_back(c, batch_id, index, reason="no reservation")
    return found


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
        validating = lease_held(c.client, batch_id, "validate")
        if b.stage in RUNNABLE and not c.client.hget(keys.batch(batch_id), "enqueued") and not validating:
            enqueue(c, batch_id)  # validation died between queued and queueing its micro-batches
            moved += 1
        if b.stage in RUNNABLE or b.stage == Stage.CANCELLING:
            moved += find_orphans(c, batch_id)
        if (b.microbatches_finished >= b.microbatches and not validating
                and not lease_held(c.client, batch_id, "finalize")):
            c.send_control("tokenbatch.finalize", [batch_id])
            moved += 1
    return moved


@app.task(name="tokenbatch.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    c = ctx()
    # Both lists: a model's entry in the budget's set could be lost with Redis's last second of writes.
    models = set(c.budget.models()) | {m.decode() for m in c.client.smembers(keys.models_with_work())}
    requeued = reclaim_leases(c, models)
    moved = check_batches(c)
    c.trigger_dispatch(models)
    expired = c.service.delete_expired_files(int(c.client.time()[0]))
    if expired:
        log.info("deleted %d expired files", len(expired))
    return {"requeued": requeued, "batches": moved, "models": len(models), "files_expired": len(expired)}
