"""Token buckets against a real redis-server: capacity, refill by Redis's clock, honest retry hints,
and concurrent takers that never take more than the bucket held."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from limits import CostTooLarge, TokenBucket, bucket_key


@pytest.fixture
def bucket(redis_client: redis.Redis) -> TokenBucket:
    return TokenBucket(redis_client)


def test_a_new_bucket_holds_its_capacity_and_no_more(bucket: TokenBucket) -> None:
    slow = {"capacity": 10, "refill_per_second": 0.001}
    first = bucket.take("acme", 4, **slow)
    assert first.allowed and first.remaining == pytest.approx(6, abs=0.01) and first.retry_after == 0
    assert bucket.take("acme", 6, **slow).allowed
    refused = bucket.take("acme", 1, **slow)
    assert not refused.allowed
    assert refused.remaining == pytest.approx(0, abs=0.01)
    assert refused.retry_after == pytest.approx(1 / 0.001, rel=0.01)


def test_buckets_refill_over_time_up_to_capacity(bucket: TokenBucket) -> None:
    spec = {"capacity": 10, "refill_per_second": 20.0}
    before = time.monotonic()
    assert bucket.take("acme", 10, **spec).allowed
    after = time.monotonic()
    time.sleep(0.3)  # about 6 tokens come back
    start, result, end = time.monotonic(), bucket.take("acme", 5, **spec), time.monotonic()
    # Between the two scripts Redis's clock moved at least start - after and at most end - before: the bounds
    # hold however long this machine stalls.
    low, high = (min(10.0, 20.0 * seconds) - 5 for seconds in (start - after, end - before))
    assert result.allowed and low - 0.01 <= result.remaining <= high + 0.01
    time.sleep(0.6)  # long enough to overfill, were there no ceiling
    assert bucket.take("acme", 1, **spec).remaining == pytest.approx(9, abs=1e-6)


def test_retry_after_is_long_enough(bucket: TokenBucket) -> None:
    spec = {"capacity": 20, "refill_per_second": 10.0}
    assert bucket.take("acme", 20, **spec).allowed
    refused = bucket.take("acme", 8, **spec)  # refused unless 0.8 s passed between the two
    assert not refused.allowed and 0 < refused.retry_after <= 8 / 10
    time.sleep(refused.retry_after + 0.005)
    assert bucket.take("acme", 8, **spec).allowed


def test_a_cost_above_the_capacity_raises_rather_than_waiting_forever(bucket: TokenBucket) -> None:
    with pytest.raises(CostTooLarge, match=r"cost of 11 tokens .* capacity 10"):
        bucket.take("acme", 11, capacity=10, refill_per_second=1000.0)


def test_buckets_are_independent_and_expire_once_full_again(
    bucket: TokenBucket, redis_client: redis.Redis
) -> None:
    spec = {"capacity": 5, "refill_per_second": 0.5}
    assert bucket.take("acme", 5, **spec).allowed
    assert bucket.take("globex", 5, **spec).allowed
    assert not bucket.take("acme", 1, **spec).allowed  # one token takes 2 s to come back
    ttl = redis_client.pttl(bucket_key("acme"))
    assert 0 < ttl <= 5 / 0.5 * 1000 + 1000  # the key goes when it would read as full anyway


def test_concurrent_takers_never_take_more_than_the_bucket_held(redis_url: str) -> None:
    capacity, attempts_each, threads = 50, 10, 16
    allowed: list[int] = []
    start = threading.Barrier(threads)

    def taker() -> None:
        client = redis.Redis.from_url(redis_url)
        bucket = TokenBucket(client)
        start.wait()
        got = 0
        for _ in range(attempts_each):
            # A refill of 0.001/s adds less than one token in the test's lifetime: exactly `capacity` fit.
            got += bucket.take("shared", 1, capacity=capacity, refill_per_second=0.001).allowed
        allowed.append(got)
        client.close()

    workers = [threading.Thread(target=taker) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(allowed) == threads
    assert sum(allowed) == capacity
