"""A progress bar for a batch being followed: stage, counts, tokens/s and ETA, until a terminal stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scheduler.lifecycle import TERMINAL  # Stage is a StrEnum: status strings test against it
from scheduler.records import BatchRecord

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    stage: str
    total: int
    done: int  # completed + failed
    tokens_done: int


def of_record(b: BatchRecord) -> Snapshot:
    return Snapshot(b.stage.value, b.total, b.completed + b.failed, b.tokens_done)


def of_json(b: dict) -> Snapshot:  # type: ignore[type-arg]
    counts = b.get("request_counts") or {}
    return Snapshot(b.get("stage") or b["status"], int(counts.get("total", 0)),
                    int(counts.get("completed", 0)) + int(counts.get("failed", 0)), int(b.get("tokens_done") or 0))


def track(get: Callable[[], T], snap: Callable[[T], Snapshot], console: Console, interval: float = 0.5) -> T:
    """Poll ``get`` until the batch is terminal, drawing stage, M/N, tokens/s and the ETA."""
    started = time.monotonic()
    columns = (TextColumn("{task.fields[stage]:<11}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>9} tok/s"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("batch", total=None, stage="validating", rate="-")
        while True:
            item = get()
            s = snap(item)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(task, total=s.total or None, completed=s.done, stage=s.stage,
                       rate=f"{s.tokens_done / elapsed:,.0f}" if s.tokens_done else "-")
            if s.stage in TERMINAL:
                return item
            time.sleep(interval)


def follow(get: Callable[[], BatchRecord | None], console: Console) -> BatchRecord:
    def present() -> BatchRecord:
        b = get()
        if b is None:
            raise LookupError("the batch disappeared")
        return b

    return track(present, of_record, console)
