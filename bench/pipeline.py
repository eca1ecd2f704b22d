"""Pipeline overhead: a 50,000-request batch on the dry-run engine, create -> completed, through the whole
stack (embedded Redis, control worker, inference worker, beat), against a floor: one process that reads,
validates, counts, packs, "runs" (the same dry-run engine) and writes the same output with no queue.

    make bench-pipeline                   # 50,000 requests
    .venv/bin/python bench/pipeline.py --requests 5000

Prints both times and the ratio ``service/floor``. Not a test: figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _stack import run_batch, stack  # noqa: E402

from inference.engine import load_engine  # noqa: E402
from inference.registry import load_models  # noqa: E402
from inference.tokens import load_counter  # noqa: E402
from scheduler.plan import plan_file  # noqa: E402
from scheduler.service import ENDPOINT  # noqa: E402
from tasks.context import Rules, pack_tuples  # noqa: E402

MODELS = """\
[[models]]
id = "dry"
path = "dry-run"
engine = "dry-run"
context_length = 4096
max_batch_requests = {batch}
max_batch_tokens = 1000000
default_max_tokens = 16
"""


def make_input(n: int, line_bytes: int = 0) -> bytes:
    """n requests of mixed length; with ``line_bytes``, each padded with a system message to about that size."""
    lines = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Question number {i}: " + "word " * (i % 50)}]
        if line_bytes:
            messages.insert(0, {"role": "system", "content": "x" * max(0, line_bytes - 300 - 5 * (i % 50))})
        body = {"model": "dry", "messages": messages, "max_tokens": 16}
        lines.append(orjson.dumps({"custom_id": f"req-{i}", "method": "POST", "url": ENDPOINT, "body": body}))
    return b"\n".join(lines) + b"\n"


def floor(data: bytes, models: Path) -> float:
    """Read, validate, count, pack, run and write in one process: the work with no queue around it."""
    started = time.perf_counter()
    spec = load_models(models)["dry"]
    rules = {"dry": Rules(spec, load_counter(spec))}
    engine = load_engine(spec)
    plan = plan_file(
        io.BytesIO(data),
        endpoint=ENDPOINT,
        rules=rules,
        pack=pack_tuples,  # type: ignore[arg-type]
        max_requests=50_000,
        budget_cap=10_000_000,
    )
    source = io.BytesIO(data)
    results: dict[int, bytes] = {}
    for mb in plan.microbatches:
        bodies = []
        for i in mb.indexes:
            source.seek(plan.requests[i].offset)
            bodies.append(orjson.loads(source.read(plan.requests[i].length))["body"])
        for i, outcome in zip(mb.indexes, engine.generate(bodies), strict=True):
            results[i] = orjson.dumps({"custom_id": plan.requests[i].custom_id,
                                       "response": {"body": outcome.body}})
    with tempfile.NamedTemporaryFile("wb") as out:
        for i in sorted(results):
            out.write(results[i] + b"\n")
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def service(data: bytes, models: Path, workdir: Path) -> tuple[float, int, float]:
    with stack(models, workdir, "dry", boot_seconds=8) as (sup, svc):
        elapsed, b = run_batch(svc, data, poll=0.05)
        worker = next(p for p in sup.parts if p.name == "worker").process
        return elapsed, b.microbatches, peak_rss_mib(worker.pid) if worker else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256, help="max requests per micro-batch")
    parser.add_argument("--line-bytes", type=int, default=0, help="pad each line to about this size (2000: ~100 MB)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokenbatch-bench-"))
    try:
        models = workdir / "models.toml"
        models.write_text(MODELS.format(batch=args.batch))
        data = make_input(args.requests, args.line_bytes)
        print(f"{args.requests} requests ({len(data) / 1e6:.1f} MB), dry-run engine, micro-batches of {args.batch}")
        bare = floor(data, models)
        print(f"floor (one process, no queue):      {bare:7.2f} s  ({args.requests / bare:,.0f} requests/s)")
        full, mbs, rss = service(data, models, workdir / "stack")
        rate = f"{args.requests / full:,.0f} requests/s, {mbs} micro-batches"
        print(f"service (create -> completed):      {full:7.2f} s  ({rate})")
        print(f"service/floor: {full / bare:.2f}")
        print(f"control worker peak RSS (validation, planning, aggregation): {rss:,.0f} MiB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
