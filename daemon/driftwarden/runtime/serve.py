"""The daemon as a process: signals, a bounded stop, and `run --sandbox`'s simulated AWS.

`main` builds the daemon's collaborators (metrics, AWS sessions, the secret resolver) and
serves until SIGTERM or SIGINT. Must not hold daemon state or reconcile anything itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from driftwarden import __version__
from driftwarden.errors import SourceError
from driftwarden.providers.aws import AwsSessions
from driftwarden.runtime.daemon import Daemon
from driftwarden.runtime.http import display_host
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.revisions import validate_snapshot
from driftwarden.runtime.settings import DaemonSettings
from driftwarden.runtime.source import Source


def serve(daemon: Daemon, *, on_started: Callable[[Daemon], None] | None = None) -> int:
    """Run `daemon` until SIGTERM or SIGINT; 0 after a clean stop (see `Daemon.stop`)."""
    stop = threading.Event()
    received: list[str] = []

    def handle(signum: int, _frame: Any) -> None:
        # Only flags here: logging from a signal handler could deadlock on the handler's lock.
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        if on_started is not None:
            on_started(daemon)
        while not stop.wait(0.5):
            pass
        daemon.log.info("daemon.stopping", signal=received[0] if received else None)
        return _stop_within(daemon, daemon.settings.shutdown_timeout_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_within(daemon: Daemon, seconds: float) -> int:
    done = threading.Event()
    failure: list[BaseException] = []

    def stopping() -> None:
        try:
            daemon.stop()
        except BaseException as exc:  # reported below; the process must still end
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=stopping, name="stop", daemon=True).start()
    if not done.wait(seconds):
        # A pass stuck in AWS beyond the grace period: leave rather than be killed mid-write.
        daemon.log.error("daemon.stop_timeout", seconds=seconds)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(1)
    if failure:
        daemon.log.error("daemon.stop_failed", error=str(failure[0]))
        return 1
    return 0


@contextlib.contextmanager
def sandbox_sessions(metrics: Metrics, source: Source, session_factory: Callable[[], Any], out: TextIO) -> Iterator[AwsSessions]:
    """`run --sandbox`: a simulated AWS on loopback, seeded with what manifests expect to exist."""
    from driftwarden.sandbox.server import Sandbox, seed_existing

    with Sandbox() as sandbox:
        sandbox.apply(os.environ)
        print(f"sandbox: simulated AWS at {sandbox.endpoint_url} (empty at start)", file=out, flush=True)
        with AwsSessions(session_factory, endpoint_url=sandbox.endpoint_url, observer=metrics) as sessions:
            try:
                revision = validate_snapshot(source.fetch())
            except SourceError as exc:
                print(f"sandbox: not seeded, the source cannot be read yet: {exc}", file=out, flush=True)
            else:
                if revision.valid:
                    for line in seed_existing(sandbox, sessions, revision.validation.clusters,
                                              revision.validation.deployments):
                        print(f"sandbox: created {line} (a real account would already have it)", file=out, flush=True)
            yield sessions


def sandbox_hint(out: TextIO) -> Callable[[Daemon], None]:
    def hint(daemon: Daemon) -> None:
        host, port = daemon.http_address
        base = f"http://{display_host(host)}:{port}"
        print(f"driftwarden: metrics at {base}/metrics, status at {base}/status (Ctrl-C stops)", file=out, flush=True)

    return hint


def main(
    settings: DaemonSettings,
    source: Source,
    session_factory: Callable[[], Any],
    *,
    sandbox: bool = False,
    out: TextIO = sys.stdout,
    alongside_sandbox: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> int:
    """Build the daemon's collaborators and serve until a signal; the exit code.

    `alongside_sandbox` (with `sandbox`): a context entered once the sandbox is up and left
    after the daemon stops, before the sandbox does (the sandbox's drift injector).
    """
    from driftwarden.providers.registry import default_providers
    from driftwarden.providers.secret_sources import (
        control_secret_resolver,
        sandbox_secret_resolver,
    )

    metrics = Metrics(version=__version__)
    if sandbox:
        with sandbox_sessions(metrics, source, session_factory, out) as sessions:
            daemon = Daemon(source, sessions, metrics, settings, resolve_secret=sandbox_secret_resolver(),
                            providers=default_providers())
            with alongside_sandbox() if alongside_sandbox else contextlib.nullcontext():
                return serve(daemon, on_started=sandbox_hint(out))
    with AwsSessions(session_factory, observer=metrics) as sessions:
        region = session_factory().region_name or "us-east-1"
        daemon = Daemon(source, sessions, metrics, settings, resolve_secret=control_secret_resolver(sessions, region),
                        providers=default_providers())
        return serve(daemon)


__all__ = ["main", "sandbox_hint", "sandbox_sessions", "serve"]
