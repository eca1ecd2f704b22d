"""Messages and templates (no model), and the dry-run engine that load tests run on."""

from __future__ import annotations

from typing import Any

import pytest

from inference.chat import ChatTemplate, parse_messages, special_tokens
from inference.engine import load_engine
from inference.errors import ParamError
from inference.registry import ModelSpec
from inference.tokens import DryRunCounter

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_text_parts_are_joined_and_developer_is_system() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ]
    }
    assert parse_messages(body) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
    ]


@pytest.mark.parametrize(
    "messages",
    [
        None,
        [],
        "hi",
        [{"role": "robot", "content": "x"}],
        [{"role": "user"}],
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}],
        ["not an object"],
    ],
)
def test_unusable_messages_are_param_errors(messages: Any) -> None:
    with pytest.raises(ParamError):
        parse_messages({"messages": messages})


def test_the_template_renders_with_special_tokens_and_a_generation_prompt() -> None:
    template = ChatTemplate(
        TEMPLATE, special_tokens({"bos_token": {"content": "<s>"}, "eos_token": "</s>", "x": 1})
    )
    assert template.render([{"role": "user", "content": "hi"}]) == "<s><user>hi</s><assistant>"


def test_a_template_that_raises_rejects_the_request_not_the_worker() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}", {})
    with pytest.raises(ParamError, match="roles must alternate"):
        template.render([{"role": "user", "content": "hi"}])


def test_the_dry_run_counter_is_deterministic_and_reports_bad_bodies_in_place() -> None:
    counter = DryRunCounter()
    good = {"messages": [{"role": "user", "content": "hello world"}]}
    counts = counter.count_prompts_or_errors([good, {"messages": []}, good])
    assert counts[0] == counts[2] == counter.count_prompts([good])[0] > 0
    assert isinstance(counts[1], ParamError)
    with pytest.raises(ParamError, match="request 1"):
        counter.count_prompts([good, {"messages": []}])


def test_the_dry_run_engine_answers_deterministically_and_checks_like_a_real_one() -> None:
    spec = ModelSpec(id="dry", path="unused", engine="dry-run", context_length=64, default_max_tokens=8)
    engine = load_engine(spec)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    first, second, bad_param, overflow = engine.generate(
        [body, body, {**body, "temperature": "hot"}, {**body, "max_tokens": 64}]
    )
    assert first.body is not None and second.body is not None
    message = first.body["choices"][0]["message"]["content"]
    assert message.startswith("[dry-run") and message == second.body["choices"][0]["message"]["content"]
    assert first.body["usage"]["completion_tokens"] == 5 and first.body["model"] == "dry"
    assert bad_param.error is not None and bad_param.error["code"] == "invalid_parameter"
    assert overflow.error is not None and overflow.error["code"] == "context_length_exceeded"
