"""A fault-injecting HTTP proxy for tests: boto3 → proxy → moto's server.

Point a client's `endpoint_url` at `proxy.endpoint_url`. Every request is recorded (service from
the SigV4 credential scope, operation from ``X-Amz-Target``, the ``Action`` form parameter, or
the REST route in botocore's service model) and forwarded verbatim to the upstream server,
unless a rule injected with `inject` answers instead::

    proxy.inject(operation_is("ec2", "DescribeVpcs"), [THROTTLE, THROTTLE, OK])

Faults are rendered in the protocol of the request that gets them, the way AWS would answer:
EC2's ``<Response><Errors>`` XML, the query protocol's ``<ErrorResponse>`` (IAM, STS, RDS),
``{"__type": ...}`` JSON (SSM, Secrets Manager, Service Quotas), REST-JSON with
``x-amzn-ErrorType`` (EKS) or REST-XML (S3).

It must not be used outside tests and only binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from xml.sax.saxutils import escape

import botocore.session
from botocore.exceptions import UnknownServiceError

Protocol = str  # "ec2" | "query" | "json" | "rest-json" | "rest-xml"

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_CREDENTIAL_SCOPE: Final = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    service: str  # SigV4 signing name: ec2, sts, iam, eks, ssm, secretsmanager...
    region: str
    operation: str  # DescribeVpcs, AssumeRole, CreateNodegroup... ("METHOD /path" if unknown)
    protocol: Protocol

    @property
    def body_or_target(self) -> str:
        """The JSON target header and the body as text: what simple matchers search."""
        target = self.headers.get("x-amz-target", "")
        return f"{target}\n{self.body.decode('utf-8', errors='replace')}"

    @property
    def params(self) -> dict[str, str]:
        """Form parameters of a query/EC2 request (``Action``, ``RoleArn``, ...)."""
        if self.protocol not in ("ec2", "query"):
            return {}
        pairs = urllib.parse.parse_qsl(self.body.decode("utf-8", errors="replace"))
        return dict(pairs)


Matcher = Callable[[RecordedRequest], bool]


def operation_is(service: str, operation: str) -> Matcher:
    """Match requests for one API operation of one service."""
    return lambda request: request.service == service and request.operation == operation


# -------------------------------------------------------------------------------------------
# Responses a rule can give
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """Let the request through to the upstream server."""


@dataclass(frozen=True)
class Fault:
    """An error answer; `codes` gives the error code per protocol ("*" for the rest)."""

    status: int
    codes: Mapping[Protocol, str]
    message: str = "injected by faultproxy"
    headers: Mapping[str, str] = field(default_factory=dict)

    def code_for(self, protocol: Protocol) -> str:
        return self.codes.get(protocol) or self.codes["*"]


Response = Forward | Fault

OK: Final = Forward()
THROTTLE: Final = Fault(
    400,
    {
        "ec2": "RequestLimitExceeded",
        "query": "Throttling",
        "json": "ThrottlingException",
        "rest-json": "ThrottlingException",
        "rest-xml": "SlowDown",
        "*": "ThrottlingException",
    },
    message="Rate exceeded",
)


def server_error(status: int = 503) -> Fault:
    """A 5xx answer (503 ServiceUnavailable by default, 500 InternalError...)."""
    if status == 503:
        codes = {
            "ec2": "Unavailable",
            "query": "ServiceUnavailable",
            "rest-xml": "ServiceUnavailable",
            "*": "ServiceUnavailableException",
        }
    else:
        codes = {
            "ec2": "InternalError",
            "query": "InternalFailure",
            "rest-xml": "InternalError",
            "*": "InternalServerException",
        }
    return Fault(status, codes, message="injected server error")


SERVER_ERROR: Final = server_error(503)


def error(code: str, *, status: int = 400, message: str = "injected by faultproxy") -> Fault:
    """An AWS error with the same `code` whatever the protocol (AccessDenied, ...)."""
    return Fault(status, {"*": code}, message=message)


@dataclass
class Rule:
    """Answers matching requests with `responses`, in order; then stops matching."""

    match: Matcher
    responses: deque[Response]
    repeat_last: bool = False
    hits: list[RecordedRequest] = field(default_factory=list)

    @property
    def exhausted(self) -> bool:
        return not self.responses

    def _take(self) -> Response:
        if self.repeat_last and len(self.responses) == 1:
            return self.responses[0]
        return self.responses.popleft()


# -------------------------------------------------------------------------------------------
# Reading requests
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    method: str
    path: re.Pattern[str]
    query: frozenset[str]  # query keys the route requires (S3's ``?tagging``)
    specificity: int
    operation: str


def _path_pattern(template: str) -> re.Pattern[str]:
    parts, position = [], 0
    for label in re.finditer(r"\{([^}]+)\}", template):
        parts.append(re.escape(template[position : label.start()]))
        # ``{Key+}`` is a greedy label that may contain slashes.
        parts.append(".+" if label.group(1).endswith("+") else "[^/]+")
        position = label.end()
    parts.append(re.escape(template[position:]))
    return re.compile("^" + "".join(parts).rstrip("/") + "/?$")


@cache
def _rest_routes(service: str) -> tuple[Protocol, tuple[_Route, ...]]:
    """A REST service's protocol and routes, read from botocore's service model."""
    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        return "rest-json", ()
    routes = []
    for name in model.operation_names:
        spec = model.operation_model(name).http
        path, _, query = spec["requestUri"].partition("?")
        keys = frozenset(part.split("=", 1)[0] for part in query.split("&") if part)
        literal = len(re.sub(r"\{[^}]+\}", "", path))
        routes.append(_Route(spec["method"], _path_pattern(path), keys, literal + 10 * len(keys), name))
    return model.protocol, tuple(routes)


def _rest_operation(service: str, method: str, target: str) -> tuple[Protocol, str]:
    protocol, routes = _rest_routes(service)
    url = urllib.parse.urlsplit(target)
    present = set(urllib.parse.parse_qs(url.query, keep_blank_values=True))
    candidates = [
        route
        for route in routes
        if route.method == method and route.path.match(url.path) and route.query <= present
    ]
    if not candidates:
        return protocol, f"{method} {url.path}"
    return protocol, max(candidates, key=lambda route: route.specificity).operation


def _describe(method: str, target: str, headers: Mapping[str, str], body: bytes) -> RecordedRequest:
    scope = _CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
    region, service = (scope.group(1), scope.group(2)) if scope else ("", "")
    amz_target = headers.get("x-amz-target")
    form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    action = dict(urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"))).get("Action")
    if amz_target:
        protocol, operation = "json", amz_target.rsplit(".", 1)[-1]
    elif form and action:
        protocol, operation = ("ec2" if service == "ec2" else "query"), action
    else:
        protocol, operation = _rest_operation(service, method, target)
    path = urllib.parse.urlsplit(target).path
    return RecordedRequest(method, path, dict(headers), body, service, region, operation, protocol)


def _render(fault: Fault, protocol: Protocol) -> tuple[dict[str, str], bytes]:
    code, message, request_id = fault.code_for(protocol), fault.message, str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id, **fault.headers}
    if protocol == "ec2":
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        headers["Content-Type"] = "text/xml;charset=UTF-8"
    elif protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers["Content-Type"] = "text/xml"
    elif protocol == "rest-xml":
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        headers["Content-Type"] = "application/xml"
    else:
        body = json.dumps({"__type": code, "message": message})
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = (
            "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        )
    return headers, body.encode()


# -------------------------------------------------------------------------------------------
# The proxy
# -------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection from a forgotten client must not pin a thread forever.
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, open_=False)

    def log_message(self, format: str, *args: object) -> None:
        return None  # quiet: tests read the request log instead

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # the blank line after the last chunk
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = _describe(self.command, self.path, headers, body)
        response = self.server.proxy._decide(request)
        if isinstance(response, Fault):
            extra, payload = _render(response, request.protocol)
            self._reply(response.status, extra.items(), payload)
            return
        status, upstream_headers, payload = self.server.proxy._forward(request, self.path)
        self._reply(status, upstream_headers, payload)

    def _reply(self, status: int, headers: Iterable[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        content_length = None
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower in ("date", "server"):
                continue
            if lower == "content-length":
                content_length = value
                continue
            self.send_header(name, value)
        if self.command == "HEAD":
            # No body on HEAD, but the length says how big the resource is.
            self.send_header("Content-Length", content_length or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class FaultProxy:
    """The proxy; start with `with FaultProxy(upstream_url) as proxy:` (or start/stop)."""

    def __init__(self, upstream_url: str) -> None:
        upstream = urllib.parse.urlsplit(upstream_url)
        if upstream.scheme != "http" or upstream.hostname is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream_url!r}")
        self._upstream = (upstream.hostname, upstream.port or 80)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="faultproxy", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Clients keep connections alive; close them so handler threads end now.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the other side
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- rules and the log ------------------------------------------------------------------

    def inject(
        self, match: Matcher, responses: Sequence[Response], *, repeat_last: bool = False
    ) -> Rule:
        """Answer the next requests that `match` with `responses`, in order.

        With `repeat_last` the last response is given forever (an outage); otherwise the rule
        stops matching once every response is used. Rules are tried in the order injected.
        """
        if not responses:
            raise ValueError("a rule needs at least one response")
        rule = Rule(match, deque(responses), repeat_last)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget every rule and every recorded request."""
        with self._lock:
            self._rules.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, service: str | None = None, operation: str | None = None) -> list[RecordedRequest]:
        """Recorded requests for one service and/or operation, in arrival order."""
        return [
            r
            for r in self.requests
            if (service is None or r.service == service)
            and (operation is None or r.operation == operation)
        ]

    # -- used by the handler ----------------------------------------------------------------

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _decide(self, request: RecordedRequest) -> Response:
        with self._lock:
            self._requests.append(request)
            for rule in self._rules:
                if not rule.exhausted and rule.match(request):
                    rule.hits.append(request)
                    return rule._take()
        return OK

    def _forward(self, request: RecordedRequest, target: str) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            headers["content-length"] = str(len(request.body))
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            # The Host header is forwarded as is: it is part of the SigV4 signature.
            connection.request(request.method, target, body=request.body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        except OSError as e:
            return 502, [("Content-Type", "text/plain")], f"faultproxy: upstream: {e}".encode()
        finally:
            connection.close()
