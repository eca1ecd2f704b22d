"""Aggregation: the output file (OpenAI batch output lines, in input order) and the error file.

Results sit in one file per micro-batch, in length order, not input order. Two passes keep memory
bounded for a 100 MB batch: first every result line is appended to a local partition file chosen by its
input index (``PART`` indexes each), then each partition is loaded, sorted and streamed out. Every
accepted request lands in exactly one line: a result, a validation error, or (for what never ran) a
``batch_cancelled`` / ``batch_expired`` / ``request_too_large`` error built from the micro-batch payload.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from scheduler.microbatch import MicroBatches, payload_path, read_jsonl, result_path, validation_errors_path
from scheduler.records import BatchRecord
from scheduler.storage import Storage

PART = 4096

UNRUN = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
    "expired": ("batch_expired", "The batch expired before this request ran."),
}


@dataclass(frozen=True)
class Written:
    output_path: str | None
    error_path: str | None
    completed: int
    failed: int
    output_bytes: int
    error_bytes: int


def output_paths(batch_id: str) -> tuple[str, str]:
    return f"batches/{batch_id}/output.jsonl", f"batches/{batch_id}/errors.jsonl"


def _request_id(batch_id: str, index: int) -> str:
    return hashlib.sha1(f"{batch_id}:{index}".encode()).hexdigest()[:24]


def _lines(storage: Storage, mbs: MicroBatches, batch: BatchRecord) -> Iterator[dict[str, Any]]:
    """Every request of the batch once: result, validation error, or an error for what never ran."""
    if storage.exists(validation_errors_path(batch.id)):
        yield from read_jsonl(storage, validation_errors_path(batch.id))
    for index, state in sorted(mbs.states(batch.id).items()):
        if state.startswith("done:"):
            path = result_path(batch.id, index, int(state[5:]))
            if storage.exists(path):
                yield from read_jsonl(storage, path)
                continue
            code, message = "request_too_large", "The micro-batch could not be admitted by the token budget."
        else:  # dropped (or, after an expiry, never admitted)
            code, message = UNRUN.get(batch.end_reason or "", UNRUN["expired"])
        for line in read_jsonl(storage, payload_path(batch.id, index)):
            yield {"i": line["i"], "custom_id": line["custom_id"], "error": {"code": code, "message": message}}


def _partition(lines: Iterator[dict[str, Any]], tmp: str, heartbeat: Callable[[], None]) -> list[str]:
    files: dict[int, IO[bytes]] = {}
    try:
        for n, line in enumerate(lines):
            part = int(line["i"]) // PART
            fh = files.get(part)
            if fh is None:
                fh = files[part] = open(os.path.join(tmp, f"{part}.jsonl"), "ab")  # noqa: SIM115
            fh.write(orjson.dumps(line) + b"\n")
            if n % 10_000 == 0:
                heartbeat()
    finally:
        for fh in files.values():
            fh.close()
    return [os.path.join(tmp, f"{p}.jsonl") for p in sorted(files)]


def write_results(
    storage: Storage, mbs: MicroBatches, batch: BatchRecord, heartbeat: Callable[[], None] = lambda: None,
) -> Written:
    out_path, err_path = output_paths(batch.id)
    completed = failed = out_bytes = err_bytes = 0
    with tempfile.TemporaryDirectory(prefix="tokenbatch-agg-") as tmp:
        parts = _partition(_lines(storage, mbs, batch), tmp, heartbeat)
        with storage.writer(out_path) as out, storage.writer(err_path) as err:
            for part in parts:
                with open(part, "rb") as fh:
                    rows = sorted((orjson.loads(raw) for raw in fh), key=lambda r: r["i"])
                for row in rows:
                    rid = _request_id(batch.id, row["i"])
                    if "body" in row:
                        data = orjson.dumps({
                            "id": f"batch_req_{rid}", "custom_id": row["custom_id"],
                            "response": {"status_code": 200, "request_id": f"req_{rid}", "body": row["body"]},
                            "error": None,
                        }) + b"\n"
                        out.write(data)
                        completed += 1
                        out_bytes += len(data)
                    else:
                        data = orjson.dumps({"id": f"batch_req_{rid}", "custom_id": row["custom_id"],
                                             "response": None, "error": row["error"]}) + b"\n"
                        err.write(data)
                        failed += 1
                        err_bytes += len(data)
                heartbeat()
    # The output file always exists (scripts download it unconditionally); the error file only when there
    # are errors (an empty one breaks the together SDK's download).
    if not failed:
        storage.delete(err_path)
    return Written(out_path, err_path if failed else None, completed, failed, out_bytes, err_bytes)
