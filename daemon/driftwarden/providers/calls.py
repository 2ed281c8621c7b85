"""Accounting of AWS calls, and the account a call goes to: values and counters, no boto3.

`AccountRef` names a target account and the role to assume there; `ApiCallObserver` receives
one event per logical call, retry and throttle (`providers.aws` reports them from botocore's
event hooks), for the `aws_api_calls_total` / `aws_throttled_total` metrics and for tests that
prove a second apply makes no mutating call; `iam_action` and `is_mutating` classify calls.

What it must not do: import boto3 or botocore, or hold a credential (the ExternalId is kept out
of `AccountRef`'s repr).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

# --------------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRef:
    """A target account and how to get into it: the role to assume and its ExternalId."""

    account_id: str
    role_name: str
    # Kept out of repr so that logging an AccountRef never prints it.
    external_id: str = field(repr=False)

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.role_name}"


# --------------------------------------------------------------------------------------------
# Observing calls
# --------------------------------------------------------------------------------------------

CallResult = Literal["ok", "retried", "not_found", "denied", "transient", "error"]

#: Every `result` an observer can receive, and what each one means:
#:
#: * ``ok`` — a call finished successfully (once per logical call);
#: * ``retried`` — botocore sent one more attempt for a call (once per retry, so a call
#:   throttled twice and then answered reports ``retried`` twice and ``ok`` once);
#: * ``not_found`` — the call finished with a not-found error (`NotFoundError`; readers treat
#:   it as "absent", so it is not a failure of driftwarden);
#: * ``denied`` — the call finished with `AccessDeniedError` (role or permission missing);
#: * ``transient`` — the call finished with `TransientProviderError`: throttling, 5xx or
#:   connection trouble that outlasted every retry;
#: * ``error`` — the call finished with any other error.
#:
#: So ``ok + not_found + denied + transient + error`` counts logical calls, and ``retried``
#: counts the extra HTTP attempts on top of them.
CALL_RESULTS: Final[tuple[CallResult, ...]] = (
    "ok",
    "retried",
    "not_found",
    "denied",
    "transient",
    "error",
)

# Operations that only read. Anything else counts as mutating, except the calls that change no
# resource but are needed to get in at all.
_READ_ONLY_PREFIXES: Final = ("Describe", "List", "Get", "Head", "Lookup")
_NON_MUTATING_CALLS: Final = frozenset({("sts", "AssumeRole")})


# botocore's service names that differ from the prefix of IAM actions.
_IAM_PREFIXES: Final = {"resourcegroupstaggingapi": "tag", "service-quotas": "servicequotas"}


def iam_action(service: str, operation: str) -> str:
    """The IAM action that authorises a call: (``resourcegroupstaggingapi``, ``GetResources``) -> ``tag:GetResources``."""
    return f"{_IAM_PREFIXES.get(service, service)}:{operation}"


def is_mutating(service: str, operation: str) -> bool:
    """Whether an operation (e.g. ``CreateVpc``) can change AWS state."""
    if (service, operation) in _NON_MUTATING_CALLS:
        return False
    return not operation.startswith(_READ_ONLY_PREFIXES)


class ApiCallObserver(Protocol):
    """Receives one event per logical AWS call, per retry and per throttled attempt.

    `service` is botocore's service name (``ec2``, ``eks``, ``secretsmanager``...), `operation`
    the API name (``DescribeVpcs``), `result` one of `CALL_RESULTS`. Implementations must be
    thread-safe and fast: they run inside every AWS call, on the caller's thread.
    """

    def api_call(self, service: str, operation: str, result: CallResult) -> None: ...

    def throttled(self, service: str) -> None: ...


class NullObserver:
    """An observer that ignores everything."""

    def api_call(self, service: str, operation: str, result: CallResult) -> None:
        return None

    def throttled(self, service: str) -> None:
        return None


class CountingObserver:
    """Counts calls by (service, operation, result) and throttles by service; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._throttles: Counter[str] = Counter()

    def api_call(self, service: str, operation: str, result: CallResult) -> None:
        with self._lock:
            self._calls[(service, operation, result)] += 1

    def throttled(self, service: str) -> None:
        with self._lock:
            self._throttles[service] += 1

    @property
    def calls(self) -> Counter[tuple[str, str, str]]:
        """A snapshot of the call counts, keyed by (service, operation, result)."""
        with self._lock:
            return Counter(self._calls)

    @property
    def throttles(self) -> Counter[str]:
        """A snapshot of throttled attempts by service."""
        with self._lock:
            return Counter(self._throttles)

    def count(
        self, service: str | None = None, operation: str | None = None, result: str | None = None
    ) -> int:
        """How many events match; None matches anything."""
        return sum(
            n
            for (s, o, r), n in self.calls.items()
            if (service is None or s == service)
            and (operation is None or o == operation)
            and (result is None or r == result)
        )

    def mutating_calls(self) -> int:
        """Logical calls (retries not counted twice) to operations that can change AWS state."""
        return sum(
            n for (s, o, r), n in self.calls.items() if r != "retried" and is_mutating(s, o)
        )

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._throttles.clear()
