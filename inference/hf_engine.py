"""The transformers engine: a Hugging Face causal LM loaded once, micro-batches run through ``Decoder``.

Loading goes through ``AutoModelForCausalLM.from_pretrained`` with ``local_files_only`` (nothing is ever
downloaded; a GGUF is converted once into ``cache_dir`` first). Prompt ids come from the same
``HFTokenCounter`` the control worker counts with, so usage equals the planned count.
A micro-batch that raises (out of memory, a kernel error) is split in halves and retried, down to single
requests, so one bad request gets its own error and its neighbours still get answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from inference.convert import ensure_converted
from inference.decode import Decoder, Row, finish_text
from inference.engine import Engine, Outcome, Prepared, completion_body, prepare
from inference.errors import RequestError
from inference.packing import PackItem, pack
from inference.registry import ModelSpec, default_cache_dir, locate
from inference.tokens import HFTokenCounter, read_generation_eos

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    """One model on one device; ``generate`` re-packs its input by the spec's micro-batch limits."""

    def __init__(
        self, spec: ModelSpec, model: torch.nn.Module, counter: HFTokenCounter, folder: Path
    ) -> None:
        self.spec = spec
        self.model = model
        self.counter = counter
        self.device = next(model.parameters()).device
        self.eos_ids = read_generation_eos(folder) | ({counter.eos_token_id} - {None})
        pad = counter.pad_token_id if counter.pad_token_id is not None else model.config.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.decoder = Decoder(model, self.device, self.eos_ids, self.pad_id, counter.decode, self.vocab_size)
        self.load_seconds = 0.0

    @classmethod
    def load(cls, spec: ModelSpec, cache_dir: Path | None = None) -> TransformersEngine:
        """Locate (and if GGUF, convert once), then load tokenizer and weights onto the spec's device."""
        started = time.perf_counter()
        located = locate(spec)
        folder = (
            located.path
            if located.kind == "folder"
            else ensure_converted(located.path, cache_dir or default_cache_dir())
        )
        device = resolve_device(spec.device)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=resolve_dtype(spec.dtype, device),
            local_files_only=True,
            **({"attn_implementation": spec.attn_implementation} if spec.attn_implementation else {}),
        )
        model.to(device).eval()
        engine = cls(spec, model, HFTokenCounter(folder), folder)
        engine.load_seconds = time.perf_counter() - started
        log.info("loaded %s from %s on %s in %.1fs", spec.id, folder, device, engine.load_seconds)
        return engine

    def generate(self, requests: Sequence[dict[str, Any]]) -> list[Outcome]:
        prepared = prepare(requests, self.spec, self.counter.prompt_ids(requests), self.vocab_size)
        outcomes: list[Outcome | None] = [
            Outcome.failed(p) if isinstance(p, RequestError) else None for p in prepared
        ]
        good = {p.index: p for p in prepared if isinstance(p, Prepared)}
        items = [PackItem(i, p.prompt_tokens, p.max_new_tokens) for i, p in good.items()]
        for keys in pack(items, self.spec.max_batch_requests, self.spec.max_batch_tokens):
            self._run_guarded([good[k] for k in keys], outcomes)
        return [
            o if o is not None else Outcome(None, {"code": "internal_error", "message": "no result"})
            for o in outcomes
        ]

    def _run_guarded(self, batch: list[Prepared], outcomes: list[Outcome | None]) -> None:
        try:
            results = self._run(batch)
        except Exception as exc:  # one request's failure must not take its neighbours down
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                log.warning("micro-batch of %d failed (%s); retrying in halves", len(batch), exc)
                half = len(batch) // 2
                self._run_guarded(batch[:half], outcomes)
                self._run_guarded(batch[half:], outcomes)
            else:
                log.exception("request failed during generation")
                outcomes[batch[0].index] = Outcome(
                    None,
                    {
                        "code": "generation_error",
                        "message": f"generation failed: {type(exc).__name__}: {exc}",
                    },
                )
            return
        for prep, outcome in zip(batch, results, strict=True):
            outcomes[prep.index] = outcome

    def _run(self, batch: list[Prepared]) -> list[Outcome]:
        rows = [Row(p.prompt_ids, p.params, p.max_new_tokens) for p in batch]
        self.decoder.run(rows)
        return [
            Outcome(
                completion_body(
                    self.spec,
                    finish_text(row, self.counter.decode, self.eos_ids),
                    row.finish_reason or "length",
                    prep.prompt_tokens,
                    len(row.output_ids),
                ),
                None,
            )
            for prep, row in zip(batch, rows, strict=True)
        ]


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 on the CPU (bf16 matmuls are slow on most CPUs)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)
