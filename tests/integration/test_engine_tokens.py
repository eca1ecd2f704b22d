"""Token counts: what the control worker counts is exactly what the engine feeds the model and bills."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from inference.engine import Engine
from inference.registry import ModelSpec
from inference.tokens import load_counter

BODIES = [
    {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 3},
    {
        "messages": [{"role": "user", "content": "What is the capital of Spain? " * 6}],
        "temperature": 0,
        "max_tokens": 3,
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name an animal."},
            {"role": "assistant", "content": "A fox."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Another"}, {"type": "text", "text": "one?"}],
            },
        ],
        "temperature": 0,
        "max_tokens": 3,
    },
    {
        "messages": [{"role": "user", "content": "Ünïcode ✓ and <|im_end|> inside"}],
        "temperature": 0,
        "max_tokens": 3,
    },
]


def test_counts_equal_the_ids_the_engine_feeds_the_model(tiny_engine: Engine, tiny_spec: ModelSpec) -> None:
    fed: list[list[int]] = []

    def capture(_module: torch.nn.Module, _args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        if ids.shape[1] > 1:  # the prefill, not a decode step
            fed.extend(row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True))

    model = tiny_engine.model  # type: ignore[attr-defined]
    handle = model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        outcomes = tiny_engine.generate(BODIES)
    finally:
        handle.remove()
    counts = load_counter(tiny_spec).count_prompts(BODIES)
    billed = [o.body["usage"]["prompt_tokens"] for o in outcomes if o.body]
    assert billed == counts
    assert sorted(len(ids) for ids in fed) == sorted(counts)
    expected = tiny_engine.counter.prompt_ids(BODIES)  # type: ignore[attr-defined]
    assert sorted(fed) == sorted(expected)


def test_counts_match_transformers_apply_chat_template(tiny_model_dir: Path, tiny_spec: ModelSpec) -> None:
    from transformers import AutoTokenizer

    from inference.chat import parse_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reference = [
        tokenizer.apply_chat_template(parse_messages(b), add_generation_prompt=True, return_dict=False)
        for b in BODIES
    ]
    ours = load_counter(tiny_spec).prompt_ids(BODIES)  # type: ignore[attr-defined]
    assert ours == reference
    bos = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert all(ids[:2] != [bos, bos] for ids in ours), "no doubled BOS"


def test_the_counter_works_without_torch(tiny_models_file: Path) -> None:
    code = (
        "import sys\n"
        "from inference.registry import load_models\n"
        "from inference.tokens import load_counter\n"
        f"spec = load_models({str(tiny_models_file)!r})['tiny']\n"
        "body = {'messages': [{'role': 'user', 'content': 'hi'}]}\n"
        "counts = load_counter(spec).count_prompts([body] * 1000)\n"
        "assert len(counts) == 1000 and counts[0] > 3, counts[:3]\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
