"""Webhook deliveries: the shared secret and GitHub's `X-Hub-Signature-256` signature.

Owns reading the secret file (on every delivery, so a rotated secret takes effect without a
restart) and `verify_signature`, a pure check of a body against its signature. Must not parse
payloads, decide what a delivery triggers (that is `http`), or log bodies or secrets.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from driftwarden.errors import DriftwardenError

# Headers naming the event of a delivery, GitHub's first; none at all means a plain signed POST.
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event")


def read_secret(path: Path) -> bytes:
    """The secret in `path`, stripped; DriftwardenError when unreadable or empty."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise DriftwardenError(f"cannot read the webhook secret file {path}: {exc.strerror}") from None
    if not secret:
        raise DriftwardenError(f"the webhook secret file {path} is empty")
    return secret


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value a sender holding `secret` puts on `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, signature: str | None) -> bool:
    """GitHub's `X-Hub-Signature-256`: ``sha256=`` + hex HMAC-SHA256 of the raw body.

    Compared in constant time, so a caller cannot learn the expected value byte by byte.
    """
    if not signature or not signature.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), signature.strip().encode("utf-8", "replace"))
