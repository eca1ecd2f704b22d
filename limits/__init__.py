"""The Redis token budget and token buckets. Imports nothing else of tokenbatch.

``TokenBudget`` caps the tokens enqueued per model (and optionally per tenant) with leased reservations;
``TokenBucket`` limits rates. Both run their arithmetic in Lua scripts on Redis's clock (``limits/lua``).
"""

from limits.bucket import BucketResult, TokenBucket
from limits.budget import BudgetStats, Reason, Reservation, TokenBudget
from limits.errors import CostTooLarge, InvalidArgument, LimitsError, ReservationTooLarge
from limits.keys import MODELS_KEY, ModelKeys, bucket_key, model_keys, model_tag

__all__ = [
    "MODELS_KEY",
    "BucketResult",
    "BudgetStats",
    "CostTooLarge",
    "InvalidArgument",
    "LimitsError",
    "ModelKeys",
    "Reason",
    "Reservation",
    "ReservationTooLarge",
    "TokenBucket",
    "TokenBudget",
    "bucket_key",
    "model_keys",
    "model_tag",
]
