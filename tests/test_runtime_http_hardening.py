"""The HTTP side under hostile clients: replays, bursts, slow and aborted clients, the bearer token.

Real sockets on 127.0.0.1 against `runtime.http.listen` with the daemon behind it stubbed (the
stub from test_runtime_webhook), and `driftwarden run` as a subprocess for what only the
whole daemon shows (passes started by deliveries). Every wait is bounded and ends by itself.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from driftwarden.runtime.http import listen
from driftwarden.runtime.webhook import Deliveries
from test_daemon import deployment_yaml, metric_sample, origin, signed, start_daemon, wait_for  # noqa: F401
from test_runtime_webhook import SECRET, Endpoints, github_signature, request


def serve(endpoints: Endpoints, **options: float) -> tuple[object, int, threading.Thread]:
    server = listen("127.0.0.1", 0, endpoints, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, int(server.server_address[1]), thread


@pytest.fixture
def stub(tmp_path: Path) -> Endpoints:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    return Endpoints(secret)


@pytest.fixture
def small_server(stub: Endpoints) -> Iterator[tuple[Endpoints, int]]:
    """16 workers, a 1.2 s whole-request deadline."""
    server, port, thread = serve(stub, workers=16, deadline=1.2)
    yield stub, port
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]
    thread.join(timeout=5)


# --- deliveries: pure, with an injected clock ---------------------------------------------------


def test_a_delivery_is_new_once_then_a_duplicate_by_id_or_by_signed_body():
    """The same delivery ID, or the same body under a fresh ID (the ID is unsigned), is a duplicate."""
    deliveries = Deliveries(lambda: 1000.0)
    assert deliveries.admit("id-1", b"body-1") == "new"
    assert deliveries.admit("id-1", b"body-2") == "duplicate"
    assert deliveries.admit("id-2", b"body-1") == "duplicate"
    assert deliveries.admit("id-3", b"body-3") == "new"
    assert deliveries.admit(None, b"body-4") == "new"
    assert deliveries.admit(None, b"body-4") == "duplicate"


def test_a_signed_push_time_outside_the_window_is_stale_and_the_memory_is_bounded():
    """`repository.pushed_at` far from now is stale; only the last `limit` IDs and window's bodies are kept."""
    now = [10_000.0]
    deliveries = Deliveries(lambda: now[0], limit=3, window_seconds=300)
    old = json.dumps({"repository": {"pushed_at": 10_000 - 301}}).encode()
    fresh = json.dumps({"repository": {"pushed_at": 10_000 - 10}}).encode()
    assert deliveries.admit("a", old) == "stale"
    assert deliveries.admit("a", fresh) == "new"  # a stale one was not remembered
    for i in range(3):
        assert deliveries.admit(f"b{i}", f"body {i}".encode()) == "new"
    assert deliveries.admit("a", b"another body") == "new"  # "a" fell out of the last 3
    now[0] += 301
    assert deliveries.admit("z", b"body 2") == "new"  # bodies are remembered for the window only


# --- the server ---------------------------------------------------------------------------------


def test_a_replayed_delivery_is_answered_duplicate_and_requests_no_sync(small_server):
    """The same signed delivery sent again, with its ID or a new one, is 200 "duplicate" and asks for nothing."""
    endpoints, port = small_server
    body = b'{"ref": "refs/heads/main", "after": "abc"}'
    headers = {"X_GitHub_Event": "push", "X_Hub_Signature_256": github_signature(SECRET, body)}
    assert request(port, "POST", "/webhook", body, X_GitHub_Delivery="d-1", **headers)[0] == 202
    for delivery in ("d-1", "d-1", "d-2-forged"):
        assert request(port, "POST", "/webhook", body, X_GitHub_Delivery=delivery, **headers) == (
            200, {"status": "duplicate"})
    stale = json.dumps({"ref": "refs/heads/main", "repository": {"pushed_at": int(time.time()) - 3600}}).encode()
    assert request(port, "POST", "/webhook", stale, X_GitHub_Event="push",
                   X_Hub_Signature_256=github_signature(SECRET, stale))[0] == 400
    assert endpoints.syncs == ["webhook"]
    assert endpoints.rejected == ["duplicate"] * 3 + ["stale"]


def test_the_bearer_token_guards_status_and_metrics_but_not_the_probes(small_server):
    """With a token, /status and /metrics need `Authorization: Bearer <token>`; /healthz and /readyz stay open."""
    endpoints, port = small_server
    endpoints.token = b"the-scrape-token"
    for path in ("/status", "/metrics"):
        assert request(port, "GET", path)[0] == 401
        assert request(port, "GET", path, Authorization="Bearer wrong")[0] == 401
        assert request(port, "GET", path, Authorization="Basic the-scrape-token")[0] == 401
        assert request(port, "GET", path, Authorization="Bearer the-scrape-token")[0] == 200
    assert request(port, "GET", "/healthz")[0] == 200
    assert request(port, "GET", "/readyz")[0] == 503  # the stub is not ready; answered, not refused
    assert endpoints.rejected == ["unauthorized"] * 6
    endpoints.token = None
    assert request(port, "GET", "/status")[0] == 200


def drip(port: int, clients: int, every: float, until: float) -> tuple[int, float]:
    """`clients` connections each sending one byte of a never-finished request every `every` seconds.

    Returns how many the server closed before `until` (a monotonic time), and when the last one
    was closed.
    """
    request_bytes = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 1000
    selector = selectors.DefaultSelector()
    sent: dict[socket.socket, int] = {}
    for _ in range(clients):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sent[sock] = 0
        selector.register(sock, selectors.EVENT_READ)
    closed, last_closed, next_drip = 0, 0.0, time.monotonic()
    try:
        while sent and time.monotonic() < until:
            if time.monotonic() >= next_drip:
                for sock in list(sent):
                    try:
                        sock.send(request_bytes[sent[sock]:sent[sock] + 1])
                        sent[sock] += 1
                    except BlockingIOError:
                        pass  # not connected yet: still in the backlog's SYN retries
                    except OSError:
                        pass  # reset: found by the read below
                next_drip += every
            for key, _events in selector.select(timeout=0.05):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    del sent[sock]  # type: ignore[arg-type]
                    closed += 1
                    last_closed = time.monotonic()
    finally:
        for sock in sent:
            sock.close()
        selector.close()
    return closed, last_closed


def test_two_hundred_slow_clients_never_grow_the_pool_and_are_dropped_at_the_deadline(small_server, caplog):
    """200 clients sending a byte a second are each dropped at the deadline, counted, with at most 16 workers and no ERROR."""
    endpoints, port = small_server
    caplog.set_level(logging.DEBUG)
    peak = [0]
    sampling = threading.Event()

    def sample_threads() -> None:
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], sum(t.name.startswith("http-worker") for t in threading.enumerate()))

    sampler = threading.Thread(target=sample_threads, daemon=True)
    sampler.start()
    try:
        closed, _last = drip(port, 200, every=1.0, until=time.monotonic() + 90)
    finally:
        sampling.set()
        sampler.join(timeout=5)
    assert closed == 200
    assert 1 <= peak[0] <= 16
    assert endpoints.rejected.count("deadline") == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert request(port, "GET", "/healthz")[0] == 200  # the pool is free again


def test_the_deadline_is_for_the_whole_request_not_for_each_read(small_server):
    """A client never silent for long (a byte every 0.2 s) is still dropped once the 1.2 s deadline has passed."""
    endpoints, port = small_server
    started = time.monotonic()
    closed, last_closed = drip(port, 1, every=0.2, until=started + 30)
    assert closed == 1
    assert last_closed - started < 10  # a per-read timeout would have let it drip for the whole 30 s
    assert endpoints.rejected == ["deadline"]


def test_an_aborted_client_costs_a_counter_not_a_traceback(small_server, caplog):
    """A client resetting the connection mid-body leaves no ERROR line and the server keeps answering."""
    endpoints, port = small_server
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                     b"X-Hub-Signature-256: sha256=00\r\n\r\n" + b"x" * 10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.close()
    wait_for(lambda: len(endpoints.rejected) == 5, "five aborted requests counted", timeout=20)
    assert set(endpoints.rejected) <= {"aborted", "deadline"}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert request(port, "GET", "/healthz")[0] == 200


# --- the daemon ---------------------------------------------------------------------------------


def webhook_passes(daemon) -> float:
    return metric_sample(daemon_metrics(daemon), "driftwarden_reconcile_duration_seconds_count", trigger="webhook") or 0.0


def daemon_metrics(daemon) -> str:
    code, body, _headers = daemon.request("GET", "/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert code == 200, body
    return body.decode()


def quiet(daemon, seconds: float = 3.0) -> bool:
    """True once the daemon made no fetch for `seconds` (nothing more is coming)."""
    def fetches() -> float:
        return metric_sample(daemon_metrics(daemon), "driftwarden_git_fetch_total", result="success") or 0.0

    before = fetches()
    time.sleep(seconds)
    return fetches() == before


def test_the_daemon_runs_one_pass_for_a_replayed_delivery_and_at_most_two_for_a_burst(origin, start_daemon, tmp_path):  # noqa: F811
    """One delivery replayed 5 times starts one pass; 20 distinct deliveries at once start at most two; the token guards /status."""
    secret = b"webhook-secret-for-tests"
    (tmp_path / "webhook-secret").write_bytes(secret)
    (tmp_path / "http-token").write_bytes(b"scrape-token\n")
    daemon = start_daemon(origin.remote, "--interval", "1h", "--drift-interval", "1h",
                          "--webhook-secret-file", str(tmp_path / "webhook-secret"),
                          "--http-token-file", str(tmp_path / "http-token"))
    daemon.wait_ready()
    assert daemon.request("GET", "/status")[0] == 401
    assert daemon.request("GET", "/status", headers={"Authorization": "Bearer scrape-token"})[0] == 200

    second = origin.commit_and_push({"platform/etl.yaml": deployment_yaml("Hourly loads.")}, "hourly")
    body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    push = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "replayed-1", "X-Hub-Signature-256": signed(secret, body)}
    codes = [daemon.request("POST", "/webhook", body, push)[0] for _ in range(6)]
    assert codes == [202] + [200] * 5
    wait_for(lambda: webhook_passes(daemon) >= 1, "the webhook's pass", daemon=daemon)
    wait_for(lambda: quiet(daemon), "the daemon to settle", daemon=daemon)
    assert webhook_passes(daemon) == 1
    text = daemon_metrics(daemon)
    assert metric_sample(text, "driftwarden_http_requests_rejected_total", reason="duplicate") == 5

    def deliver(i: int) -> int:
        burst = json.dumps({"ref": "refs/heads/main", "after": second, "n": i}).encode()
        return daemon.request("POST", "/webhook", burst, {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"burst-{i}",
                                                          "X-Hub-Signature-256": signed(secret, burst)})[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(deliver, range(20))) == [202] * 20
    wait_for(lambda: webhook_passes(daemon) >= 2, "a pass for the burst", daemon=daemon)
    wait_for(lambda: quiet(daemon), "the daemon to settle", daemon=daemon)
    assert 2 <= webhook_passes(daemon) <= 3
    assert daemon.terminate() == 0


# --- /status text ------------------------------------------------------------------------------


def test_status_error_text_names_no_secret_source_and_no_credential():
    """`last_error` and `fetch_error` on /status carry no secret ARN, SSM name or URL password."""
    from driftwarden.runtime.document import status_document
    from driftwarden.runtime.revisions import Revisions
    from driftwarden.runtime.windows import WindowState

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
    revisions = Revisions()
    revisions.fetch_error = "git fetch https://user:p@ss:w/rd@git.example.com/r.git failed"
    document = status_document(
        version="0", instance="driftwarden", source="s", ready=False, revisions=revisions,
        pass_error=f"cannot read secret source secretsManagerArn {arn}: AccessDeniedException",
        window=WindowState(True, "always"), windows=(), prune={}, next_runs={}, last_pass=None, backoff=[], objects=[],
    )
    assert document["fetch_error"] == "git fetch https://***@git.example.com/r.git failed"
    assert "p@ss" not in json.dumps(document)
    revisions.fetch_error = None
    document = status_document(
        version="0", instance="driftwarden", source="s", ready=False, revisions=revisions,
        pass_error=f"cannot read secret source secretsManagerArn {arn}: AccessDeniedException",
        window=WindowState(True, "always"), windows=(), prune={}, next_runs={}, last_pass=None, backoff=[], objects=[],
    )
    assert document["last_error"] == "cannot read secret source secretsManagerArn <secret reference>: AccessDeniedException"
