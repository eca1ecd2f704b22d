"""Service vs bare engine: the same SmolLM2-135M-Instruct requests through the whole stack and through the
engine directly (issue 3's micro-batched path, in this process), as completion tokens per second.

    make bench-service
    .venv/bin/python bench/service.py --requests 32 --max-tokens 32

The two runs happen one after the other, never at once, so they do not share the cores. Not a test.
"""

from __future__ import annotations

import argparse
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
from scheduler.cli import DEFAULT_MODELS as MODELS  # noqa: E402  (the demo's SmolLM2 file)

TOPICS = ["the moon", "bread", "rivers", "chess", "volcanoes", "bees", "trains", "the ocean"]


def bodies(n: int, max_tokens: int) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        detail = " Please be specific and mention one surprising fact." * (i % 4)
        out.append({"model": "smollm2-135m", "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Tell me about {topic}.{detail}"}]})
    return out


def bare(requests: list[dict], models: Path, cache: Path) -> tuple[float, int]:  # type: ignore[type-arg]
    engine = load_engine(load_models(models)["smollm2-135m"], cache_dir=cache)
    started = time.perf_counter()
    outcomes = engine.generate(requests)
    elapsed = time.perf_counter() - started
    return elapsed, sum(o.body["usage"]["completion_tokens"] for o in outcomes if o.body)


def service(requests: list[dict], models: Path, workdir: Path) -> tuple[float, int]:  # type: ignore[type-arg]
    data = b"".join(orjson.dumps({"custom_id": f"q{i}", "body": b}) + b"\n" for i, b in enumerate(requests))
    with stack(models, workdir, "smollm2-135m", boot_seconds=15) as (_, svc):  # workers load the model first
        elapsed, b = run_batch(svc, data, poll=0.1)
        return elapsed, b.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokenbatch-bench-"))
    try:
        models = workdir / "models.toml"
        models.write_text(MODELS)
        cache = workdir / "stack" / "models"  # where the stack looks: bare() converts once, the stack reuses it
        requests = bodies(args.requests, args.max_tokens)
        print(f"SmolLM2-135M-Instruct, {args.requests} requests, max_tokens {args.max_tokens}, greedy, CPU")
        t_bare, n_bare = bare(requests, models, cache)
        print(f"bare engine:  {t_bare:6.2f} s  {n_bare} tokens  {n_bare / t_bare:7.1f} tok/s")
        t_svc, n_svc = service(requests, models, workdir / "stack")
        print(f"service:      {t_svc:6.2f} s  {n_svc} tokens  {n_svc / t_svc:7.1f} tok/s (create -> completed)")
        print(f"service/bare tokens per second: {(n_svc / t_svc) / (n_bare / t_bare):.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
