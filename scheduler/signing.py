"""Signed upload URLs: the Together upload's ``PUT`` carries no ``Authorization``, so the URL authorizes itself.

A grant names the file id, the tenant, an expiry and a random nonce; the URL carries them with an
HMAC-SHA256 over all four, so changing any of them (another file, another tenant, a later expiry) breaks
the signature. The key is a random secret created once in Redis (``SET NX``), so every API process signs
and checks alike without a setting to distribute; deleting it revokes every outstanding URL. Each grant
also has a one-shot record in Redis (``keys.upload_token``) holding what the ``PUT`` needs (filename,
purpose, checksum): claiming it is an atomic read-and-delete, so a URL uploads once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from scheduler import keys
from scheduler.errors import Forbidden

UPLOAD_URL_SECONDS = 15 * 60  # from the redirect to the PUT: the SDK PUTs at once
GRACE_SECONDS = 60  # the one-shot record outlives the URL a little, so a late PUT hears "expired", not "used"
# Built here, not in keys.py (owned elsewhere); one name, next to keys.upload_token's namespace.
SECRET_KEY = keys.upload_signing_secret()


def now() -> float:
    """The clock grants are checked against (a function, so tests can move it)."""
    return time.time()


class UploadRefused(Forbidden):
    """A PUT to an upload URL that is not, or no longer, valid: 403, never a retry."""

    code = "invalid_upload_url"


def secret(client: redis.Redis) -> bytes:
    """The signing key: created once, shared by every API process through Redis."""
    found = client.get(SECRET_KEY)
    if found is None:
        client.set(SECRET_KEY, secrets.token_hex(32), nx=True)
        found = client.get(SECRET_KEY)
    if found is None:  # pragma: no cover - deleted between the two calls
        raise UploadRefused("The upload signing key is unavailable; retry.")
    return found if isinstance(found, bytes) else str(found).encode()


@dataclass(frozen=True)
class Grant:
    file_id: str
    tenant: str
    expires: int
    nonce: str

    def signature(self, key: bytes) -> str:
        message = "\n".join((self.file_id, self.tenant, str(self.expires), self.nonce)).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def query(self, key: bytes) -> dict[str, str]:
        """The URL's query parameters (the file id is in its path)."""
        return {"tenant": self.tenant, "expires": str(self.expires), "nonce": self.nonce,
                "signature": self.signature(key)}


def issue(client: redis.Redis, tenant: str, file_id: str, pending: Mapping[str, Any],
          seconds: int = UPLOAD_URL_SECONDS) -> Grant:
    """A new grant, with its one-shot record holding ``pending`` (what the PUT will need)."""
    grant = Grant(file_id=file_id, tenant=tenant, expires=int(now()) + seconds, nonce=secrets.token_hex(16))
    record = {**pending, "tenant": tenant, "file_id": file_id}
    client.set(keys.upload_token(grant.nonce), orjson.dumps(record), ex=seconds + GRACE_SECONDS)
    return grant


def verify(key: bytes, file_id: str, params: Mapping[str, str]) -> Grant:
    """The grant of a URL whose signature and expiry hold; ``UploadRefused`` otherwise."""
    try:
        grant = Grant(file_id=file_id, tenant=params["tenant"], expires=int(params["expires"]),
                      nonce=params["nonce"])
        given = params["signature"]
    except (KeyError, ValueError):
        raise UploadRefused("This upload URL is incomplete; request a new one with POST /v1/files.",
                            code="invalid_upload_url") from None
    if not hmac.compare_digest(grant.signature(key), given):
        raise UploadRefused("This upload URL's signature does not match; request a new one with POST /v1/files.",
                            code="invalid_signature")
    if grant.expires < now():
        raise UploadRefused("This upload URL has expired; request a new one with POST /v1/files.",
                            code="upload_url_expired")
    return grant


def claim(client: redis.Redis, grant: Grant) -> dict[str, Any]:
    """Take the grant's one-shot record (read and delete in one transaction); refused if already taken."""
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.upload_token(grant.nonce))
    pipe.delete(keys.upload_token(grant.nonce))
    raw, _ = pipe.execute()
    if raw is None:
        raise UploadRefused("This upload URL has already been used; request a new one with POST /v1/files.",
                            code="upload_url_used")
    record: dict[str, Any] = orjson.loads(raw)
    if record.get("tenant") != grant.tenant or record.get("file_id") != grant.file_id:  # pragma: no cover
        raise UploadRefused("This upload URL does not belong to this file.", code="invalid_upload_url")
    return record
