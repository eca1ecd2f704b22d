"""Inference benchmark: the engine's micro-batched path against one request at a time, SmolLM2-135M on CPU.

Not a test. Prints time-to-load (first load converts the GGUF; a second load reuses the converted folder),
tokens/s one-at-a-time and micro-batched, padding waste, a check that greedy outputs agree, and the line
``batched/sequential: X.XX``. For reference it also runs the plain approach (``model.generate`` on
length-sorted, left-padded batches of the same size) on the same loaded model.

    python bench/inference.py [--prompts 64] [--new-tokens 32] [--batch 16] [--no-plain]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the package it measures: drop its folder from the path so that `import inference`
# finds the package (installed, or the repository root beside this folder), not this script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "How do I boil an egg?",
    "Explain what a hash table is.",
    "Give me three tips for better sleep.",
    "Why is the sky blue?",
    "What does a compiler do?",
    "Summarise the plot of Romeo and Juliet.",
    "How do vaccines work?",
    "Suggest a name for a grey cat.",
    "What is the difference between weather and climate?",
    "How should I prepare for a job interview?",
    "Translate 'good morning, how are you?' into French.",
    "What are the rules of tic-tac-toe?",
    "Describe how a bicycle gear works.",
    "What is photosynthesis?",
]
CONTEXT = [
    "I am asking for a school project and the teacher wants plain language.",
    "Please keep in mind that I am a beginner and have never studied this before.",
    "Earlier today I read a long article about it, but it used too many technical words.",
    "My friend told me something different, so I want to check which version is right.",
    "If there are common misconceptions, mention them and say why people believe them.",
    "An example from everyday life would help me remember the idea.",
    "I would also like to know where I can learn more, such as books or courses.",
    "Please structure the answer with a short introduction and a conclusion.",
]
CONTEXT_SENTENCES = [0, 0, 1, 2, 3, 5, 8, 12]  # cycled: prompts from ~40 to ~250 tokens


def make_requests(n: int, new_tokens: int) -> list[dict[str, Any]]:
    """``n`` chats of mixed length (some multi-turn), greedy, ``new_tokens`` each."""
    out = []
    for i in range(n):
        sentences = CONTEXT_SENTENCES[(i * 5) % len(CONTEXT_SENTENCES)]
        context = " ".join(CONTEXT[(i + j) % len(CONTEXT)] for j in range(sentences))
        messages = [{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} {context}".strip()}]
        if i % 7 == 3:
            messages = [
                {"role": "user", "content": QUESTIONS[(i + 1) % len(QUESTIONS)]},
                {"role": "assistant", "content": "Here is a short answer. " + CONTEXT[i % len(CONTEXT)]},
                *messages,
            ]
        out.append({"messages": messages, "temperature": 0, "max_tokens": new_tokens})
    return out


def completion_tokens(outcomes: list[Any]) -> int:
    return sum(o.body["usage"]["completion_tokens"] for o in outcomes)


def replies(outcomes: list[Any]) -> list[str]:
    return [o.body["choices"][0]["message"]["content"] for o in outcomes]


def plain_generate(
    engine: Any, requests: list[dict[str, Any]], batch: int, new_tokens: int
) -> tuple[int, float]:
    """The plain script: ``model.generate`` on length-sorted left-padded batches; (tokens, seconds)."""
    import torch

    ids = engine.counter.prompt_ids(requests)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        chunk = [ids[i] for i in order[start : start + batch]]
        width = max(map(len, chunk))
        input_ids = torch.tensor([[engine.pad_id] * (width - len(c)) + c for c in chunk])
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk])
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=engine.pad_id,
            )
        for row in out[:, width:].tolist():
            ends = [j for j, t in enumerate(row) if t in engine.eos_ids]
            tokens += ends[0] + 1 if ends else len(row)
    return tokens, time.perf_counter() - started


def timed(engine: Any, requests: list[dict[str, Any]], batch: int) -> tuple[list[Any], float]:
    """Outcomes and seconds of ``engine.generate`` in micro-batches of ``batch`` (1: a call per request)."""
    engine.spec = dataclasses.replace(engine.spec, max_batch_requests=batch)
    started = time.perf_counter()
    outcomes = [engine.generate([r])[0] for r in requests] if batch == 1 else engine.generate(requests)
    return outcomes, time.perf_counter() - started


def rate(label: str, tokens: int, seconds: float) -> float:
    print(f"{label:<46} {tokens} tokens in {seconds:6.1f} s = {tokens / seconds:6.1f} tok/s")
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--batch", default="16,64", help="micro-batch sizes (max_batch_requests); the first is the headline"
    )
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-plain", action="store_true", help="skip the model.generate reference")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch.split(",")]

    import torch

    from inference.engine import load_engine
    from inference.packing import PackItem, pack, padding_ratio, prefill_groups
    from inference.smollm2 import smollm2_spec

    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cpus, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    cache = Path(tempfile.mkdtemp(prefix="tokenbatch-bench-"))
    try:
        spec = smollm2_spec(dtype=args.dtype, max_batch_tokens=1_000_000)
        started = time.perf_counter()
        load_engine(spec, cache)
        first = time.perf_counter() - started
        started = time.perf_counter()
        engine = load_engine(spec, cache)
        cached = time.perf_counter() - started
        print(f"time to load, first (converts the GGUF): {first:6.1f} s")
        print(f"time to load, cached folder:             {cached:6.1f} s")

        requests = make_requests(args.prompts, args.new_tokens)
        lengths = engine.counter.count_prompts(requests)
        print(
            f"{len(requests)} prompts, prompt tokens min/mean/max {min(lengths)}/"
            f"{sum(lengths) / len(lengths):.0f}/{max(lengths)}, {args.new_tokens} new tokens, greedy, "
            f"{engine.device} {next(engine.model.parameters()).dtype}"
        )
        timed(engine, requests[:4], 4)  # warm-up: first calls pay for kernel selection

        sequential, seconds = timed(engine, requests, 1)
        seq_rate = rate("sequential (engine, one at a time):", completion_tokens(sequential), seconds)
        rates = {}
        items = [PackItem(i, n, args.new_tokens) for i, n in enumerate(lengths)]
        cap = engine.decoder.prefill_tokens  # the engine's own prefill groups
        for size in sizes:
            batched, seconds = timed(engine, requests, size)
            rates[size] = rate(
                f"batched (engine, micro-batches of {size}):", completion_tokens(batched), seconds
            )
            same = sum(a == b for a, b in zip(replies(sequential), replies(batched), strict=True))
            print(f"  greedy replies identical alone and batched: {same}/{len(requests)}")
            micro = [sorted(lengths[k] for k in b) for b in pack(items, size, spec.max_batch_tokens)]
            in_order = [lengths[i : i + size] for i in range(0, len(lengths), size)]
            groups = [[m[i] for i in g] for m in micro for g in prefill_groups(m, cap)]
            print(
                f"  padding waste (share of prompt positions): micro-batches in input order "
                f"{padding_ratio(in_order):.1%}, sorted {padding_ratio(micro):.1%}; "
                f"engine prefill groups {padding_ratio(groups):.1%}"
            )
        headline = sizes[0]
        if not args.no_plain:
            plain_tokens, plain_s = plain_generate(engine, requests, headline, args.new_tokens)
            plain = rate(f"plain model.generate, sorted batches of {headline}:", plain_tokens, plain_s)
            print(f"plain/sequential: {plain / seq_rate:.2f}")
            print(f"engine/plain (batches of {headline}): {rates[headline] / plain:.2f}")
        for size in sizes[1:]:
            print(f"batched/sequential with micro-batches of {size}: {rates[size] / seq_rate:.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"batched/sequential: {rates[headline] / seq_rate:.2f}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
