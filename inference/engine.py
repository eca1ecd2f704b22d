"""The engine interface: request bodies in, one ``Outcome`` per request out, in the same order.

Both engines share the per-request checks here (messages, parameters, context window), so a request that
fails them fails the same way on the dry-run engine as on a real one, and never touches its neighbours.
This module imports no torch; ``load_engine`` imports the transformers engine only when asked for one.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import ParamError, RequestError
from inference.params import SamplingParams, parse_params
from inference.registry import ModelSpec


@dataclass(frozen=True)
class Outcome:
    """A ``chat.completion`` body, or ``{"code", "message"}`` for a request that could not be served."""

    body: dict[str, Any] | None
    error: dict[str, str] | None

    @property
    def ok(self) -> bool:
        return self.body is not None

    @classmethod
    def failed(cls, exc: RequestError) -> Outcome:
        return cls(None, exc.as_error())


@dataclass
class Prepared:
    """One request that passed its checks: the ids to feed, its parameters and its completion budget."""

    index: int
    prompt_ids: list[int]
    prompt_tokens: int
    params: SamplingParams
    max_new_tokens: int


class Engine(ABC):
    """Runs micro-batches of one model on one device."""

    spec: ModelSpec

    @abstractmethod
    def generate(self, requests: Sequence[dict[str, Any]]) -> list[Outcome]:
        """One outcome per request body, same order; a failing request fails alone."""


def load_engine(spec: ModelSpec, cache_dir: Path | None = None) -> Engine:
    """The engine ``spec.engine`` names, with its model loaded once (the dry-run engine loads nothing)."""
    if spec.engine == "dry-run":
        from inference.dry_run import DryRunEngine

        return DryRunEngine(spec)
    from inference.hf_engine import TransformersEngine

    return TransformersEngine.load(spec, cache_dir)


def prepare(
    requests: Sequence[dict[str, Any]],
    spec: ModelSpec,
    prompts: Sequence[list[int] | int | RequestError],
    vocab_size: int | None = None,
) -> list[Prepared | RequestError]:
    """Check each request against its counted prompt; ``prompts`` holds ids (or just a count) or an error."""
    out: list[Prepared | RequestError] = []
    for index, (body, prompt) in enumerate(zip(requests, prompts, strict=True)):
        try:
            if isinstance(prompt, RequestError):
                raise prompt
            params = parse_params(body, spec)
            ids = prompt if isinstance(prompt, list) else []
            count = len(prompt) if isinstance(prompt, list) else prompt
            budget = params.completion_budget(count, spec.context_length)
            if vocab_size is not None and any(token >= vocab_size for token, _ in params.logit_bias):
                raise ParamError(
                    f"logit_bias names a token id >= the vocabulary size {vocab_size}", param="logit_bias"
                )
            out.append(Prepared(index, ids, count, params, budget))
        except RequestError as exc:
            out.append(exc)
    return out


def completion_body(
    spec: ModelSpec, content: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object, fields in the order of OpenAI's reference."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": spec.id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
