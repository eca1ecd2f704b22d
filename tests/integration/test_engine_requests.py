"""Per-request behaviour on the real tiny model: budgets, stop strings, seeds, penalties, usage, errors."""

from __future__ import annotations

from typing import Any

import pytest

from inference.engine import Engine, Outcome

QUESTION = "What is the capital of Italy? Answer with care."


def chat(question: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": question}], **extra}


def content(outcome: Outcome) -> str:
    assert outcome.body is not None, outcome.error
    return outcome.body["choices"][0]["message"]["content"]


def finish(outcome: Outcome) -> str:
    assert outcome.body is not None, outcome.error
    return outcome.body["choices"][0]["finish_reason"]


def usage(outcome: Outcome) -> dict[str, int]:
    assert outcome.body is not None, outcome.error
    return outcome.body["usage"]


def test_a_completion_is_an_openai_chat_completion(tiny_engine: Engine) -> None:
    body = tiny_engine.generate([chat(temperature=0, max_tokens=12)])[0].body
    assert body is not None
    assert (
        body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny"
    )
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    u = body["usage"]
    assert (
        u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and 1 <= u["completion_tokens"] <= 12
    )


def test_max_tokens_ends_a_reply_with_finish_reason_length(tiny_engine: Engine) -> None:
    free = tiny_engine.generate([chat(temperature=0, max_tokens=40)])[0]
    assert usage(free)["completion_tokens"] > 4, "the reply must be longer than the budget below"
    for key in ("max_tokens", "max_completion_tokens"):
        cut = tiny_engine.generate([chat(temperature=0, **{key: 4})])[0]
        assert finish(cut) == "length" and usage(cut)["completion_tokens"] == 4
        assert content(free).startswith(content(cut))


def test_the_models_default_budget_applies_without_max_tokens(tiny_engine: Engine) -> None:
    outcome = tiny_engine.generate([chat("Count the sheep", temperature=0, logit_bias={"40": 100})])[0]
    assert usage(outcome)["completion_tokens"] == tiny_engine.spec.default_max_tokens
    assert finish(outcome) == "length"


def test_eos_ends_a_reply_with_finish_reason_stop(tiny_engine: Engine) -> None:
    outcome = tiny_engine.generate([chat("Thank you.", temperature=0, max_tokens=60)])[0]
    assert finish(outcome) == "stop" and usage(outcome)["completion_tokens"] < 60
    assert "<|im_end|>" not in content(outcome)


def test_a_stop_string_cuts_the_reply_before_it(tiny_engine: Engine) -> None:
    full = content(tiny_engine.generate([chat(temperature=0, max_tokens=40)])[0])
    stop = full[4:7]
    expected = full[: full.find(stop)]
    other = "never-appears-xyz"
    for stops in (stop, [other, stop]):
        outcome = tiny_engine.generate([chat(temperature=0, max_tokens=40, stop=stops)])[0]
        assert content(outcome) == expected
        assert finish(outcome) == "stop"
    unmatched = tiny_engine.generate([chat(temperature=0, max_tokens=40, stop=other)])[0]
    assert content(unmatched) == full


def test_the_same_seed_gives_the_same_reply_whatever_shares_the_batch(tiny_engine: Engine) -> None:
    seeded = [chat(temperature=1.0, seed=s, max_tokens=24) for s in (1, 2, 3, 4)]
    neighbours = [
        chat(f"Neighbour {i} with a longer prompt than most.", temperature=1.0, max_tokens=9)
        for i in range(3)
    ]
    first = [content(o) for o in tiny_engine.generate(seeded)]
    again = [content(o) for o in tiny_engine.generate(neighbours + seeded[::-1])[3:]][::-1]
    alone = [content(tiny_engine.generate([r])[0]) for r in seeded]
    assert first == again == alone
    assert len(set(first)) > 1, "different seeds should give different samples"


def test_top_k_one_is_greedy_and_sampling_is_not(tiny_engine: Engine) -> None:
    greedy = content(tiny_engine.generate([chat(temperature=0, max_tokens=24)])[0])
    top1 = content(tiny_engine.generate([chat(temperature=1.5, top_k=1, seed=5, max_tokens=24)])[0])
    assert top1 == greedy
    samples = {
        content(o)
        for o in tiny_engine.generate([chat(temperature=2.0, seed=s, max_tokens=24) for s in range(6)])
    }
    assert samples - {greedy}


def test_top_p_and_min_p_narrow_the_distribution(tiny_engine: Engine) -> None:
    greedy = content(tiny_engine.generate([chat(temperature=0, max_tokens=16)])[0])
    narrow = [chat(temperature=1.0, top_p=1e-6, seed=s, max_tokens=16) for s in range(3)]
    narrow += [chat(temperature=1.0, min_p=1.0, seed=s, max_tokens=16) for s in range(3)]
    assert {content(o) for o in tiny_engine.generate(narrow)} == {greedy}


def test_penalties_and_logit_bias_change_greedy_output(tiny_engine: Engine) -> None:
    repetitive = chat("What is the capital of Peru?", temperature=0, max_tokens=30)
    plain = content(tiny_engine.generate([repetitive])[0])
    for extra in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repetition_penalty": 3.0}):
        assert content(tiny_engine.generate([{**repetitive, **extra}])[0]) != plain, extra
    forced = tiny_engine.generate([{**repetitive, "logit_bias": {"40": 100}, "max_tokens": 5}])[0]
    token = tiny_engine.counter.decode([40])  # type: ignore[attr-defined]
    assert content(forced) == token * 5


def test_a_bad_request_fails_alone_beside_successes_in_one_micro_batch(tiny_engine: Engine) -> None:
    good = [chat(q, temperature=0, max_tokens=10) for q in ("Name a tree.", "Say hello.", "Name a fruit.")]
    mixed = [
        good[0],
        chat(temperature="warm"),
        good[1],
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        chat("word " * 600, max_tokens=10),
        chat(max_tokens=500),
        chat(logit_bias={"99999": 1}),
        chat(n=3),
        good[2],
    ]
    outcomes = tiny_engine.generate(mixed)
    codes = [o.error["code"] if o.error else None for o in outcomes]
    assert codes == [
        None,
        "invalid_parameter",
        None,
        "unsupported_parameter",
        "context_length_exceeded",
        "context_length_exceeded",
        "invalid_parameter",
        "unsupported_parameter",
        None,
    ]
    alone = [content(tiny_engine.generate([g])[0]) for g in good]
    assert [content(outcomes[i]) for i in (0, 2, 8)] == alone
    assert all(o.error is None or o.body is None for o in outcomes)
    assert "512" in (outcomes[4].error or {})["message"]


def test_a_generation_failure_is_isolated_to_its_request(
    tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A micro-batch that raises is retried in halves, so only the request that breaks gets an error."""
    poison = chat("POISON", temperature=0, max_tokens=6)
    poison_ids = tiny_engine.counter.prompt_ids([poison])[0]  # type: ignore[attr-defined]
    decoder = tiny_engine.decoder  # type: ignore[attr-defined]
    real_run = decoder.run

    def run(rows: list[Any]) -> None:
        if any(row.prompt_ids == poison_ids for row in rows):
            raise RuntimeError("simulated kernel failure")
        real_run(rows)

    monkeypatch.setattr(decoder, "run", run)
    good = [chat(q, temperature=0, max_tokens=6) for q in ("Name a tree.", "Say hello.", "Good morning.")]
    outcomes = tiny_engine.generate([good[0], poison, good[1], good[2]])
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert outcomes[1].error is not None and outcomes[1].error["code"] == "generation_error"
    assert "simulated kernel failure" in outcomes[1].error["message"]
