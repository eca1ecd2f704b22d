"""The batched decode loop: prefill in groups of similar length, then decode every row together.

Hand-written rather than ``model.generate`` so that each row keeps its own parameters, stop strings and
budget, and so that:

- prefill wastes no compute on padding: prompt processing is compute-bound, so rows are prefilled in
  groups of near-equal length (``packing.prefill_groups``: little padding, bounded tokens per group)
  and their caches are then left-padded into one batch; decoding is bound by reading the weights, so all
  rows share each step, which is where batching pays;
- a finished row stops costing compute: it is dropped from the batch and its KV cache at once
  (``DynamicCache.batch_select_indices``), and cache columns that are padding for every remaining row are
  cut off, so a short survivor does not keep paying for a long neighbour that has finished.

Position ids come from the attention mask, so a left-padded row sees the same positions as it would alone;
greedy outputs match one-at-a-time runs (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from inference.packing import prefill_groups
from inference.params import SamplingParams
from inference.sampling import Sampler, make_generator

STOP_WINDOW_SLACK = 8  # tokens decoded beyond the longest stop string when looking for one
PREFILL_TOKENS = {"cpu": 2048, "cuda": 16384}  # padded tokens per prefill group: bounds activation memory


@dataclass
class Row:
    """One request being decoded; ``output_ids`` and ``finish_reason`` are filled in by ``Decoder.run``."""

    prompt_ids: list[int]
    params: SamplingParams
    max_new_tokens: int
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None


class Decoder:
    """Runs rows of one micro-batch to completion on ``model``."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        eos_ids: set[int],
        pad_id: int,
        decode: Callable[[list[int]], str],
        vocab_size: int,
    ) -> None:
        self.model = model
        self.device = device
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.decode = decode
        self.vocab_size = vocab_size
        self.prefill_tokens = PREFILL_TOKENS.get(device.type, PREFILL_TOKENS["cuda"])
        # Caches can be stitched together only when every layer is a plain full-attention layer.
        layers = DynamicCache(config=model.config).layers
        self.mergeable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    @torch.inference_mode()
    def run(self, rows: list[Row]) -> None:
        """Decode every row until EOS, a stop string or its budget; fills ``output_ids``/``finish_reason``."""
        rows = sorted(rows, key=lambda r: len(r.prompt_ids))
        cache, mask, logits = self._prefill(rows)
        next_position = torch.tensor([len(r.prompt_ids) for r in rows], device=self.device)
        sampler = Sampler(
            [r.params for r in rows],
            [make_generator(r.params, self.device) for r in rows],
            [r.prompt_ids for r in rows],
            self.vocab_size,
            self.device,
        )
        live = list(rows)
        while True:
            tokens = sampler.choose(logits)
            sampler.observe(tokens)
            keep = [
                j
                for j, (row, token) in enumerate(zip(live, tokens.tolist(), strict=True))
                if self._step(row, token)
            ]
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                sampler.keep(index, keep)
                live = [live[j] for j in keep]
                tokens, mask, next_position = tokens[index], mask[index], next_position[index]
                mask = _trim_left_padding(cache, mask)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
            logits = self._forward(tokens[:, None], mask, next_position[:, None], cache)
            next_position = next_position + 1

    def _step(self, row: Row, token: int) -> bool:
        """Append ``token`` to ``row``; False when the row has finished."""
        row.output_ids.append(token)
        if token in self.eos_ids or self._hit_stop(row):
            row.finish_reason = "stop"
        elif len(row.output_ids) >= row.max_new_tokens:
            row.finish_reason = "length"
        return row.finish_reason is None

    def _hit_stop(self, row: Row) -> bool:
        """Whether a stop string appeared: only the tail is decoded, as one can only end at the last token."""
        if not row.params.stop:
            return False
        window = 4 * max(len(s) for s in row.params.stop) + STOP_WINDOW_SLACK
        tail = self.decode(row.output_ids[-window:])
        return any(s in tail for s in row.params.stop)

    def _prefill(self, rows: list[Row]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """Cache, attention mask and last-position logits of ``rows`` (sorted by prompt length)."""
        lengths = [len(r.prompt_ids) for r in rows]
        groups = prefill_groups(lengths, self.prefill_tokens) if self.mergeable else [list(range(len(rows)))]
        parts = []
        for group in groups:
            ids, mask = self._left_pad([rows[i].prompt_ids for i in group])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            cache = DynamicCache(config=self.model.config)
            parts.append((cache, mask, self._forward(ids, mask, positions, cache)))
        return parts[0] if len(parts) == 1 else self._merge(parts)

    def _merge(
        self, parts: list[tuple[DynamicCache, torch.Tensor, torch.Tensor]]
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """One left-padded batch cache from the groups' caches (padding columns are masked out)."""
        width = max(mask.shape[1] for _, mask, _ in parts)
        merged = DynamicCache(config=self.model.config)
        for index in range(len(parts[0][0].layers)):
            layers = [cache.layers[index] for cache, _, _ in parts]
            keys = [torch.nn.functional.pad(la.keys, (0, 0, width - la.keys.shape[2], 0)) for la in layers]
            values = [
                torch.nn.functional.pad(la.values, (0, 0, width - la.values.shape[2], 0)) for la in layers
            ]
            merged.update(torch.cat(keys), torch.cat(values), index)
        mask = torch.cat([torch.nn.functional.pad(m, (width - m.shape[1], 0)) for _, m, _ in parts])
        return merged, mask, torch.cat([logits for _, _, logits in parts])

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            if prompt:
                ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
                mask[i, width - len(prompt) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        """Logits of each row's last position (the only ones computed: prefill and decode alike)."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :]


def _trim_left_padding(cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
    """Cut cache columns that are padding for every remaining row (plain full-attention caches only)."""
    first = int(mask.any(dim=0).int().argmax())
    if first == 0 or not all(type(layer) is DynamicLayer for layer in cache.layers):
        return mask
    for layer in cache.layers:
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[:, :, first:, :]
            layer.values = layer.values[:, :, first:, :]
    return mask[:, first:]


def finish_text(row: Row, decode: Callable[[list[int]], str], eos_ids: set[int]) -> str:
    """The reply text: output without a final EOS, cut at the first stop string (which is not returned)."""
    ids = row.output_ids[:-1] if row.output_ids and row.output_ids[-1] in eos_ids else row.output_ids
    text = decode(ids)
    cuts = [i for i in (text.find(s) for s in row.params.stop) if i >= 0]
    return text[: min(cuts)] if cuts else text
