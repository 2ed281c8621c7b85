"""The daemon's HTTP server (stdlib `ThreadingHTTPServer`, on the metrics port).

GET /metrics, /healthz, /readyz, /status; POST /webhook (see `_Handler._webhook` for its
rules). Owns the wire: status codes, headers, body limits, which requests are refused. What the
answers say comes from the `Endpoints` it is given (the daemon). Must not log request bodies or
query strings, verify signatures itself (`webhook.verify_signature` does), or block on a pass.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from driftwarden.errors import DriftwardenError
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import CONTENT_TYPE
from driftwarden.runtime.webhook import EVENT_HEADERS


class Endpoints(Protocol):
    """What the HTTP server asks of the daemon."""

    log: EventLog

    @property
    def webhook_enabled(self) -> bool: ...
    @property
    def max_webhook_bytes(self) -> int: ...
    def exposition(self) -> bytes: ...
    def healthy(self) -> bool: ...
    def ready(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def verify_webhook(self, body: bytes, signature: str | None) -> bool: ...
    def request_sync(self, trigger: str = "webhook") -> bool: ...


def display_host(host: str) -> str:
    """A host as a URL shows it: the wildcard as loopback, IPv6 in brackets."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)


def listen(host: str, port: int, endpoints: Endpoints) -> ThreadingHTTPServer:
    """A server bound to (host, port) answering from `endpoints`; not yet serving."""
    server_class: type[ThreadingHTTPServer] = _Server6 if ":" in host else _Server

    class Handler(_Handler):
        pass

    Handler.endpoints = endpoints
    try:
        return server_class((host, port), Handler)
    except OSError as exc:
        raise DriftwardenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr, breaking one-JSON-event-per-line.
        EventLog("driftwarden.http").error("http.crashed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    endpoints: Endpoints
    # A slow client must not hold a thread forever.
    timeout = 15

    def version_string(self) -> str:
        return "driftwarden"

    def log_message(self, format: str, *args: Any) -> None:
        # Never the body, never the query string (it may carry a token someone pasted).
        return None

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.endpoints.log.debug("http.request", method=self.command, path=self.path.split("?", 1)[0], status=status)

    def _json(self, status: int, document: Mapping[str, Any]) -> None:
        self._send(status, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        endpoints = self.endpoints
        if path == "/metrics":
            self._send(200, endpoints.exposition(), CONTENT_TYPE)
        elif path == "/healthz":
            ok = endpoints.healthy()
            self._json(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})
        elif path == "/readyz":
            ok = endpoints.ready()
            self._json(200 if ok else 503, {"status": "ready" if ok else "not ready"})
        elif path == "/status":
            self._json(200, endpoints.status())
        else:
            self._json(404, {"error": "not found"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/webhook" or not self.endpoints.webhook_enabled:
            self._discard_and_refuse(404, "not found")
            return
        self._webhook()

    def _discard_and_refuse(self, status: int, message: str) -> None:
        self.close_connection = True  # the unread body must not be taken for the next request
        self._json(status, {"error": message})

    def _webhook(self) -> None:
        """POST /webhook, GitHub-style; only a correctly signed delivery can do anything.

        * The body is limited to `max_webhook_bytes` (1 MiB): a larger Content-Length is refused
          with 413 before anything is read; no Content-Length is 411.
        * `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the shared secret,
          compared in constant time: missing 401, wrong 403.
        * Signed deliveries: event `push` (from `X-GitHub-Event`, or Gitea's/Gogs' header), or no
          event header at all (a plain signed POST from any CI), requests a sync now: 202. `ping`
          (sent when a hook is created) is answered 200 and does nothing; any other event is 400.
          The payload is not parsed: a sync of an unchanged ref costs one idle `git fetch`.
        * Bodies are never logged.
        """
        endpoints = self.endpoints
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._discard_and_refuse(411, "Content-Length required")
            return
        try:
            length = int(length_text)
        except ValueError:
            self._discard_and_refuse(400, "bad Content-Length")
            return
        if length < 0:
            self._discard_and_refuse(400, "bad Content-Length")
            return
        if length > endpoints.max_webhook_bytes:
            endpoints.log.warning("webhook.refused", reason="body too large", bytes=length)
            self._discard_and_refuse(413, f"body larger than {endpoints.max_webhook_bytes} bytes")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._discard_and_refuse(400, "body shorter than Content-Length")
            return
        signature = self.headers.get("X-Hub-Signature-256")
        if not signature:
            endpoints.log.warning("webhook.refused", reason="no X-Hub-Signature-256 header")
            self._json(401, {"error": "X-Hub-Signature-256 required"})
            return
        try:
            valid = endpoints.verify_webhook(body, signature)
        except DriftwardenError as exc:
            endpoints.log.error("webhook.secret_unreadable", error=str(exc))
            self._json(500, {"error": "the webhook secret cannot be read"})
            return
        if not valid:
            endpoints.log.warning("webhook.refused", reason="bad signature")
            self._json(403, {"error": "signature does not match"})
            return
        event = next((self.headers[h] for h in EVENT_HEADERS if self.headers.get(h)), "push").strip().lower()
        delivery = self.headers.get("X-GitHub-Delivery")
        if event == "ping":
            endpoints.log.info("webhook.ping", delivery=delivery)
            self._json(200, {"status": "pong"})
            return
        if event != "push":
            endpoints.log.info("webhook.ignored", github_event=event[:64], delivery=delivery)
            self._json(400, {"error": f"event {event[:64]!r} is not handled; only push triggers a sync"})
            return
        if not endpoints.request_sync("webhook"):
            self._json(503, {"error": "the daemon is stopping"})
            return
        endpoints.log.info("webhook.sync_requested", delivery=delivery)
        self._json(202, {"status": "sync requested"})
