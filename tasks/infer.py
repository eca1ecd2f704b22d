"""The inference task: run one micro-batch on this worker's model and record it, exactly once.

A delivery whose attempt is no longer the micro-batch's current one (its lease was reclaimed and it was
dispatched again, or it is already recorded) does nothing. While it runs, a heartbeat extends the
budget lease, so only a dead worker's tokens are reclaimed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from inference.engine import Engine, Outcome, load_engine
from scheduler import keys, worker_metrics
from scheduler.celery_app import app
from scheduler.microbatch import Meta, entry, payload_path, read_jsonl, result_path
from tasks.context import Context, Heartbeat, ctx

log = logging.getLogger("tokenbatch.infer")
_engines: dict[str, Engine] = {}
_engine_lock = threading.Lock()


def engine_for(c: Context, model: str) -> Engine:
    """The model's engine, loaded once per process (at worker start for `infer-worker --model`)."""
    with _engine_lock:
        if model not in _engines:
            spec = c.specs.get(model)
            if spec is None:
                raise LookupError(f"model {model!r} is not in the models file of this worker")
            _engines[model] = load_engine(spec, cache_dir=c.cache_dir)
        return _engines[model]


def _run(engine: Engine, bodies: list[dict[str, Any]]) -> list[Outcome]:
    try:
        return engine.generate(bodies)
    except Exception as exc:  # a fault of the whole micro-batch: its requests fail, nothing stalls
        log.exception("micro-batch failed")
        error = {"code": "inference_error", "message": f"The model failed on this micro-batch: {exc}"}
        return [Outcome(body=None, error=error) for _ in bodies]


@app.task(name="tokenbatch.infer", acks_late=True, reject_on_worker_lost=True)
def infer(model: str, batch_id: str, index: int, attempt: int) -> str:
    c = ctx()
    state, meta, ending = c.mbs.snapshot(batch_id, index)
    if state != f"run:{attempt}":
        return "stale"
    if meta is None:
        return "gone"
    rid = entry(batch_id, index)
    if ending:  # cancelled or expired while it waited
        dropped = c.mbs.drop_one(batch_id, index, attempt)
        c.budget.release(model, rid)
        c.trigger_dispatch([model])
        if dropped.last:
            c.send_control("tokenbatch.finalize", [batch_id])
        return "dropped"
    lease = c.settings.lease_seconds
    c.budget.extend(model, rid, lease)  # it waited in the broker under a long lease; from now on, a short one
    payload = list(read_jsonl(c.storage, payload_path(batch_id, index)))
    with Heartbeat(lease / 3, lambda: c.budget.extend(model, rid, lease)):
        engine = engine_for(c, model)
        outcomes = _run(engine, [p["body"] for p in payload])
    spec = engine.spec
    return finish(c, model, batch_id, index, attempt, meta, payload, outcomes,
                  prices=(spec.input_price_per_mtok, spec.output_price_per_mtok))


def fail_microbatch(c: Context, batch_id: str, index: int, attempt: int, code: str, message: str) -> None:
    """Record every request of a micro-batch as failed (one that keeps killing its worker), exactly once."""
    meta = c.mbs.meta(batch_id, index)
    if meta is None:
        return
    payload = list(read_jsonl(c.storage, payload_path(batch_id, index)))
    outcomes = [Outcome(body=None, error={"code": code, "message": message}) for _ in payload]
    finish(c, meta.model, batch_id, index, attempt, meta, payload, outcomes, prices=(0.0, 0.0))


def finish(
    c: Context, model: str, batch_id: str, index: int, attempt: int, meta: Meta, payload: list[dict[str, Any]],
    outcomes: list[Outcome], prices: tuple[float, float],
) -> str:
    """Write the attempt's result file, record it once, give its tokens back, and trigger what comes next."""
    tokens = meta.tokens
    ok = failed = prompt = completion = 0
    with c.storage.writer(result_path(batch_id, index, attempt)) as out:
        for p, o in zip(payload, outcomes, strict=True):
            line: dict[str, Any] = {"i": p["i"], "custom_id": p["custom_id"]}
            if o.body is not None:
                usage = o.body.get("usage", {})
                prompt += int(usage.get("prompt_tokens", 0))
                completion += int(usage.get("completion_tokens", 0))
                ok += 1
                line["body"] = o.body
            else:
                failed += 1
                line["error"] = o.error
            out.write(orjson.dumps(line) + b"\n")
    worker_metrics.microbatch_done(model, requests=len(payload), tokens=tokens, prompt_tokens=prompt,
                                   completion_tokens=completion)
    cost = (prompt * prices[0] + completion * prices[1]) / 1e6 * c.settings.batch_discount
    done = c.mbs.record(batch_id, index, attempt, ok=ok, failed=failed, prompt_tokens=prompt,
                        completion_tokens=completion, cost=cost, tokens=tokens)
    if done.first:
        pipe = c.client.pipeline(transaction=False)
        pipe.hincrby(keys.requests_by_model(), f"{model}|success", ok)
        pipe.hincrby(keys.requests_by_model(), f"{model}|error", failed)
        pipe.execute()
    c.budget.release(model, entry(batch_id, index))
    c.trigger_dispatch([model])
    if done.last:
        c.send_control("tokenbatch.finalize", [batch_id])
    return "recorded" if done.first else "duplicate"
