"""The daemon's HTTP server (stdlib `http.server`, on the metrics port).

GET /metrics, /healthz, /readyz, /status; POST /webhook (see `_Handler._webhook` for its
rules). Owns the wire: status codes, headers, body limits, which requests are refused, and
what one client may cost:

* A fixed pool of worker threads (`workers`, 16). A connection is accepted only when a worker
  is free; beyond the pool, connections wait in the listen backlog (`BACKLOG`), so a flood of
  clients never grows the thread count.
* A whole-request deadline (`deadline`, 10 s): the request line, headers and body must all
  arrive within it, however slowly the bytes trickle in (a per-read timeout would let a
  client sending one byte every few seconds hold a worker forever).
* A slow, aborted or malformed client costs one `driftwarden_http_requests_rejected_total`
  increment (by reason), never a traceback or an ERROR line.
* With a bearer token configured, /status and /metrics need ``Authorization: Bearer <token>``;
  /healthz and /readyz stay open for probes, /webhook keeps its own HMAC signature.

What the answers say comes from the `Endpoints` it is given (the daemon). Must not log request
bodies or query strings, verify signatures or decide duplicates itself (`webhook` does), or
block on a pass.
"""

from __future__ import annotations

import hmac
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Protocol

from driftwarden.errors import DriftwardenError
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import CONTENT_TYPE
from driftwarden.runtime.webhook import DELIVERY_HEADERS, EVENT_HEADERS

WORKERS = 16
DEADLINE_SECONDS = 10.0
# Connections waiting for a free worker; more than this are left to the kernel (SYN retries).
BACKLOG = 256
# Paths that show the daemon's state: guarded by the bearer token when one is configured.
GUARDED_PATHS = frozenset({"/status", "/metrics"})


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
    def admit_delivery(self, delivery: str | None, body: bytes) -> str: ...
    def request_sync(self, trigger: str = "webhook") -> bool: ...
    def http_token(self) -> bytes | None: ...
    def http_rejected(self, reason: str) -> None: ...


def display_host(host: str) -> str:
    """A host as a URL shows it: the wildcard as loopback, IPv6 in brackets."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)


def listen(
    host: str, port: int, endpoints: Endpoints, *, workers: int = WORKERS, deadline: float = DEADLINE_SECONDS
) -> HTTPServer:
    """A server bound to (host, port) answering from `endpoints`; not yet serving."""
    server_class: type[_Server] = _Server6 if ":" in host else _Server

    class Handler(_Handler):
        pass

    Handler.endpoints = endpoints
    Handler.deadline = deadline
    try:
        return server_class((host, port), Handler, workers=workers, rejected=endpoints.http_rejected)
    except OSError as exc:
        raise DriftwardenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def bearer_matches(token: bytes, authorization: str | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)


class _Server(HTTPServer):
    allow_reuse_address = True
    request_queue_size = BACKLOG
    # How long the accept loop waits for a free worker before looking at shutdown again.
    _slot_wait = 0.1

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], *, workers: int, rejected: Callable[[str], None]
    ) -> None:
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http-worker")
        self._rejected = rejected
        super().__init__(address, handler)

    def _handle_request_noblock(self) -> None:
        # socketserver accepts, then asks where to run the request; accepting only with a free
        # worker keeps waiting clients in the kernel's backlog instead of in our threads.
        if not self._slots.acquire(timeout=self._slot_wait):
            return
        try:
            request, client_address = self.get_request()
        except OSError:
            self._slots.release()
            return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self.shutdown_request(request)
            self._slots.release()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            # A client that went away (reset, broken pipe) or timed out is the client's doing.
            self._rejected("aborted")
            return
        # socketserver would print a traceback to stderr, breaking one-JSON-event-per-line.
        EventLog("driftwarden.http").error("http.crashed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _DeadlinePassed(TimeoutError):
    """The whole request did not arrive within the deadline."""


class _DeadlineReader(io.RawIOBase):
    """A socket's receiving side where every read waits at most until one fixed deadline."""

    def __init__(self, sock: socket.socket, deadline: float, write_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._write_timeout = write_timeout
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise _DeadlinePassed("request deadline passed")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise _DeadlinePassed("request deadline passed") from None
        finally:
            self._sock.settimeout(self._write_timeout)


class _Handler(BaseHTTPRequestHandler):
    endpoints: Endpoints
    deadline: float = DEADLINE_SECONDS
    _reader: _DeadlineReader

    def setup(self) -> None:
        super().setup()  # sets no timeout (timeout is None): the reader below owns it
        self.connection.settimeout(self.deadline)  # writes: a client that stops reading
        self._reader = _DeadlineReader(self.connection, time.monotonic() + self.deadline, self.deadline)
        self.rfile = io.BufferedReader(self._reader)

    def handle(self) -> None:
        """One request (HTTP/1.0: the connection closes after it); a failing client is counted."""
        try:
            super().handle()
        except _DeadlinePassed:
            pass  # counted below
        except OSError:
            self.endpoints.http_rejected("aborted")
            self.close_connection = True
            return
        if self._reader.expired:
            self.endpoints.http_rejected("deadline")
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Only http.server calls this: a request line or headers it could not parse.
        self.endpoints.http_rejected("malformed")
        super().send_error(code, message, explain)

    def log_error(self, format: str, *args: Any) -> None:
        return None

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

    def _authorized(self, path: str) -> bool:
        """True when `path` is open or the request carries the bearer token; otherwise answered."""
        if path not in GUARDED_PATHS:
            return True
        try:
            token = self.endpoints.http_token()
        except DriftwardenError as exc:
            self.endpoints.log.error("http.token_unreadable", error=str(exc))
            self._json(500, {"error": "the HTTP token cannot be read"})
            return False
        if token is None or bearer_matches(token, self.headers.get("Authorization")):
            return True
        self.endpoints.http_rejected("unauthorized")
        self.send_response(401)
        body = b'{"error": "a bearer token is required"}\n'
        self.send_header("WWW-Authenticate", 'Bearer realm="driftwarden"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        endpoints = self.endpoints
        if not self._authorized(path):
            return
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
        * A push the daemon has seen (the same delivery ID, or the same signed body within the
          replay window) is answered 200 "duplicate" and triggers nothing; a push whose signed
          payload carries a push time outside the window is 400 (`webhook.Deliveries`).
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
        delivery = next((self.headers[h] for h in DELIVERY_HEADERS if self.headers.get(h)), None)
        if event == "ping":
            endpoints.log.info("webhook.ping", delivery=delivery)
            self._json(200, {"status": "pong"})
            return
        if event != "push":
            endpoints.log.info("webhook.ignored", github_event=event[:64], delivery=delivery)
            self._json(400, {"error": f"event {event[:64]!r} is not handled; only push triggers a sync"})
            return
        admitted = endpoints.admit_delivery(delivery, body)
        if admitted == "duplicate":
            endpoints.http_rejected("duplicate")
            endpoints.log.info("webhook.duplicate", delivery=delivery)
            self._json(200, {"status": "duplicate"})
            return
        if admitted == "stale":
            endpoints.http_rejected("stale")
            endpoints.log.warning("webhook.refused", reason="push time outside the replay window", delivery=delivery)
            self._json(400, {"error": "the delivery's push time is outside the accepted window"})
            return
        if not endpoints.request_sync("webhook"):
            self._json(503, {"error": "the daemon is stopping"})
            return
        endpoints.log.info("webhook.sync_requested", delivery=delivery)
        self._json(202, {"status": "sync requested"})
