"""How the daemon runs: `DaemonSettings` and the duration syntax of its flags.

`cli.cmd_run` builds the settings from flags and DRIFTWARDEN_* variables; everything in
runtime/ reads them. Must not read the environment or flags itself, nor start anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from driftwarden.engine.apply import ApplySettings
from driftwarden.engine.graph import DEFAULT_INSTANCE
from driftwarden.errors import UsageError

MAX_WEBHOOK_BYTES = 1 << 20

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `5m`, `1h`, `1h30m` or a bare number of seconds; ValueError otherwise."""
    value = str(text).strip().lower()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(value) or position == 0:
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 1h30m)") from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon runs; `cli.cmd_run` builds it from flags and DRIFTWARDEN_* variables."""

    interval_seconds: float = 60.0
    drift_interval_seconds: float = 300.0
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    webhook_secret_file: Path | None = None
    http_token_file: Path | None = None
    prune: bool = False
    prune_limit: int = 20
    apply_windows: tuple[str, ...] = ()
    instance: str = DEFAULT_INSTANCE
    # Per-place backoff after failed reads or applies: first delay, doubling up to the cap.
    backoff_initial_seconds: float = 30.0
    backoff_max_seconds: float = 30 * 60.0
    max_webhook_bytes: int = MAX_WEBHOOK_BYTES
    # SIGTERM to exit: the pass in progress is let finish, within this bound.
    shutdown_timeout_seconds: float = 25.0
    apply: ApplySettings = field(default_factory=lambda: ApplySettings(wait=False))

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.drift_interval_seconds <= 0:
            raise UsageError("--interval and --drift-interval must be positive")
        if not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: not a TCP port")
        if self.prune_limit < 0:
            raise UsageError("--prune-limit must be 0 or more")
        if self.apply.wait:
            raise UsageError("the daemon never waits for long AWS operations: ApplySettings(wait=False)")
