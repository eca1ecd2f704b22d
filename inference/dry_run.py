"""The dry-run engine: no weights, no compute, deterministic replies. For load tests of the pipeline.

Never a default: a models file must say ``engine = "dry-run"``. Requests go through the same checks as on
a real engine (messages, parameters, context window), so error paths are exercised too. The reply names
itself as a dry run and claims the whole completion budget, so token accounting sees worst-case usage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from inference.engine import Engine, Outcome, completion_body, prepare
from inference.errors import RequestError
from inference.registry import ModelSpec
from inference.tokens import DryRunCounter


class DryRunEngine(Engine):
    """Answers every valid request with ``"[dry-run <digest>]"``, ``finish_reason = "length"``."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.counter = DryRunCounter()

    def generate(self, requests: Sequence[dict[str, Any]]) -> list[Outcome]:
        counts = self.counter.count_prompts_or_errors(requests)
        outcomes = []
        for body, prepared in zip(requests, prepare(requests, self.spec, counts), strict=True):
            if isinstance(prepared, RequestError):
                outcomes.append(Outcome.failed(prepared))
                continue
            digest = hashlib.sha1(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:12]
            content = f"[dry-run {digest}]"
            body_out = completion_body(
                self.spec, content, "length", prepared.prompt_tokens, prepared.max_new_tokens
            )
            outcomes.append(Outcome(body_out, None))
        return outcomes
