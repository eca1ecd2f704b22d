"""Prometheus metrics. Shared state is read from Redis at scrape time, so every process agrees.

The API and each worker expose ``render(client, settings)``: the process's own metrics (the default
registry: API latency, process and GC) followed by the gauges read from Redis now (batches per stage,
enqueued tokens and their cap per model, requests per model and outcome, Celery queue depths). Nothing is
pushed or cached, so a restarted process reports the same numbers as one that has run for a week.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler import keys
from scheduler.celery_app import CONTROL_QUEUE, infer_queue
from scheduler.lifecycle import TERMINAL, Stage
from scheduler.service import read_served_models
from scheduler.settings import Settings

log = logging.getLogger(__name__)

# Process-local: each API process observes its own requests; Prometheus sums across instances.
API_LATENCY = Histogram(
    "tokenbatch_api_request_duration_seconds", "HTTP API request latency, by route template.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

# kombu's Redis transport keeps one list per priority step; priority 0 is the bare queue name.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCollector(Collector):
    """Gauges and counters read from Redis on every ``collect``; a Redis outage shows as ``redis_up 0``."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families are only known at scrape time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tokenbatch_redis_up", "1 if Redis answered this scrape.")
        try:
            families = [*self._batches(), *self._requests(), *self._budget(), *self._queues()]
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _served(self) -> list[str]:
        try:
            return sorted(read_served_models(str(self.settings.models) if self.settings.models else None))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("metrics: cannot read models file: %s", exc)
            return []

    def _batches(self) -> list[Metric]:
        counts = dict.fromkeys((s.value for s in Stage), 0)
        active = [_text(m) for m in self.client.smembers(keys.active_batches())]
        pipe = self.client.pipeline(transaction=False)
        for batch_id in active:
            pipe.hget(keys.batch(batch_id), "stage")
        for raw in pipe.execute() if active else []:
            stage = _text(raw) if raw is not None else None
            # Terminal batches are counted once, from the finished hash (a batch leaves the active set
            # just after its transition).
            if stage in counts and Stage(stage) not in TERMINAL:
                counts[stage] += 1
        for stage, n in self.client.hgetall(keys.finished_batches()).items():
            if _text(stage) in counts and Stage(_text(stage)) in TERMINAL:
                counts[_text(stage)] = int(n)
        g = GaugeMetricFamily("tokenbatch_batches", "Batches per native stage: active now, or ever ended in a "
                              "terminal stage.", labels=["stage"])
        for stage, n in counts.items():
            g.add_metric([stage], n)
        return [g]

    def _requests(self) -> list[Metric]:
        c = CounterMetricFamily("tokenbatch_requests", "Requests finished, per model and outcome.",
                                labels=["model", "outcome"])
        for field, n in sorted(self.client.hgetall(keys.requests_by_model()).items()):
            model, _, outcome = _text(field).rpartition("|")
            if model:
                c.add_metric([model, outcome], int(n))
        return [c]

    def _budget(self) -> list[Metric]:
        try:
            from limits import TokenBudget  # the budget package may be absent in a partial install
        except ImportError:
            return []
        budget = TokenBudget(self.client)
        enqueued = GaugeMetricFamily("tokenbatch_enqueued_tokens", "Tokens enqueued (reserved) per model.",
                                     labels=["model"])
        cap = GaugeMetricFamily("tokenbatch_enqueued_tokens_limit", "The cap on enqueued tokens per model.",
                                labels=["model"])
        leases = GaugeMetricFamily("tokenbatch_budget_leases", "Budget reservations held per model.",
                                   labels=["model"])
        expired = GaugeMetricFamily("tokenbatch_budget_expired_leases", "Reservations past their lease and not "
                                    "yet reclaimed.", labels=["model"])
        for model in sorted(set(budget.models()) | set(self._served())):
            s = budget.stats(model)
            enqueued.add_metric([model], s.enqueued)
            # A model that never reserved has no stored cap yet: show the configured one.
            cap.add_metric([model], s.cap or self.settings.enqueued_tokens_per_model)
            leases.add_metric([model], s.leases)
            expired.add_metric([model], s.expired)
        return [enqueued, cap, leases, expired]

    def _queues(self) -> list[Metric]:
        names = [CONTROL_QUEUE, *(infer_queue(m) for m in self._served())]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{name}{_PRIORITY_SEP}{step}" if step else name)
        lengths = pipe.execute()
        g = GaugeMetricFamily("tokenbatch_queue_length", "Messages waiting in a Celery queue.", labels=["queue"])
        for i, name in enumerate(names):
            g.add_metric([name], sum(int(n) for n in lengths[i * len(_PRIORITY_STEPS):(i + 1) * len(_PRIORITY_STEPS)]))
        return [g]


def render(client: redis.Redis, settings: Settings) -> tuple[bytes, str]:
    """The exposition text of this process's metrics and of Redis's shared state, and its content type."""
    shared = CollectorRegistry(auto_describe=False)
    shared.register(RedisCollector(client, settings))
    return generate_latest(REGISTRY) + generate_latest(shared), CONTENT_TYPE_LATEST
