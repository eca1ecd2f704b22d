"""Length-aware packing of requests into micro-batches: sort by prompt length, cut by count and tokens.

Requests of similar prompt length share a batch, so left padding wastes little compute. Pure Python, no
torch: the control worker plans with it and the engine re-checks a micro-batch with it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

PREFILL_MAX_WASTE = 0.1  # share of padding allowed in one prefill group


@dataclass(frozen=True)
class PackItem:
    """One request to place: ``cost = prompt_tokens + max_tokens`` counts against a batch's token limit."""

    key: Hashable
    prompt_tokens: int
    max_tokens: int

    @property
    def cost(self) -> int:
        return self.prompt_tokens + self.max_tokens


def pack(items: Sequence[PackItem], max_requests: int, max_tokens: int) -> list[list[Hashable]]:
    """Keys cut into micro-batches of at most ``max_requests`` items and ``max_tokens`` summed cost.

    Every key lands in exactly one batch. An item whose cost alone exceeds ``max_tokens`` gets a batch of
    its own (whether it fits the model's context is the caller's check). Batches come out shortest first;
    within a batch, keys are in ascending prompt length (ties keep input order).
    """
    if max_requests < 1 or max_tokens < 1:
        raise ValueError("max_requests and max_tokens must be >= 1")
    batches: list[list[Hashable]] = []
    current: list[Hashable] = []
    used = 0
    for item in sorted(items, key=lambda it: (it.prompt_tokens, it.max_tokens)):
        if current and (len(current) >= max_requests or used + item.cost > max_tokens):
            batches.append(current)
            current, used = [], 0
        current.append(item.key)
        used += item.cost
    if current:
        batches.append(current)
    return batches


def padding_ratio(batches: Sequence[Sequence[int]]) -> float:
    """Share of prompt positions that are padding when each batch is left-padded to its longest prompt."""
    padded = sum(len(b) * max(b) for b in batches if b)
    real = sum(sum(b) for b in batches)
    return 0.0 if padded == 0 else 1.0 - real / padded


def prefill_groups(
    lengths: list[int], max_tokens: int, max_waste: float = PREFILL_MAX_WASTE
) -> list[list[int]]:
    """Cut ascending prompt ``lengths`` into runs (lists of indexes) to prefill together.

    A run's left-padded size (count x longest) stays within ``max_tokens`` and its padding share within
    ``max_waste``; a prompt alone over ``max_tokens`` gets a run of its own.
    """
    groups: list[list[int]] = []
    total = 0
    for i, length in enumerate(lengths):
        if groups:
            size = len(groups[-1]) + 1
            padded = size * length
            if padded <= max_tokens and 1 - (total + length) / padded <= max_waste:
                groups[-1].append(i)
                total += length
                continue
        groups.append([i])
        total = length
    return groups
