"""The one exception hierarchy of driftwarden.

Every error a user can see is a `DriftwardenError`. Errors say what happens next: a
`TransientProviderError` is worth retrying (throttling, 5xx, connection trouble), a
`PermanentProviderError` needs a human (access denied, invalid request). Manifest problems are
not exceptions at all: validation collects them as `Problem` values so a run can report every
one of them at once (see `validation.py`).

This module imports nothing from the rest of the package, so every layer may use it.
"""

from __future__ import annotations


class DriftwardenError(Exception):
    """Base of every error driftwarden raises on purpose."""


class UsageError(DriftwardenError):
    """The command line or settings are wrong (exit code 2)."""


class SourceError(DriftwardenError):
    """The manifest source (a directory or Git remote) could not be read."""


class ProviderError(DriftwardenError):
    """An AWS call failed; `retryable` says whether trying again later can help."""

    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    """Throttling, a 5xx answer or a connection problem: retry later."""

    retryable = True


class PermanentProviderError(ProviderError):
    """AWS refused the request for a reason that retrying will not fix."""

    retryable = False


class AccessDeniedError(PermanentProviderError):
    """The role could not be assumed or lacks a permission."""


class NotFoundError(PermanentProviderError):
    """The resource does not exist (readers treat this as "absent")."""
