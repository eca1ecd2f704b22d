"""Leases: who is validating or aggregating a batch right now (stage leases), or dispatching a model.

A worker takes the lease, renews it from a heartbeat, and lets it go at the end; a worker that dies
stops renewing, the lease lapses, and the sweep sends the stage again. Finding a live lease held by
another worker, a redelivered task steps aside.
"""

from __future__ import annotations

import secrets

import redis

from scheduler import keys
from scheduler.scripts import script


class Lease:
    """A lease on ``key`` under a token of our own: only its holder renews or releases it."""

    def __init__(self, client: redis.Redis, key: str, seconds: float) -> None:
        self.r = client
        self.key = key
        self.ms = int(seconds * 1000)
        self.token = secrets.token_hex(8)

    def acquire(self) -> bool:
        return bool(script(self.r, "lease")(keys=[self.key], args=[self.token, self.ms]))

    renew = acquire

    def release(self) -> None:
        script(self.r, "unlock")(keys=[self.key], args=[self.token])


class StageLease(Lease):
    def __init__(self, client: redis.Redis, batch_id: str, stage: str, seconds: float) -> None:
        super().__init__(client, keys.stage_lease(batch_id, stage), seconds)


def lease_held(client: redis.Redis, batch_id: str, stage: str) -> bool:
    return bool(client.exists(keys.stage_lease(batch_id, stage)))
