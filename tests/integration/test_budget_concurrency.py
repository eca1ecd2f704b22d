"""Many holders at once: 16 threads and 2 processes reserve and release random sizes against a small cap.

Sampled throughout, the model's enqueued tokens never exceed the cap; when everyone stops, the counter
equals the sum of the reservations the holders believe they hold (and the ones Redis holds); after every
release it is exactly 0. Run as a script, this file is one of the holder processes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from limits import TokenBudget, model_keys

MODEL = "contended-model"
CAP = 100
MAX_TOKENS = CAP // 3
THREADS = 16
PROCESSES = 2
SECONDS = 2.0
ROOT = Path(__file__).resolve().parents[2]


def churn(url: str, name: str, seed: int, seconds: float) -> dict[str, Any]:
    """Reserve, extend, re-reserve and release for ``seconds``; return what is still held and the counts."""
    client = redis.Redis.from_url(url)
    budget = TokenBudget(client)
    rng = random.Random(seed)
    held: dict[str, int] = {}
    counts = {"admitted": 0, "refused": 0, "duplicate": 0, "released": 0, "over_cap": 0, "ops": 0}
    serial = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts["ops"] += 1
        roll = rng.random()
        if held and (len(held) >= 3 or roll < 0.45):
            rid = rng.choice(list(held))
            assert budget.release(MODEL, rid), rid
            del held[rid]
            counts["released"] += 1
        elif held and roll < 0.55:
            rid = rng.choice(list(held))
            again = budget.reserve(MODEL, rid, held[rid], cap=CAP, lease_seconds=60)
            assert again.duplicate and again.admitted
            assert budget.extend(MODEL, rid, 60)
            counts["duplicate"] += 1
        else:
            serial += 1
            rid, tokens = f"{name}-{serial}", rng.randint(1, MAX_TOKENS)
            result = budget.reserve(MODEL, rid, tokens, cap=CAP, lease_seconds=60)
            counts["over_cap"] += result.enqueued > CAP
            if result.admitted:
                held[rid] = tokens
                counts["admitted"] += 1
            else:
                counts["refused"] += 1
    client.close()
    return {"held": held, "counts": counts}


def _spawn(url: str, name: str, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, url, name, str(seed)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_the_cap_holds_and_the_counter_balances_under_threads_and_processes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    key = model_keys(MODEL)
    processes = [_spawn(redis_url, f"proc{i}", 1000 + i) for i in range(PROCESSES)]
    try:
        for proc in processes:  # each child is connected and waiting for "go"
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            client = redis.Redis.from_url(redis_url)
            while not stop.is_set():
                samples.append(int(client.get(key.enqueued) or 0))
            client.close()

        results: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(churn(redis_url, f"thread{i}", i, SECONDS)))
            for i in range(THREADS)
        ]
        sampler = threading.Thread(target=sample)
        sampler.start()
        for proc in processes:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for proc in processes:
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            results.append(json.loads(out))
        stop.set()
        sampler.join(10)
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert len(results) == THREADS + PROCESSES
    total = {name: sum(r["counts"][name] for r in results) for name in results[0]["counts"]}
    assert total["admitted"] > 100 and total["refused"] > 100 and total["duplicate"] > 10, total
    assert total["over_cap"] == 0
    assert len(samples) > 100 and max(samples) <= CAP, (len(samples), max(samples))
    assert max(samples) > CAP // 2  # the cap was actually pressed against

    # Quiescent: what the holders believe they hold is exactly what Redis counts and records.
    believed = {rid: tokens for r in results for rid, tokens in r["held"].items()}
    recorded = {k.decode(): int(v) for k, v in redis_client.hgetall(key.tokens).items()}
    assert recorded == believed
    assert int(redis_client.get(key.enqueued) or 0) == sum(believed.values()) <= CAP
    assert redis_client.zcard(key.leases) == len(believed)

    budget = TokenBudget(redis_client)  # another client releases what the processes left behind
    assert all(budget.release(MODEL, rid) for rid in believed)
    stats = budget.stats(MODEL)
    assert (stats.enqueued, stats.leases) == (0, 0)
    assert int(redis_client.get(key.enqueued) or 0) == 0


if __name__ == "__main__":
    url, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    redis.Redis.from_url(url).ping()
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(churn(url, name, seed, SECONDS)), flush=True)
