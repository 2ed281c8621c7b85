"""Webhook signatures and the HTTP endpoints in process: a real server on loopback, the daemon behind it stubbed."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftwarden.errors import DriftwardenError
from driftwarden.runtime.http import listen
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.webhook import Deliveries, read_secret, verify_signature

SECRET = b"s3cret-shared-with-the-forge"
BODY = b'{"ref": "refs/heads/main"}'


def github_signature(secret: bytes, body: bytes) -> str:
    """Computed here as GitHub documents it, not with the code under test."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_a_signature_made_with_the_secret_over_the_exact_body_verifies():
    """`sha256=<hex HMAC-SHA256>` of the raw body with the shared secret is accepted (a trailing space too)."""
    assert verify_signature(SECRET, BODY, github_signature(SECRET, BODY))
    assert verify_signature(SECRET, BODY, github_signature(SECRET, BODY) + " ")


@pytest.mark.parametrize("signature", [
    github_signature(b"another secret", BODY),
    github_signature(SECRET, BODY + b" "),
    "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest(),
    github_signature(SECRET, BODY).upper(),
    "sha256=é",
], ids=["wrong-secret", "other-body", "sha1", "upper-case", "not-ascii"])
def test_a_bad_signature_is_refused(signature):
    """Another secret, another body, another algorithm or a mangled value never verifies."""
    assert not verify_signature(SECRET, BODY, signature)


@pytest.mark.parametrize("signature", [None, "", "sha256="])
def test_a_missing_signature_is_refused(signature):
    """No header, an empty one, or the prefix alone never verifies."""
    assert not verify_signature(SECRET, BODY, signature)


def test_the_secret_file_is_read_stripped_and_refused_when_empty_or_missing(tmp_path):
    """A trailing newline is not part of the secret; an empty or absent file is an error naming it."""
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    assert read_secret(path) == SECRET
    path.write_bytes(b"  \n")
    with pytest.raises(DriftwardenError, match="is empty"):
        read_secret(path)
    with pytest.raises(DriftwardenError, match="cannot read"):
        read_secret(tmp_path / "absent")


class Endpoints:
    """The daemon as the HTTP server sees it, with a real secret file and recorded sync requests."""

    def __init__(self, secret_file: Path) -> None:
        self.log = EventLog("test.http")
        self.secret_file = secret_file
        self.syncs: list[str] = []
        self.webhook_enabled = True
        self.max_webhook_bytes = 1024
        self.accepting = True
        self.deliveries = Deliveries(time.time)
        self.token: bytes | None = None
        self.rejected: list[str] = []

    def exposition(self) -> bytes:
        return b"# metrics\n"

    def healthy(self) -> bool:
        return True

    def ready(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {"ready": False}

    def verify_webhook(self, body: bytes, signature: str | None) -> bool:
        return verify_signature(read_secret(self.secret_file), body, signature)

    def request_sync(self, trigger: str = "webhook") -> bool:
        self.syncs.append(trigger)
        return self.accepting

    def admit_delivery(self, delivery: str | None, body: bytes) -> str:
        return self.deliveries.admit(delivery, body)

    def http_token(self) -> bytes | None:
        return self.token

    def http_rejected(self, reason: str) -> None:
        self.rejected.append(reason)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Endpoints, int]]:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    endpoints = Endpoints(secret)
    server = listen("127.0.0.1", 0, endpoints)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield endpoints, int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def request(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict[str, Any] | bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, (json.loads(data) if is_json else data)
    finally:
        connection.close()


def test_a_signed_push_requests_one_sync_and_a_ping_none(served):
    """A signed push is 202 and asks for a sync; a signed ping is 200 and asks for nothing; other events are 400."""
    endpoints, port = served
    signature = github_signature(SECRET, BODY)
    assert request(port, "POST", "/webhook", BODY, X_GitHub_Event="push", X_Hub_Signature_256=signature) == (
        202, {"status": "sync requested"})
    assert request(port, "POST", "/webhook", BODY, X_GitHub_Event="ping", X_Hub_Signature_256=signature)[0] == 200
    assert request(port, "POST", "/webhook", BODY, X_GitHub_Event="issues", X_Hub_Signature_256=signature)[0] == 400
    # No event header: a CI POST. Another body, since the same signed body again is a replay.
    ci_body = b'{"ref": "refs/heads/main", "from": "ci"}'
    assert request(port, "POST", "/webhook", ci_body, X_Hub_Signature_256=github_signature(SECRET, ci_body))[0] == 202
    assert endpoints.syncs == ["webhook", "webhook"]


def test_unsigned_or_badly_signed_deliveries_change_nothing(served):
    """No signature is 401, a wrong one 403, a body over the limit 413: no sync is requested."""
    endpoints, port = served
    assert request(port, "POST", "/webhook", BODY, X_GitHub_Event="push")[0] == 401
    assert request(port, "POST", "/webhook", BODY, X_GitHub_Event="push",
                   X_Hub_Signature_256=github_signature(b"wrong", BODY))[0] == 403
    big = b"x" * 2048
    assert request(port, "POST", "/webhook", big, X_Hub_Signature_256=github_signature(SECRET, big))[0] == 413
    assert endpoints.syncs == []


def test_an_unreadable_secret_is_a_server_error_and_a_stopping_daemon_is_503(served):
    """A secret file that vanished answers 500; a daemon refusing the sync (stopping) answers 503."""
    endpoints, port = served
    endpoints.accepting = False
    assert request(port, "POST", "/webhook", BODY, X_Hub_Signature_256=github_signature(SECRET, BODY))[0] == 503
    endpoints.secret_file.unlink()
    assert request(port, "POST", "/webhook", BODY, X_Hub_Signature_256=github_signature(SECRET, BODY))[0] == 500


def test_the_get_endpoints_and_a_disabled_webhook(served):
    """/metrics, /healthz, /readyz and /status answer from the daemon; unknown paths and a disabled webhook are 404."""
    endpoints, port = served
    assert request(port, "GET", "/metrics") == (200, b"# metrics\n")
    assert request(port, "GET", "/healthz") == (200, {"status": "ok"})
    assert request(port, "GET", "/readyz") == (503, {"status": "not ready"})
    assert request(port, "GET", "/status?token=x") == (200, {"ready": False})
    assert request(port, "GET", "/nope")[0] == 404
    endpoints.webhook_enabled = False
    assert request(port, "POST", "/webhook", BODY, X_Hub_Signature_256=github_signature(SECRET, BODY))[0] == 404
