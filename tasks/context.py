"""What a worker process holds once: settings, a Redis client, storage, the budget, model rules.

Built lazily on first use (never at import, so a worker forks before it opens sockets) and then reused
by every task of the process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import redis

from inference.errors import RequestError
from inference.packing import PackItem, pack
from inference.params import parse_params
from inference.registry import ModelSpec, load_models
from inference.tokens import TokenCounter, load_counter
from limits import TokenBudget
from scheduler import worker_metrics
from scheduler.celery_app import CONTROL_QUEUE, app, infer_queue
from scheduler.dispatch import Dispatcher
from scheduler.microbatch import MicroBatches
from scheduler.plan import Rejected
from scheduler.records import Records
from scheduler.service import Service
from scheduler.settings import Settings
from scheduler.storage import Storage


@dataclass
class Rules:
    """A served model's planning rules, from its spec and tokenizer (no weights, no torch)."""

    spec: ModelSpec
    counter: TokenCounter

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    @property
    def max_batch_requests(self) -> int:
        return self.spec.max_batch_requests

    @property
    def max_batch_tokens(self) -> int:
        return self.spec.max_batch_tokens

    def count_prompts(self, bodies: list[dict[str, Any]]) -> list[int | Rejected]:
        return [Rejected(c.code or "invalid_request", c.message) if isinstance(c, RequestError) else c
                for c in self.counter.count_prompts_or_errors(bodies)]

    def max_new_tokens(self, body: dict[str, Any], prompt_tokens: int) -> int:
        try:
            return parse_params(body, self.spec).completion_budget(prompt_tokens, self.spec.context_length)
        except RequestError as exc:
            raise Rejected(exc.code or "invalid_request", exc.message) from exc


def pack_tuples(items: list[tuple[int, int, int]], max_requests: int, max_tokens: int) -> list[list[int]]:
    groups = pack([PackItem(k, p, m) for k, p, m in items], max_requests, max_tokens)
    return [[int(k) for k in g] for g in groups]  # type: ignore[call-overload]


@dataclass
class Context:
    settings: Settings = field(default_factory=Settings.load)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rules: dict[str, Rules] = field(default_factory=dict)  # tokenizers load once per process

    @cached_property
    def client(self) -> redis.Redis:
        if not self.settings.redis_url:
            raise RuntimeError("TOKENBATCH_REDIS_URL is not set for this worker")
        return redis.Redis.from_url(self.settings.redis_url, health_check_interval=30)

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.settings.files_url)

    @cached_property
    def records(self) -> Records:
        return Records(self.client)

    @cached_property
    def mbs(self) -> MicroBatches:
        return MicroBatches(self.client)

    @cached_property
    def budget(self) -> TokenBudget:
        return TokenBudget(self.client)

    @cached_property
    def service(self) -> Service:
        return Service(self.settings, self.client, self.send_control)

    @cached_property
    def specs(self) -> dict[str, ModelSpec]:
        if not self.settings.models:
            return {}
        return load_models(self.settings.models)

    @property
    def cache_dir(self) -> Path:
        return self.settings.data_dir / "models"

    def rules(self) -> dict[str, Rules]:
        """Planning rules of every served model; tokenizers load once per process."""
        with self._lock:
            for model, spec in self.specs.items():
                if model not in self._rules:
                    self._rules[model] = Rules(spec, load_counter(spec, self.cache_dir))
            return dict(self._rules)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        # A dispatched micro-batch may wait in the broker behind many others: its lease covers that wait (up to
        # the broker's own redelivery horizon); the inference task shortens it to lease_seconds when it starts.
        queued = max(self.settings.visibility_timeout, self.settings.lease_seconds)
        return Dispatcher(self.client, self.budget, cap=self.settings.enqueued_tokens_per_model,
                          lease_seconds=queued, send=self.send_infer,
                          finalize=lambda batch_id: self.send_control("tokenbatch.finalize", [batch_id]),
                          on_wait=lambda model, seconds: worker_metrics.BUDGET_WAIT.labels(model).observe(seconds))

    def send_control(self, name: str, args: list[Any]) -> None:
        app.send_task(name, args=args, queue=CONTROL_QUEUE)

    def send_infer(self, model: str, batch_id: str, index: int, attempt: int) -> None:
        app.send_task("tokenbatch.infer", args=[model, batch_id, index, attempt], queue=infer_queue(model))

    def trigger_dispatch(self, models: set[str] | list[str]) -> None:
        for model in sorted(models):
            self.send_control("tokenbatch.dispatch", [model])


_context: Context | None = None


def ctx() -> Context:
    global _context
    if _context is None:
        _context = Context()
    return _context


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds in a daemon thread while the block runs: it keeps a lease
    alive for as long as the work does, and no longer (a SIGKILL stops it with the work)."""

    def __init__(self, interval: float, beat: Callable[[], object]) -> None:
        self.interval = interval
        self.beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tokenbatch-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # A missed beat is retried next interval; the lease has slack for it.
            with contextlib.suppress(Exception):
                self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
