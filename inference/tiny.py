"""A tiny Llama-style chat model built from local text in seconds, for tests and offline demos.

Random weights give degenerate text (every prompt the same reply), which would make the batch-equivalence
test vacuous; a few seconds of training on the exchanges in ``data/tiny_chats.tsv`` make greedy replies
depend on the prompt. Everything is saved with ``save_pretrained`` so it loads through the same
``from_pretrained`` path as a real model. Seeded: the same machine builds the same model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CONTEXT_LENGTH = 512
DATA = Path(__file__).parent / "data"


def build_tiny_model(out: Path, *, steps: int = 60, seed: int = 0) -> Path:
    """Train tokenizer and model into ``out`` (created) and return it; about 3 s on 2 CPU cores."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = _pairs()
    template = (DATA / "tiny_chat_template.jinja").read_text(encoding="utf-8").strip()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer([q + "\n" + a for q, a in pairs]),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = template
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT_LENGTH,
        pad_token_id=ids[0],
        bos_token_id=ids[1],
        eos_token_id=ids[2],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        + a
        + "<|im_end|>\n"
        for q, a in pairs
    ]
    _train(model, tokenizer, texts, steps=steps)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[1], eos_token_id=ids[2], pad_token_id=ids[0], do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _pairs() -> list[tuple[str, str]]:
    text = (DATA / "tiny_chats.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return [(q, a) for q, a in rows]


def _train_tokenizer(texts: list[str]) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _train(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, steps: int
) -> None:
    """Full-batch AdamW on every token of every exchange; loss ignores padding.

    One thread: these matmuls are too small to gain from two, and on a busy machine (tests beside other
    tests) a second OpenMP thread made training up to five times slower. Results do not depend on it.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _fit(model, tokenizer, texts, steps=steps)
    finally:
        torch.set_num_threads(threads)


def _fit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], *, steps: int) -> None:
    import torch

    enc = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.1)
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    model.config.tiny_train_loss = round(float(loss.detach()), 4)
    model.config.tiny_train_seconds = round(time.perf_counter() - started, 2)
