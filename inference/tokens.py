"""Prompt token counting with the model's tokenizer and chat template, and no weights and no torch.

The engine builds its input ids with the same ``HFTokenCounter.prompt_ids``, so a count made on the control
worker equals the length of the ids the model is fed. Encoding is one ``encode_batch`` call (Rust,
parallel), so 50,000 short chats take seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from inference.chat import ChatTemplate, parse_messages
from inference.errors import ModelNotAvailable, RequestError
from inference.registry import ModelSpec, converted_dir, default_cache_dir, locate


class TokenCounter(Protocol):
    """Counts prompt tokens exactly as the engine of the same model will feed them."""

    def count_prompts_or_errors(self, bodies: Sequence[dict[str, Any]]) -> list[int | RequestError]:
        """One count per body, or the request's error (bad messages) in its place."""
        ...

    def count_prompts(self, bodies: Sequence[dict[str, Any]]) -> list[int]:
        """One count per body; raises the first body's ``RequestError``, its index in the message."""
        ...


class _CountMixin:
    def count_prompts_or_errors(self, bodies: Sequence[dict[str, Any]]) -> list[int | RequestError]:
        raise NotImplementedError

    def count_prompts(self, bodies: Sequence[dict[str, Any]]) -> list[int]:
        counts = self.count_prompts_or_errors(bodies)
        for i, count in enumerate(counts):
            if isinstance(count, RequestError):
                raise type(count)(f"request {i}: {count.message}", param=count.param, code=count.code)
        return [c for c in counts if isinstance(c, int)]


class HFTokenCounter(_CountMixin):
    """A ``tokenizer.json`` (the ``tokenizers`` library) plus the folder's chat template."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelNotAvailable(
                f"{folder} has no tokenizer.json (a fast tokenizer saved by save_pretrained)"
            )
        self.folder = folder
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.template = ChatTemplate.from_folder(folder)
        eos = self.template.special_tokens.get("eos_token")
        self.eos_token_id: int | None = self.tokenizer.token_to_id(eos) if eos else None
        pad = self.template.special_tokens.get("pad_token")
        self.pad_token_id: int | None = self.tokenizer.token_to_id(pad) if pad else None

    def prompt_texts(self, bodies: Sequence[dict[str, Any]]) -> list[str | RequestError]:
        out: list[str | RequestError] = []
        for body in bodies:
            try:
                out.append(self.template.render(parse_messages(body)))
            except RequestError as exc:
                out.append(exc)
        return out

    def prompt_ids(self, bodies: Sequence[dict[str, Any]]) -> list[list[int] | RequestError]:
        """The ids the engine feeds the model per body (template, generation prompt, no extra BOS)."""
        texts = self.prompt_texts(bodies)
        good = [t for t in texts if isinstance(t, str)]
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        encoded = iter(encode(good, add_special_tokens=False)) if good else iter(())
        return [t if isinstance(t, RequestError) else next(encoded).ids for t in texts]

    def count_prompts_or_errors(self, bodies: Sequence[dict[str, Any]]) -> list[int | RequestError]:
        return [ids if isinstance(ids, RequestError) else len(ids) for ids in self.prompt_ids(bodies)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


class DryRunCounter(_CountMixin):
    """Deterministic and cheap: about four UTF-8 bytes a token, plus a few per message. For load tests."""

    def count_prompts_or_errors(self, bodies: Sequence[dict[str, Any]]) -> list[int | RequestError]:
        out: list[int | RequestError] = []
        for body in bodies:
            try:
                messages = parse_messages(body)
            except RequestError as exc:
                out.append(exc)
                continue
            out.append(3 + sum(4 + (len(m["content"].encode()) + 3) // 4 for m in messages))
        return out


def load_counter(spec: ModelSpec, cache_dir: Path | None = None) -> TokenCounter:
    """The counter for ``spec``: the dry-run one for ``engine = "dry-run"``, else the model's tokenizer."""
    if spec.engine == "dry-run":
        return DryRunCounter()
    return HFTokenCounter(tokenizer_folder(spec, cache_dir or default_cache_dir()))


def tokenizer_folder(spec: ModelSpec, cache_dir: Path) -> Path:
    """A folder with ``tokenizer.json`` and the chat template for ``spec``, converting a GGUF's if needed.

    A GGUF model's tokenizer comes from the converted folder when the engine made one; else only the
    tokenizer is converted, in a child process so this process never imports torch.
    """
    located = locate(spec)
    if located.kind == "folder":
        return located.path
    full = converted_dir(located.path, cache_dir)
    if (full / "tokenizer.json").is_file():
        return full
    only = full.with_name(full.name + ".tokenizer")
    if not (only / "tokenizer.json").is_file():
        cmd = [sys.executable, "-m", "inference.convert", "tokenizer", str(located.path), str(only)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ModelNotAvailable(
                f"model {spec.id!r}: converting the GGUF tokenizer failed: {done.stderr[-2000:]}"
            )
    return only


def read_generation_eos(folder: Path) -> set[int]:
    """End-of-sequence ids named by ``generation_config.json`` and ``config.json`` (int or list)."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            ids.update(value if isinstance(value, list) else [value] if isinstance(value, int) else [])
    return ids
