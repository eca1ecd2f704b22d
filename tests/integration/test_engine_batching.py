"""Micro-batching is invisible in the results: greedy replies are the same alone and in a padded batch.

The tiny model is real (trained, saved, loaded through from_pretrained); rows of different prompt lengths
and budgets share a batch, so left padding, finished-row dropping and cache trimming are all exercised.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from inference.engine import Engine, Outcome, load_engine
from inference.registry import ModelSpec

QUESTIONS = [
    "What colour is the sky?",
    "Name a planet.",
    "How do I make bread? Tell me every step, slowly, and say why each step matters for the loaf.",
    "Good night.",
    "What is the capital of Peru?",
    "Describe a desert, then a forest, then a city, and say which one you would rather live in and why.",
    "Count the sheep",
    "Spell the word dog.",
    "What is a batch? What is a token? What is a queue? How do they fit together in a batch API?",
    "Thank you.",
]


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": question}], "temperature": 0, **extra}


def requests() -> list[dict[str, Any]]:
    """Mixed prompt lengths (one multi-turn) and mixed budgets, so rows finish at different steps."""
    out = [chat(q, max_tokens=8 + 5 * (i % 4)) for i, q in enumerate(QUESTIONS)]
    out.append(
        {
            "messages": [
                {"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": "What do bees make?"},
                {"role": "assistant", "content": "Bees make honey."},
                {"role": "user", "content": "And what do cows give?"},
            ],
            "temperature": 0,
            "max_tokens": 24,
        }
    )
    return out


def summary(outcome: Outcome) -> tuple[str, str, dict[str, int]]:
    assert outcome.body is not None, outcome.error
    choice = outcome.body["choices"][0]
    return choice["message"]["content"], choice["finish_reason"], outcome.body["usage"]


@pytest.fixture(scope="module")
def one_batch_engine(tiny_spec: ModelSpec) -> Engine:
    """The tiny model with limits high enough that every request shares one padded micro-batch."""
    return load_engine(dataclasses.replace(tiny_spec, max_batch_requests=64, max_batch_tokens=100_000))


def test_greedy_replies_are_identical_alone_and_in_one_padded_batch(
    tiny_engine: Engine, one_batch_engine: Engine
) -> None:
    reqs = requests()
    alone = [summary(tiny_engine.generate([r])[0]) for r in reqs]
    batched = [summary(o) for o in one_batch_engine.generate(reqs)]
    assert batched == alone
    replies = {content for content, _, _ in alone}
    assert len(replies) >= len(reqs) // 2, "the tiny model's replies should depend on the prompt"
    assert {reason for _, reason, _ in alone} == {"stop", "length"}, "some rows stop early, some run out"


def test_results_come_back_in_input_order_across_micro_batches(tiny_engine: Engine) -> None:
    reqs = requests() * 2  # 22 requests: three micro-batches of at most 8, re-ordered by length inside
    outcomes = tiny_engine.generate(reqs)
    assert [summary(o) for o in outcomes[:11]] == [summary(o) for o in outcomes[11:]]
    alone = summary(tiny_engine.generate([reqs[5]])[0])
    assert summary(outcomes[5]) == alone == summary(outcomes[16])
