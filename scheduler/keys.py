"""Every Redis key of the control plane, built here and nowhere else.

A batch's keys share the hash tag ``{b:<id>}`` and a model's dispatch keys share ``{m:<model>}`` (the
same tag the token budget in ``limits`` uses), so each Lua script touches one slot and runs on Redis
Cluster. Indexes that span tenants or batches (lists for the API, the active set for the sweep) are
plain keys written next to, never inside, a script.
"""

from __future__ import annotations

P = "tb"


def _b(batch_id: str) -> str:
    return f"{P}:{{b:{batch_id}}}"


def _m(model: str) -> str:
    return f"{P}:{{m:{model}}}"


# Files
def file(file_id: str) -> str:
    return f"{P}:file:{file_id}"


def tenant_files(tenant: str) -> str:
    return f"{P}:files:{tenant}"  # zset: file id -> created (ms), newest first by ZREVRANGE


def tenant_checksums(tenant: str) -> str:
    return f"{P}:files-sha256:{tenant}"  # hash: SHA-256 of an upload that announced it -> file id


def expiring_files() -> str:
    return f"{P}:files-expiring"  # zset: file id -> expires_at (epoch s), the sweep deletes what is past due


def upload_signing_secret() -> str:
    return f"{P}:upload-signing-secret"  # random HMAC secret for signed upload URLs, made once


def upload_token(token_id: str) -> str:
    return f"{P}:upload:{token_id}"  # single-use marker for signed upload URLs


# Batches
def batch(batch_id: str) -> str:
    return f"{_b(batch_id)}:batch"  # hash: the batch record and its live counters


def microbatches(batch_id: str) -> str:
    return f"{_b(batch_id)}:mb"  # hash: index -> "pending" | "run:<attempt>" | "done:<attempt>" | "drop"


def microbatch_attempts(batch_id: str) -> str:
    return f"{_b(batch_id)}:mbattempts"  # hash: index -> dispatches so far


def microbatch_meta(batch_id: str) -> str:
    return f"{_b(batch_id)}:mbmeta"  # hash: micro-batch index -> "model|tokens|requests"


def stage_lease(batch_id: str, stage: str) -> str:
    return f"{_b(batch_id)}:lease:{stage}"  # a worker's heartbeat while it validates or aggregates


def tenant_batches(tenant: str) -> str:
    return f"{P}:batches:{tenant}"  # zset: batch id -> created (ms)


def active_batches() -> str:
    return f"{P}:active"  # set of batch ids not yet in a terminal stage (the sweep's work list)


def finished_batches() -> str:
    return f"{P}:finished"  # hash: terminal stage -> count of batches that reached it


# Dispatch (per model)
def model_queue(model: str, tenant: str) -> str:
    return f"{_m(model)}:q:{tenant}"  # list of "batch_id:index", FIFO within a tenant


def model_tenants(model: str) -> str:
    return f"{_m(model)}:tenants"  # set of tenants with queued micro-batches


def model_served(model: str) -> str:
    return f"{_m(model)}:served"  # hash: tenant -> tokens dispatched so far (fairness tie-break)


def dispatch_lock(model: str) -> str:
    return f"{_m(model)}:dispatching"


def dispatch_again(model: str) -> str:
    return f"{_m(model)}:dispatching:again"  # a trigger found the dispatcher busy: it goes round once more


def waiting_since(model: str) -> str:
    return f"{_m(model)}:waiting"  # hash: "batch:index" -> epoch seconds when the budget first refused it


def models_with_work() -> str:
    return f"{P}:models"  # set of models that ever had queued work (the sweep re-triggers their dispatch)


# Counters
def requests_by_model() -> str:
    return f"{P}:requests"  # hash: "<model>|success" / "<model>|error" -> requests finished so far


# Auth
def api_keys() -> str:
    return f"{P}:apikeys"  # hash: sha256(key) -> tenant
