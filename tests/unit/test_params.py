"""Sampling parameters: the engine's rules, checked without torch; nothing unsupported passes silently."""

from __future__ import annotations

from typing import Any

import pytest

from inference.errors import ContextLengthExceeded, ParamError
from inference.params import SamplingParams, parse_params
from inference.registry import ModelSpec

SPEC = ModelSpec(id="m", path="/nowhere", context_length=100, default_max_tokens=40)
MESSAGES = [{"role": "user", "content": "hi"}]


def parse(**fields: Any) -> SamplingParams:
    return parse_params({"model": "m", "messages": MESSAGES, **fields}, SPEC)


def test_defaults_follow_openai_and_the_models_default_budget() -> None:
    params = parse()
    assert params.max_new_tokens == 40 and not params.max_tokens_explicit
    assert params.temperature == 1.0 and params.top_p == 1.0 and params.top_k == 0
    assert params.stop == () and params.seed is None and not params.greedy and not params.penalized


def test_max_completion_tokens_and_max_tokens_are_the_same_budget() -> None:
    assert parse(max_tokens=7).max_new_tokens == 7
    assert parse(max_completion_tokens=9).max_new_tokens == 9
    assert parse(max_tokens=5, max_completion_tokens=5).max_new_tokens == 5
    with pytest.raises(ParamError, match="disagree"):
        parse(max_tokens=5, max_completion_tokens=6)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", "12"),
        ("max_tokens", 1.5),
        ("max_tokens", True),
        ("temperature", "hot"),
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("temperature", float("nan")),
        ("top_p", 0),
        ("top_p", 1.2),
        ("top_k", -2),
        ("top_k", 2.0),
        ("stop", 5),
        ("stop", ["a", 3]),
        ("stop", [""]),
        ("stop", [str(i) for i in range(17)]),
        ("seed", "7"),
        ("seed", 2**64),
        ("presence_penalty", 3),
        ("frequency_penalty", "x"),
        ("repetition_penalty", 0),
        ("logit_bias", {"abc": 1}),
        ("logit_bias", {"5": 200}),
        ("logit_bias", [1, 2]),
    ],
)
def test_a_wrong_value_is_a_param_error_naming_the_parameter(field: str, value: Any) -> None:
    with pytest.raises(ParamError) as caught:
        parse(**{field: value})
    assert caught.value.param == field
    assert caught.value.as_error()["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("stream", True),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("tools", [{"type": "function"}]),
        ("response_format", {"type": "json_object"}),
        ("best_of", 2),
        ("frobnicate", 1),
    ],
)
def test_what_the_engine_cannot_honour_is_refused_not_ignored(field: str, value: Any) -> None:
    with pytest.raises(ParamError) as caught:
        parse(**{field: value})
    assert caught.value.code == "unsupported_parameter"
    assert field in caught.value.message


def test_off_values_of_unimplemented_features_are_accepted() -> None:
    parse(n=1, stream=False, logprobs=False, top_logprobs=None, tools=[], response_format={"type": "text"})
    parse(user="u", metadata={"a": "b"}, store=False, tool_choice="none")


def test_values_are_normalised() -> None:
    params = parse(
        temperature=0,
        stop="END",
        top_k=-1,
        seed=-3,
        presence_penalty=0.5,
        logit_bias={"7": -100, "3": 2.5},
    )
    assert params.greedy and params.stop == ("END",) and params.top_k == 0 and params.seed == -3
    assert params.penalized and params.logit_bias == ((3, 2.5), (7, -100.0))
    assert parse(stop=["a", "b", "a"]).stop == ("a", "b")
    assert parse(top_k=1, temperature=1.0).greedy


def test_an_explicit_budget_that_does_not_fit_the_context_is_an_error() -> None:
    assert parse(max_tokens=60).completion_budget(40, 100) == 60
    with pytest.raises(ContextLengthExceeded, match="61 in the completion") as caught:
        parse(max_tokens=61).completion_budget(40, 100)
    assert caught.value.as_error()["code"] == "context_length_exceeded"


def test_the_default_budget_shrinks_to_fit_and_a_full_prompt_is_an_error() -> None:
    assert parse().completion_budget(10, 100) == 40
    assert parse().completion_budget(90, 100) == 10
    with pytest.raises(ContextLengthExceeded):
        parse().completion_budget(100, 100)


def test_a_body_that_is_not_an_object_is_a_param_error() -> None:
    with pytest.raises(ParamError):
        parse_params(["not", "a", "dict"], SPEC)  # type: ignore[arg-type]
