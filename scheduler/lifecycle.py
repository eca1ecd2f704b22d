"""The batch lifecycle: one table, one function that moves a batch along it.

Every change of stage goes through :func:`transition`, which checks the table and writes the stage and
its ``<stage>_at`` timestamp in one Lua call, so two workers racing (a cancel against a finalize, a
redelivered task against the first run) cannot both win. Each API face maps the native stage onto its
own enum here too.
"""

from __future__ import annotations

from enum import StrEnum

import redis

from scheduler import keys
from scheduler.scripts import script


class Stage(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


S = Stage
# to-stage -> the stages it may be reached from (DESIGN.md's table). One addition: queued -> finalizing,
# for a batch whose every line failed a per-request check, so there is nothing to dispatch.
ALLOWED_FROM: dict[Stage, frozenset[Stage]] = {
    S.FAILED: frozenset({S.VALIDATING}),
    S.QUEUED: frozenset({S.VALIDATING}),
    S.IN_PROGRESS: frozenset({S.QUEUED}),
    S.FINALIZING: frozenset({S.IN_PROGRESS, S.QUEUED}),
    S.COMPLETED: frozenset({S.FINALIZING}),
    S.CANCELLING: frozenset({S.VALIDATING, S.QUEUED, S.IN_PROGRESS}),
    S.CANCELLED: frozenset({S.CANCELLING}),
    S.EXPIRED: frozenset({S.QUEUED, S.IN_PROGRESS}),
}
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.EXPIRED, S.CANCELLED})
RUNNABLE = frozenset({S.QUEUED, S.IN_PROGRESS})  # micro-batches of these batches may be dispatched


def transition(client: redis.Redis, batch_id: str, to: Stage, **fields: str | int | float) -> bool:
    """Move ``batch_id`` to ``to`` if the table allows it from its current stage; True if this call did.

    ``fields`` are written in the same atomic step. Reaching a terminal stage also drops the batch from
    the sweep's active set and counts it for the dashboards (once: only the winning call gets here).
    """
    allowed = ",".join(sorted(ALLOWED_FROM[to]))
    args: list[str | int | float] = [to.value, allowed]
    for name, value in fields.items():
        args += [name, value]
    moved, _ = script(client, "transition")(keys=[keys.batch(batch_id)], args=args)
    if moved and to in TERMINAL:
        pipe = client.pipeline(transaction=False)
        pipe.srem(keys.active_batches(), batch_id)
        pipe.hincrby(keys.finished_batches(), to.value, 1)
        pipe.execute()
    return bool(moved)


# The faces. OpenAI has no "queued": it shows in_progress. Together has neither finalizing nor cancelling.
_OPENAI = {S.QUEUED: "in_progress"}
_TOGETHER = {S.QUEUED: "IN_PROGRESS", S.FINALIZING: "IN_PROGRESS", S.CANCELLING: "CANCELLED"}


def openai_status(stage: Stage) -> str:
    return _OPENAI.get(stage, stage.value)


def together_status(stage: Stage, legacy: bool = False) -> str:
    if legacy and stage == S.CANCELLING:
        return "CANCELING"
    return _TOGETHER.get(stage, stage.value.upper())
