"""The daemon's log: one event per line, JSON for machines or text for people.

Every record is an *event* with a stable name (``sync.fetched``, ``apply.applied``,
``drift.detected``...) and a few fields where they matter: ``object``, ``revision``,
``account``, ``region``, ``resource``, ``error``. The JSON form is one object per line::

    {"time": "2024-05-01T12:00:00.123Z", "level": "info", "event": "apply.applied",
     "object": "Cluster/prod-use1", "resource": "Cluster/prod-use1/vpc", "action": "create"}

Levels follow the rule "INFO only when something changed or failed": a new revision, an
applied change, drift found or healed, an error. Routine work (an idle fetch, an empty plan)
is DEBUG.

What it owns: configuring the root logger once per process (`configure`), the event helper
(`EventLog`), and the third-party loggers' levels. botocore at DEBUG prints request
signatures, credentials and parameter values (secret values included), so botocore, boto3,
urllib3, s3transfer, apscheduler, werkzeug and git stay at WARNING whatever level is asked.

What it must not do: log secrets. Callers pass no secret values; as a last line of defence
the formatter strips credentials from every string (`driftwarden.redaction.redact`: URL user
info such as ``https://user:token@host``, tokens, Authorization headers, AWS secret keys).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from driftwarden.redaction import redact

LogFormat = Literal["json", "text"]

# Loggers of libraries that are chatty at INFO or leak secrets at DEBUG.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "apscheduler", "werkzeug", "git", "moto")

_FIELDS_ATTRIBUTE = "driftwarden_fields"
_EVENT_ATTRIBUTE = "driftwarden_event"
_RESERVED = frozenset({"time", "level", "event", "logger", "message"})


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a field value; strings are stripped of credentials."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _event_and_fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    event = getattr(record, _EVENT_ATTRIBUTE, None)
    fields = dict(getattr(record, _FIELDS_ATTRIBUTE, None) or {})
    if event is None:
        # A record from a library (apscheduler's "job missed", ...): its logger names it.
        event = record.name
        fields["message"] = record.getMessage()
    if record.exc_info and record.exc_info[0] is not None:
        fields.setdefault("error", str(record.exc_info[1]))
        fields["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return event, fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_and_fields(record)
        line: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname.lower(), "event": event}
        for key, value in fields.items():
            line[key if key not in _RESERVED or key == "message" else f"field_{key}"] = _plain(value)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``time level event key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _event_and_fields(record)
        trace = fields.pop("traceback", None)
        parts = [_timestamp(record), f"{record.levelname.lower():<7}", event]
        for key, value in fields.items():
            plain = _plain(value)
            text = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False, default=str)
            parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
        line = " ".join(parts)
        return f"{line}\n{trace}" if trace else line


class _RoutineSchedulerNotices(logging.Filter):
    """Drop APScheduler's "skipped: maximum number of running instances reached" warnings.

    A pass longer than the interval makes the scheduler skip a run and warn every time;
    skipping is the intended behaviour (`max_instances=1`), so it is DEBUG news at most.
    """

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apscheduler") and "maximum number of running instances" in record.getMessage():
            return self.verbose
        return True


def default_format(stream: TextIO = sys.stderr) -> LogFormat:
    """JSON unless a person is watching (stderr is a terminal)."""
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(log_format: LogFormat | None = None, *, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (default stderr) in `log_format`; quiet the libraries."""
    stream = stream or sys.stderr
    chosen = log_format or default_format(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(_RoutineSchedulerNotices(verbose=level <= logging.DEBUG))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # A role that cannot be assumed makes botocore warn, with a traceback, on every call that
    # tries to refresh it; driftwarden reports the failure itself, once per place.
    logging.getLogger("botocore.credentials").setLevel(logging.ERROR)


class EventLog:
    """Structured events on a stdlib logger: ``log.info("apply.applied", object=..., resource=...)``."""

    def __init__(self, logger: logging.Logger | str = "driftwarden") -> None:
        self._logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)

    def _emit(self, level: int, event: str, fields: Mapping[str, Any], exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        clean = {k: v for k, v in fields.items() if v is not None}
        self._logger.log(
            level, event, exc_info=exc_info, extra={_EVENT_ATTRIBUTE: event, _FIELDS_ATTRIBUTE: clean}
        )

    def debug(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, *, exc_info: bool = False, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields, exc_info=exc_info)

    def enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)
