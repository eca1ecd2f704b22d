"""Choosing the next token for each row of a batch, each row with its own parameters and generator.

Why not ``model.generate``: it takes one set of sampling parameters and one RNG for the whole batch, so
per-request temperature, top_p, top_k, penalties and seeds would need one batch per distinct setting.
Here the arithmetic is vectorised over rows (per-row temperature, top-k, top-p, min-p as tensors) and only
the final draw is per row, with that request's own ``torch.Generator``: a request's random stream is
consumed by nothing else, so the same seed gives the same output whatever shares its batch.
Order of operations follows transformers: bias and penalties, then temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from inference.params import SamplingParams


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """A generator seeded by the request (or at random when it has no seed); None when greedy."""
    if params.greedy:
        return None
    seed = params.seed % 2**64 if params.seed is not None else secrets.randbits(63)
    return torch.Generator(device=device).manual_seed(seed)


class Sampler:
    """Per-row logit processing and token choice for the rows still decoding."""

    def __init__(
        self,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
        prompts: Sequence[Sequence[int]],
        vocab_size: int,
        device: torch.device,
    ) -> None:
        self.params = list(params)
        self.generators = list(generators)
        rows = len(self.params)
        self.plain_greedy = all(p.greedy and not p.penalized and not p.logit_bias for p in self.params)
        f32 = {"device": device, "dtype": torch.float32}
        self.temperature = torch.tensor([p.temperature or 1.0 for p in self.params], **f32)
        self.top_k = torch.tensor([p.top_k for p in self.params], device=device)
        self.top_p = torch.tensor([p.top_p for p in self.params], **f32)
        self.min_p = torch.tensor([p.min_p for p in self.params], **f32)
        self.bias: torch.Tensor | None = None
        if any(p.logit_bias for p in self.params):
            self.bias = torch.zeros(rows, vocab_size, **f32)
            for row, p in enumerate(self.params):
                for token, value in p.logit_bias:
                    self.bias[row, token] = value
        self.counts: torch.Tensor | None = None  # generated-token counts, for presence/frequency penalties
        if any(p.presence_penalty or p.frequency_penalty for p in self.params):
            self.counts = torch.zeros(rows, vocab_size, **f32)
            self.presence = torch.tensor([p.presence_penalty for p in self.params], **f32)[:, None]
            self.frequency = torch.tensor([p.frequency_penalty for p in self.params], **f32)[:, None]
        self.seen: torch.Tensor | None = None  # prompt + generated tokens, for the repetition penalty
        if any(p.repetition_penalty != 1.0 for p in self.params):
            self.seen = torch.zeros(rows, vocab_size, dtype=torch.bool, device=device)
            for row, ids in enumerate(prompts):
                self.seen[row, torch.tensor(list(ids), dtype=torch.long, device=device)] = True
            self.repetition = torch.tensor([p.repetition_penalty for p in self.params], **f32)[:, None]

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token id per row, from last-position logits ``[rows, vocab]``."""
        if self.plain_greedy:
            return logits.argmax(dim=-1)
        x = logits.float()
        if self.bias is not None:
            x = x + self.bias
        if self.counts is not None:
            x = x - self.presence * (self.counts > 0) - self.frequency * self.counts
        if self.seen is not None:
            penalised = torch.where(x > 0, x / self.repetition, x * self.repetition)
            x = torch.where(self.seen, penalised, x)
        chosen = x.argmax(dim=-1)
        sampled = [row for row, p in enumerate(self.params) if not p.greedy]
        if sampled:
            index = torch.tensor(sampled, device=x.device)
            chosen[index] = self._sample(x[index], index, sampled)
        return chosen

    def _sample(self, x: torch.Tensor, index: torch.Tensor, rows: list[int]) -> torch.Tensor:
        x = x / self.temperature[index, None]
        values, order = x.sort(dim=-1, descending=True)
        rank = torch.arange(values.shape[-1], device=x.device)[None, :]
        top_k = self.top_k[index, None]
        values = values.masked_fill((top_k > 0) & (rank >= top_k), float("-inf"))
        probs = values.softmax(dim=-1)
        # top-p keeps the smallest prefix whose mass reaches p (always at least the first token)
        values = values.masked_fill(probs.cumsum(dim=-1) - probs > self.top_p[index, None], float("-inf"))
        values = values.masked_fill(probs < self.min_p[index, None] * probs[:, :1], float("-inf"))
        probs = values.softmax(dim=-1)
        picks = [torch.multinomial(probs[j], 1, generator=self.generators[row]) for j, row in enumerate(rows)]
        return order.gather(1, torch.stack(picks)).squeeze(1)

    def observe(self, tokens: torch.Tensor) -> None:
        """Record the tokens just chosen (for the penalties that depend on them)."""
        if self.counts is None and self.seen is None:
            return  # no penalties in this micro-batch: nothing to record, no tensor to build per step
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        if self.counts is not None:
            self.counts[rows, tokens] += 1
        if self.seen is not None:
            self.seen[rows, tokens] = True

    def keep(self, index: torch.Tensor, rows: list[int]) -> None:
        """Keep only the rows ``rows`` (``index`` as a tensor), dropping those that finished."""
        self.params = [self.params[r] for r in rows]
        self.generators = [self.generators[r] for r in rows]
        self.temperature, self.top_k = self.temperature[index], self.top_k[index]
        self.top_p, self.min_p = self.top_p[index], self.min_p[index]
        if self.bias is not None:
            self.bias = self.bias[index]
        if self.counts is not None:
            self.counts = self.counts[index]
            self.presence, self.frequency = self.presence[index], self.frequency[index]
        if self.seen is not None:
            self.seen = self.seen[index]
            self.repetition = self.repetition[index]
