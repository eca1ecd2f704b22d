"""One error tree for limits/: a base a caller can catch, then the specific ones.

``InvalidArgument`` is also a ``ValueError`` so plain ``except ValueError`` keeps working; the "too large"
errors are not, because the arguments are well formed: they ask for something the limit can never grant.
"""

from __future__ import annotations


class LimitsError(Exception):
    """Base of every error raised by limits/."""


class InvalidArgument(LimitsError, ValueError):
    """A malformed argument (non-positive tokens, empty id, a brace in a model name...), caught before
    any round trip to Redis."""


class ReservationTooLarge(LimitsError):
    """A reservation larger than the whole cap: it could never be admitted, so waiting would be forever.

    The planner cuts micro-batches to fit the cap; seeing this means a plan and a cap disagree.
    """

    def __init__(self, tokens: int, cap: int, *, model: str, tenant: str | None = None) -> None:
        self.tokens = tokens
        self.cap = cap
        self.model = model
        self.tenant = tenant
        whose = f"model {model!r}" if tenant is None else f"tenant {tenant!r} on model {model!r}"
        super().__init__(
            f"reservation of {tokens} tokens can never fit the cap of {cap} tokens of {whose}; "
            f"cut it into pieces of at most {cap} tokens"
        )


class CostTooLarge(LimitsError):
    """A token-bucket cost larger than the bucket's capacity: the bucket could never hold enough."""

    def __init__(self, cost: int, capacity: int, *, key: str) -> None:
        self.cost = cost
        self.capacity = capacity
        self.key = key
        super().__init__(
            f"cost of {cost} tokens can never be taken from bucket {key!r} of capacity {capacity} tokens"
        )
