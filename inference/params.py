"""Sampling parameters of one chat-completion body, checked once, with no torch.

The control worker budgets tokens with ``completion_budget`` and the engine generates with the same rule,
so the tokens reserved for a request are the tokens it may use. A parameter the engine cannot honour is a
``ParamError`` (code ``unsupported_parameter``), never silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from inference.errors import ContextLengthExceeded, ParamError
from inference.registry import ModelSpec

MAX_STOP = 16
# Keys that carry no generation semantics here (bookkeeping, or fixed by the batch endpoint).
_IGNORED = frozenset(
    {
        "model",
        "messages",
        "user",
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "stream_options",
        "safety_identifier",
        "prompt_cache_key",
    }
)
_SAMPLING = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
    }
)


@dataclass(frozen=True)
class SamplingParams:
    """What the decode loop needs for one request; defaults mean "no change to the distribution"."""

    max_new_tokens: int
    max_tokens_explicit: bool = True  # False: default_max_tokens, shortened to fit the context
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def penalized(self) -> bool:
        """Whether logits depend on the tokens generated so far."""
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)

    def completion_budget(self, prompt_tokens: int, context_length: int) -> int:
        """New tokens this request may generate: its max_tokens, checked against the context window.

        An explicit max_tokens that does not fit is an error (as OpenAI answers); the model's default is
        shortened to what fits. A prompt that fills the whole context is always an error.
        """
        room = context_length - prompt_tokens
        if room <= 0:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context_length} tokens; the messages are "
                f"{prompt_tokens} tokens, which leaves no room for a completion."
            )
        if not self.max_tokens_explicit:
            return min(self.max_new_tokens, room)
        if self.max_new_tokens > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context_length} tokens. However, you requested "
                f"{prompt_tokens + self.max_new_tokens} tokens ({prompt_tokens} in the messages, "
                f"{self.max_new_tokens} in the completion). Please reduce the length of the messages or "
                "the completion."
            )
        return self.max_new_tokens


def parse_params(body: dict[str, Any], spec: ModelSpec) -> SamplingParams:
    """Check and normalise a body's sampling parameters; ``ParamError`` names the offending one."""
    if not isinstance(body, dict):
        raise ParamError("the request body must be a JSON object", param="body")
    _reject_unsupported(body)
    max_tokens, explicit = _max_tokens(body, spec)
    temperature = _number(body, "temperature", 1.0, low=0.0, high=2.0)
    top_p = _number(body, "top_p", 1.0, low=0.0, high=1.0, low_open=True)
    top_k = _integer(body, "top_k", 0, low=-1)
    return SamplingParams(
        max_new_tokens=max_tokens,
        max_tokens_explicit=explicit,
        temperature=temperature,
        top_p=top_p,
        top_k=max(top_k, 0),  # -1 (vLLM, Together) and 0 both mean off
        min_p=_number(body, "min_p", 0.0, low=0.0, high=1.0),
        stop=_stop(body.get("stop")),
        seed=_seed(body.get("seed")),
        presence_penalty=_number(body, "presence_penalty", 0.0, low=-2.0, high=2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, low=-2.0, high=2.0),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, low=0.0, high=10.0, low_open=True),
        logit_bias=_logit_bias(body.get("logit_bias")),
    )


def _reject_unsupported(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _IGNORED or key in _SAMPLING:
            continue
        if _harmless(key, value):
            continue
        raise ParamError(
            f"parameter {key!r} is not supported by this server", param=key, code="unsupported_parameter"
        )
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise ParamError(
            f"n must be 1 here (one choice per request), not {n!r}", param="n", code="unsupported_parameter"
        )


def _harmless(key: str, value: Any) -> bool:
    """Parameters we do not implement, accepted only at the value that means "off"."""
    if value is None:
        return True
    if key in ("stream", "logprobs"):
        return value is False
    if key == "top_logprobs":
        return value == 0 and _is_int(value)
    if key in ("tools", "functions"):
        return value == []
    if key in ("tool_choice", "function_call"):
        return value == "none"
    if key == "response_format":
        return value == {"type": "text"}
    return False


def _max_tokens(body: dict[str, Any], spec: ModelSpec) -> tuple[int, bool]:
    given = {k: body.get(k) for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None}
    for key, value in given.items():
        if not _is_int(value) or value < 1:
            raise ParamError(f"{key} must be an integer >= 1, not {value!r}", param=key)
    if len(set(given.values())) > 1:
        raise ParamError(
            "max_tokens and max_completion_tokens disagree; send one of them", param="max_completion_tokens"
        )
    if given:
        return next(iter(given.values())), True
    return spec.default_max_tokens, False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(
    body: dict[str, Any], key: str, default: float, *, low: float, high: float, low_open: bool = False
) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParamError(f"{key} must be a number, not {value!r}", param=key)
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ParamError(f"{key} must be in {interval}, not {value!r}", param=key)
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int, *, low: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not _is_int(value) or value < low:
        raise ParamError(f"{key} must be an integer >= {low}, not {value!r}", param=key)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ParamError(f"stop must be a string or a list of strings, not {value!r}", param="stop")
    if len(stops) > MAX_STOP:
        raise ParamError(f"stop takes at most {MAX_STOP} strings, not {len(stops)}", param="stop")
    if any(s == "" for s in stops):
        raise ParamError("stop strings must not be empty", param="stop")
    return tuple(dict.fromkeys(stops))


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not -(2**63) <= value < 2**64:
        raise ParamError(f"seed must be a 64-bit integer, not {value!r}", param="seed")
    return value


def _logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    """``{"token id": bias}``; ids are checked against the vocabulary by the engine, which knows it."""
    if value is None or value == {}:
        return ()
    if not isinstance(value, dict):
        raise ParamError("logit_bias must be an object of token id -> bias", param="logit_bias")
    out = []
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise ParamError(f"logit_bias key {key!r} is not a token id", param="logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise ParamError(
                f"logit_bias values must be numbers in [-100, 100], not {bias!r}", param="logit_bias"
            )
        if token < 0:
            raise ParamError(f"logit_bias key {key!r} is not a token id", param="logit_bias")
        out.append((token, float(bias)))
    return tuple(sorted(out))
