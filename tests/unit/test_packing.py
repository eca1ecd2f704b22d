"""Packing: every request lands in exactly one micro-batch, and the limits hold except for a lone giant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.packing import PackItem, pack, padding_ratio, prefill_groups

items_strategy = st.lists(st.tuples(st.integers(1, 3000), st.integers(1, 1000)), max_size=200).map(
    lambda rows: [PackItem(i, p, m) for i, (p, m) in enumerate(rows)]
)


@settings(max_examples=300, deadline=None)
@given(items=items_strategy, max_requests=st.integers(1, 64), max_tokens=st.integers(1, 20000))
def test_every_key_lands_in_exactly_one_batch_and_limits_hold(
    items: list[PackItem], max_requests: int, max_tokens: int
) -> None:
    batches = pack(items, max_requests, max_tokens)
    keys = [k for batch in batches for k in batch]
    assert sorted(keys) == sorted(it.key for it in items)
    by_key = {it.key: it for it in items}
    for batch in batches:
        assert batch, "no empty batches"
        assert len(batch) <= max_requests
        cost = sum(by_key[k].cost for k in batch)
        assert cost <= max_tokens or len(batch) == 1, "only a lone oversize item may exceed the token limit"


@settings(max_examples=200, deadline=None)
@given(items=items_strategy, max_requests=st.integers(1, 64), max_tokens=st.integers(1, 20000))
def test_batches_are_sorted_by_prompt_length(
    items: list[PackItem], max_requests: int, max_tokens: int
) -> None:
    lengths = [
        [next(it.prompt_tokens for it in items if it.key == k) for k in b]
        for b in pack(items, max_requests, max_tokens)
    ]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat)


def test_cuts_by_count_then_by_tokens() -> None:
    items = [PackItem(f"r{i}", 10 * (i + 1), 5) for i in range(6)]
    assert pack(items, max_requests=4, max_tokens=10_000) == [["r0", "r1", "r2", "r3"], ["r4", "r5"]]
    # costs 15, 25, 35, 45, 55, 65: cut whenever the next one would pass 70
    assert pack(items, max_requests=10, max_tokens=70) == [["r0", "r1"], ["r2"], ["r3"], ["r4"], ["r5"]]


def test_an_oversize_item_gets_a_batch_of_its_own() -> None:
    items = [PackItem("small", 10, 10), PackItem("giant", 5000, 100), PackItem("small2", 11, 10)]
    assert pack(items, max_requests=8, max_tokens=100) == [["small", "small2"], ["giant"]]


def test_sorting_cuts_padding_compared_with_input_order() -> None:
    lengths = [5, 400, 7, 390, 6, 410, 8, 395]
    items = [PackItem(i, n, 16) for i, n in enumerate(lengths)]
    packed = [[lengths[k] for k in b] for b in pack(items, max_requests=4, max_tokens=10_000)]
    in_order = [lengths[:4], lengths[4:]]
    assert padding_ratio(packed) < 0.1 < padding_ratio(in_order)


def test_padding_ratio() -> None:
    assert padding_ratio([]) == 0.0
    assert padding_ratio([[4, 4]]) == 0.0
    assert padding_ratio([[1, 3]]) == pytest.approx(1 - 4 / 6)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        pack([], max_requests=0, max_tokens=10)


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 600), max_size=80).map(sorted),
    max_tokens=st.integers(1, 4096),
    max_waste=st.floats(0.0, 0.5),
)
def test_prefill_groups_cover_every_row_in_order_within_limits(
    lengths: list[int], max_tokens: int, max_waste: float
) -> None:
    groups = prefill_groups(lengths, max_tokens, max_waste)
    assert [i for g in groups for i in g] == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        if len(group) > 1:
            assert len(group) * max(sizes) <= max_tokens
            assert padding_ratio([sizes]) <= max_waste + 1e-9


def test_prefill_groups_keep_equal_lengths_together_and_split_outliers() -> None:
    assert prefill_groups([10, 10, 10, 11, 40, 41], max_tokens=1000) == [[0, 1, 2, 3], [4, 5]]
    assert prefill_groups([10] * 5, max_tokens=20) == [[0, 1], [2, 3], [4]]
