"""Prometheus metrics. Shared state is read from Redis at scrape time, so every process agrees.

The API and each worker expose the process's own metrics (the default registry: API latency here, the
workers' counters in ``worker_metrics``, process and GC) followed by the gauges read from Redis now:
batches per stage and near their deadline, requests per model and outcome, enqueued tokens and their cap,
leases, micro-batches queued and waiting for the budget, Celery queue depths. Nothing is pushed or cached,
so a restarted process reports the same numbers as one that has run for a week, and dashboards take
``max`` of these across processes (``sum`` of the process-local ones).
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
from scheduler.lifecycle import RUNNABLE
from scheduler.records import Records
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
NEAR_DEADLINE = 0.1  # a queued or running batch with less than this share of its window left is near it


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
            models = self._models()  # one read of the models file and the work set per scrape
            families = [*self._batches(), *self._requests(), *self._budget(models), *self._waiting(models),
                        *self._queues(models)]
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

    def _models(self) -> list[str]:
        """Served models and every model that ever had queued work."""
        return sorted(set(self._served()) | {_text(m) for m in self.client.smembers(keys.models_with_work())})

    def _batches(self) -> list[Metric]:
        records = Records(self.client)
        rows = records.active_fields("stage", "created_at", "expires_at")
        now = int(self.client.time()[0])
        near, remaining = 0, None
        for row in rows:
            if row.get("stage") in RUNNABLE and row.get("created_at") and row.get("expires_at"):
                created, expires = int(float(row["created_at"])), int(float(row["expires_at"]))
                left = expires - now
                remaining = left if remaining is None else min(remaining, left)
                near += left < NEAR_DEADLINE * (expires - created)
        g = GaugeMetricFamily("tokenbatch_batches", "Batches per native stage: active now, or ever ended in a "
                              "terminal stage.", labels=["stage"])
        for stage, n in records.stage_counts(rows).items():
            g.add_metric([stage.value], n)
        near_g = GaugeMetricFamily("tokenbatch_batches_near_deadline", "Queued or running batches with less than "
                                   f"{NEAR_DEADLINE:.0%} of their completion window left.", value=near)
        left_g = GaugeMetricFamily("tokenbatch_batch_deadline_min_remaining_seconds", "Seconds until the soonest "
                                   "deadline of a queued or running batch (absent when none is).")
        if remaining is not None:
            left_g.add_metric([], remaining)
        return [g, near_g, left_g]

    def _requests(self) -> list[Metric]:
        c = CounterMetricFamily("tokenbatch_requests", "Requests finished, per model and outcome.",
                                labels=["model", "outcome"])
        for field, n in sorted(self.client.hgetall(keys.requests_by_model()).items()):
            model, _, outcome = _text(field).rpartition("|")
            if model:
                c.add_metric([model, outcome], int(n))
        return [c]

    def _budget(self, models: list[str]) -> list[Metric]:
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
        for model in sorted(set(budget.models()) | set(models)):
            s = budget.stats(model)
            enqueued.add_metric([model], s.enqueued)
            # A model that never reserved has no stored cap yet: show the configured one.
            cap.add_metric([model], s.cap or self.settings.enqueued_tokens_per_model)
            leases.add_metric([model], s.leases)
            expired.add_metric([model], s.expired)
        return [enqueued, cap, leases, expired]

    def _waiting(self, models: list[str]) -> list[Metric]:
        """Micro-batches the dispatcher found over the budget and that are still pending, per model."""
        count = GaugeMetricFamily("tokenbatch_budget_waiting_microbatches", "Micro-batches at the head of a queue "
                                  "waiting for the token budget.", labels=["model"])
        oldest = GaugeMetricFamily("tokenbatch_budget_wait_oldest_seconds", "How long the longest-waiting "
                                   "micro-batch has waited for the token budget.", labels=["model"])
        queued = GaugeMetricFamily("tokenbatch_queued_microbatches", "Micro-batches in a model's tenant queues, not "
                                   "yet admitted by the budget.", labels=["model"])
        now = int(self.client.time()[0])
        for model in models:
            tenants = [_text(t) for t in self.client.smembers(keys.model_tenants(model))]
            waiting = {_text(k): int(v) for k, v in self.client.hgetall(keys.waiting_since(model)).items()}
            pipe = self.client.pipeline(transaction=False)
            for tenant in tenants:
                pipe.llen(keys.model_queue(model, tenant))
            for rid in waiting:
                batch_id, _, index = rid.rpartition(":")
                pipe.hget(keys.microbatches(batch_id), index)
            replies = pipe.execute() if tenants or waiting else []
            lengths, states = replies[:len(tenants)], replies[len(tenants):]
            # An entry whose micro-batch was dropped (cancel, expiry) while it waited is not waiting.
            since = [t for t, st in zip(waiting.values(), states, strict=True) if st is not None and
                     _text(st) == "pending"]
            queued.add_metric([model], sum(int(n) for n in lengths))
            count.add_metric([model], len(since))
            oldest.add_metric([model], max(0, now - min(since)) if since else 0)
        return [queued, count, oldest]

    def _queues(self, models: list[str]) -> list[Metric]:
        names = [CONTROL_QUEUE, *(infer_queue(m) for m in models)]
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
