"""How much a budget reservation costs next to the cheapest Redis round trip. Not a test.

Starts the embedded redis-server (AOF on, as `tokenbatch up` runs it) and measures, from one client on
loopback with no pipelining, in one run: bare ``INCR`` round trips per second, reserve+release pairs per
second (two script calls, two round trips), and token-bucket takes per second. The three are measured in
many short interleaved rounds; each figure is the median over rounds, and the ratio is the median of the
per-round ratios, so that a shared machine's drift (it swings by 2x here) hits both sides of a ratio alike.

    .venv/bin/python bench/budget.py [--seconds 0.6] [--rounds 8]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import redis

from limits import TokenBucket, TokenBudget
from scheduler.redis_server import EmbeddedRedis

MODEL = "bench-model"


def per_second(op: Callable[[], object], seconds: float) -> float:
    """Calls of ``op`` per second over about ``seconds`` (the clock is read every 64 calls)."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64):
            op()
        calls += 64
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=8, help="rounds; medians are reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tokenbatch-bench-") as data, EmbeddedRedis(data) as server:
        client = redis.Redis.from_url(server.url)
        budget, bucket = TokenBudget(client), TokenBucket(client)
        ids = itertools.count()

        def incr() -> None:
            client.incr("bench:incr")

        def pair() -> None:
            rid = f"mb-{next(ids)}"
            budget.reserve(MODEL, rid, 100, cap=10_000_000, lease_seconds=120)
            budget.release(MODEL, rid)

        def take() -> None:
            bucket.take("bench", 1, capacity=1_000_000_000, refill_per_second=1_000_000.0)

        ops = {"INCR round trips/s": incr, "reserve+release pairs/s": pair, "token bucket takes/s": take}
        for op in ops.values():  # warm up: connection, script cache, the model's first SADD
            per_second(op, 0.2)
        rounds: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(args.rounds):
            for name, op in ops.items():
                rounds[name].append(per_second(op, args.seconds))
        assert budget.stats(MODEL).enqueued == 0, "every reservation was released"
        version = client.info("server")["redis_version"]
        client.close()

    print(
        f"redis-server {version} (embedded, AOF everysec), Python {platform.python_version()}, one client, "
        f"loopback TCP, no pipelining; medians of {args.rounds} interleaved rounds of {args.seconds:g} s"
    )
    for name, values in rounds.items():
        spread = f"rounds: {min(values):,.0f} to {max(values):,.0f}"
        print(f"{name:<26} {statistics.median(values):>9,.0f}   ({spread})")
    incrs = rounds["INCR round trips/s"]

    def ratio(name: str) -> float:
        return statistics.median(v / i for v, i in zip(rounds[name], incrs, strict=True))

    print(f"token bucket takes / INCR round trips: {ratio('token bucket takes/s'):.2f}")
    print(f"reserve+release pairs / INCR round trips: {ratio('reserve+release pairs/s'):.2f}")


if __name__ == "__main__":
    main()
