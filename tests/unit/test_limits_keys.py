"""Keys of limits/: one hash tag per model, one slot per model, nothing ambiguous."""

from __future__ import annotations

import dataclasses

import pytest
from redis.crc import key_slot

from limits import InvalidArgument, bucket_key, model_keys, model_tag
from limits.keys import MODELS_KEY

MODELS = ["HuggingFaceTB/SmolLM2-135M-Instruct", "m", "llama:3.1 8b", "ünïcode-模型"]


@pytest.mark.parametrize("model", MODELS)
def test_every_key_of_a_model_carries_its_hash_tag(model: str) -> None:
    tag = model_tag(model)
    assert tag == "{m:" + model + "}"
    for key in dataclasses.astuple(model_keys(model)):
        assert tag in key
        # Redis hashes the text between the first '{' and the next '}': it must be exactly the tag.
        start = key.index("{")
        assert key[start : key.index("}", start) + 1] == tag


@pytest.mark.parametrize("model", MODELS)
def test_one_models_keys_share_one_cluster_slot(model: str) -> None:
    keys = model_keys(model)
    slots = {key_slot(key.encode()) for key in keys.all}
    assert len(slots) == 1
    assert len(set(keys.all)) == len(keys.all) == 6


def test_the_scripts_key_lists_are_in_the_documented_order() -> None:
    keys = model_keys("m")
    assert keys.holding == [keys.enqueued, keys.tokens, keys.leases, keys.tenants, keys.tenant_enqueued]
    assert keys.all == [*keys.holding, keys.cap]


def test_different_models_never_share_a_key() -> None:
    a, b = model_keys("a"), model_keys("a:enqueued")
    assert not set(a.all) & set(b.all)
    assert MODELS_KEY not in a.all


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "{x}", None, 3, b"m", "x" * 513])
def test_a_model_name_that_would_break_the_tag_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        model_keys(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
        model_tag(bad)  # type: ignore[arg-type]


def test_bucket_keys_are_tagged_and_checked() -> None:
    key = bucket_key("tenant:acme:model:x")
    assert key.endswith("{b:tenant:acme:model:x}")
    assert bucket_key("a") != bucket_key("b")
    with pytest.raises(InvalidArgument):
        bucket_key("a{b}")
