"""The control tasks: validate a batch, dispatch a model's micro-batches, finalize a batch.

Thin by design: each takes an id, loads state, calls scheduler/ code, persists, and skips work already
done, so a redelivered or duplicated task changes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import orjson

from inference.errors import InferenceError
from scheduler import keys
from scheduler.aggregate import write_results
from scheduler.celery_app import app
from scheduler.errors import NotFound
from scheduler.lease import StageLease
from scheduler.lifecycle import TERMINAL, Stage, transition
from scheduler.microbatch import write_payloads
from scheduler.plan import Plan, plan_file
from tasks.context import Context, Heartbeat, ctx, pack_tuples

log = logging.getLogger("tokenbatch.pipeline")


def _fail(c: Context, batch_id: str, code: str, message: str, line: int | None = None) -> None:
    errors = [{"code": code, "message": message, "line": line, "param": None}]
    transition(c.client, batch_id, Stage.FAILED, errors=orjson.dumps(errors).decode())


@app.task(name="tokenbatch.validate")
def validate(batch_id: str) -> str:
    """validating -> queued (or failed): check every line, count tokens, plan and queue micro-batches."""
    c = ctx()
    batch = c.records.batch(batch_id)
    if batch is None or batch.stage not in (Stage.VALIDATING, Stage.CANCELLING):
        return "skipped"
    return _leased(c, batch_id, "validate", _validate)


class LeaseLost(Exception):
    """Our stage lease lapsed and may be another worker's now: stop before writing anything more."""


def _leased(c: Context, batch_id: str, stage: str, work: Callable[[Context, str, StageLease], str]) -> str:
    """Run ``work`` holding the batch's stage lease, renewed by a heartbeat; "busy" if another worker has it."""
    lease = StageLease(c.client, batch_id, stage, c.settings.lease_seconds)
    if not lease.acquire():
        return "busy"
    try:
        with Heartbeat(c.settings.lease_seconds / 3, lease.renew):
            return work(c, batch_id, lease)
    except LeaseLost:
        log.warning("lost the %s lease of %s; another worker carries on", stage, batch_id)
        return "lost"
    finally:
        lease.release()


def _still_ours(lease: StageLease) -> Callable[[], None]:
    def check() -> None:
        if not lease.renew():
            raise LeaseLost

    return check


def _validate(c: Context, batch_id: str, lease: StageLease) -> str:
    batch = c.records.batch(batch_id)
    if batch is None or "queued_at" in batch.times or batch.stage not in (Stage.VALIDATING, Stage.CANCELLING):
        return "skipped"  # a duplicate message: the batch was planned and queued already
    if batch.stage == Stage.CANCELLING:  # cancelled while it waited or while a validator that died worked
        if not c.client.hget(keys.batch(batch_id), "planned"):
            c.mbs.reset(batch_id)
            c.mbs.store_plan(batch_id, Plan())  # nothing was accepted
        _cancel_planned(c, batch_id)
        return "cancelled"
    c.mbs.reset(batch_id)
    check = _still_ours(lease)
    try:
        source = c.records.get_file(batch.tenant, batch.input_file_id)
        rules = c.rules()
        with c.storage.open(source.path) as fh:
            plan = plan_file(fh, endpoint=batch.endpoint, rules=rules, pack=pack_tuples,  # type: ignore[arg-type]
                             max_requests=c.settings.max_requests_per_file,
                             budget_cap=c.settings.enqueued_tokens_per_model, heartbeat=check)
    except NotFound:  # the input file was deleted after the batch was created
        _fail(c, batch_id, "invalid_input_file", f"Input file {batch.input_file_id!r} no longer exists")
        return "failed"
    except (InferenceError, FileNotFoundError) as exc:
        _fail(c, batch_id, "validation_error", f"The batch could not be validated: {exc}")
        return "failed"
    if not plan.ok:
        transition(c.client, batch_id, Stage.FAILED, errors=orjson.dumps(plan.failure_errors()).decode())
        return "failed"
    check()
    with c.storage.open(source.path) as fh:
        write_payloads(c.storage, batch_id, plan, fh)
    check()
    c.mbs.store_plan(batch_id, plan)
    if plan.errors:
        pipe = c.client.pipeline(transaction=False)
        for model, n in Counter(plan.requests[e.index].model for e in plan.errors).items():
            pipe.hincrby(keys.requests_by_model(), f"{model}|error", n)
        pipe.execute()
    if transition(c.client, batch_id, Stage.QUEUED):
        if not plan.microbatches:  # every line failed a per-request check
            c.send_control("tokenbatch.finalize", [batch_id])
            return "queued"
        enqueue(c, batch_id)
        return "queued"
    current = c.records.batch(batch_id)
    if current is not None and current.stage == Stage.CANCELLING:
        _cancel_planned(c, batch_id)  # cancelled while we validated: nothing runs, every line is reported
        return "cancelled"
    return "skipped"  # another validator queued it first


def _cancel_planned(c: Context, batch_id: str) -> None:
    c.mbs.drop_pending(batch_id, "cancelled")
    c.send_control("tokenbatch.finalize", [batch_id])


def enqueue(c: Context, batch_id: str) -> None:
    """Queue a planned batch's pending micro-batches and wake their dispatchers. Safe to repeat: the
    dispatcher skips entries that are not pending."""
    batch = c.records.batch(batch_id)
    if batch is None:
        return
    pending = [i for i, state in c.mbs.states(batch_id).items() if state == "pending"]
    models = c.mbs.push(batch_id, batch.tenant, sorted(pending)) if pending else set()
    c.records.set_batch_fields(batch_id, enqueued=1)
    c.trigger_dispatch(models)


@app.task(name="tokenbatch.dispatch")
def dispatch(model: str) -> int:
    return ctx().dispatcher.run(model)


def _target(c: Context, batch_id: str) -> Stage | None:
    """The terminal stage a finished batch goes to, moving it to finalizing first when it completes."""
    for _ in range(3):
        batch = c.records.batch(batch_id)
        if batch is None or batch.stage in TERMINAL or batch.stage == Stage.VALIDATING:
            return None
        if batch.stage == Stage.CANCELLING:
            return Stage.CANCELLED
        if batch.stage == Stage.FINALIZING:
            return Stage.COMPLETED
        if batch.end_reason == "expired":
            return Stage.EXPIRED
        if transition(c.client, batch_id, Stage.FINALIZING):
            return Stage.COMPLETED
    return None


@app.task(name="tokenbatch.finalize")
def finalize(batch_id: str) -> str:
    """in_progress -> finalizing -> completed (or cancelling -> cancelled, or -> expired): write the files."""
    c = ctx()
    batch = c.records.batch(batch_id)
    if batch is None or batch.stage in TERMINAL or batch.microbatches_finished < batch.microbatches:
        return "skipped"
    return _leased(c, batch_id, "finalize", _finalize)


def _finalize(c: Context, batch_id: str, lease: StageLease) -> str:
    target = _target(c, batch_id)
    batch = c.records.batch(batch_id)
    if target is None or batch is None:
        return "skipped"
    written = write_results(c.storage, c.mbs, batch, heartbeat=lease.renew)
    ids = {}
    for kind, path, size in (("output", written.output_path, written.output_bytes),
                             ("errors", written.error_path, written.error_bytes)):
        if path is None:
            continue
        file_id = f"file-{batch_id.removeprefix('batch_')}-{kind}"
        c.records.create_file(file_id=file_id, tenant=batch.tenant, size=size, purpose="batch_output",
                              filename=f"{batch_id}_{kind}.jsonl", path=path, expires_in=batch.output_expires_seconds)
        ids[f"{'output' if kind == 'output' else 'error'}_file_id"] = file_id
    moved = transition(c.client, batch_id, target, completed=written.completed, failed=written.failed,
                       total=written.completed + written.failed, **ids)
    if moved:
        for part in ("mb", "res"):
            c.storage.delete(f"batches/{batch_id}/{part}", recursive=True)
    log.info("batch %s -> %s (%d ok, %d failed)", batch_id, target, written.completed, written.failed)
    return target.value
