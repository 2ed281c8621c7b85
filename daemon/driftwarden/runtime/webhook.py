"""Webhook deliveries: the shared secret, GitHub's `X-Hub-Signature-256`, and replays.

Owns reading the secret file (on every delivery, so a rotated secret takes effect without a
restart), `verify_signature`, a pure check of a body against its signature, and `Deliveries`,
which remembers the deliveries already admitted so a captured delivery replayed triggers
nothing. Must not decide what a delivery triggers (that is `http` and the daemon), read a
payload before its signature is verified, or log bodies or secrets.

Why both a delivery ID and the body: the ID header is not signed, so a replay with a fresh ID
would pass an ID check alone; the body is signed, so the same body within the replay window is
a replay whatever its headers say. GitHub's push payload carries its push time
(`repository.pushed_at`, signed with the body): outside the window it is refused outright,
which bounds how long a captured delivery stays useful once it has left our memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from driftwarden.errors import DriftwardenError

# Headers naming the event of a delivery, GitHub's first; none at all means a plain signed POST.
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event")
# Headers carrying a delivery's unique ID, GitHub's first.
DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-Gitlab-Event-UUID")

REMEMBERED_DELIVERIES = 1000
REPLAY_WINDOW_SECONDS = 300.0

Admission = Literal["new", "duplicate", "stale"]


def read_secret(path: Path, what: str = "webhook secret") -> bytes:
    """The secret in `path`, stripped; DriftwardenError (naming `what`) when unreadable or empty."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise DriftwardenError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not secret:
        raise DriftwardenError(f"the {what} file {path} is empty")
    return secret


def pushed_at(body: bytes) -> float | None:
    """The push time a signed GitHub push payload carries (`repository.pushed_at`), else None."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None  # a form-encoded or plain CI body: no time to check
    repository = payload.get("repository") if isinstance(payload, dict) else None
    value = repository.get("pushed_at") if isinstance(repository, dict) else None
    # GitHub sends epoch seconds for push events (an ISO string elsewhere); bool is not a time.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class Deliveries:
    """The last `limit` admitted deliveries, by ID and by signed body; thread-safe.

    `admit` is called only for a delivery whose signature verified (so nobody can fill the
    memory with IDs), and records it when it is new.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = REMEMBERED_DELIVERIES,
        window_seconds: float = REPLAY_WINDOW_SECONDS,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window_seconds
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._bodies: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, delivery: str | None, body: bytes) -> Admission:
        """``new`` (now remembered), ``duplicate`` (seen: trigger nothing) or ``stale`` (outside the window)."""
        now = self._clock()
        sent = pushed_at(body)
        if sent is not None and abs(now - sent) > self._window:
            return "stale"
        digest = hashlib.sha256(body).hexdigest()
        key = delivery[:128] if delivery else None
        with self._lock:
            while self._bodies and next(iter(self._bodies.values())) < now - self._window:
                self._bodies.popitem(last=False)
            if (key is not None and key in self._ids) or digest in self._bodies:
                return "duplicate"
            if key is not None:
                self._ids[key] = None
                if len(self._ids) > self._limit:
                    self._ids.popitem(last=False)
            self._bodies[digest] = now
            if len(self._bodies) > self._limit:
                self._bodies.popitem(last=False)
        return "new"


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
