"""Error mapping: the one place where botocore's errors become driftwarden's.

Every client `providers.aws` hands out raises driftwarden's own `ProviderError` family instead
of botocore's exceptions (`map_error`), so providers and the engine never import botocore to
tell "retry later" (`TransientProviderError`) from "needs a human" (`PermanentProviderError`,
`AccessDeniedError`) from "absent" (`NotFoundError`).

What it must not do: put a credential, the ExternalId or a secret value in a message (AWS's
messages go through `redaction.redact`).
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    CapacityNotAvailableError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from driftwarden.errors import (
    AccessDeniedError,
    NotFoundError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from driftwarden.providers.calls import AccountRef, CallResult
from driftwarden.redaction import redact

_DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
    }
)
# What STS answers when *our* side cannot get in; all of them need a human (trust policy,
# ExternalId, expired control credentials), so all become AccessDeniedError on assume-role.
_ASSUME_ROLE_DENIED_CODES: Final = _DENIED_CODES | {"ExpiredToken", "ExpiredTokenException"}
_NOT_FOUND_CODES: Final = frozenset(
    {"NoSuchEntity", "ResourceNotFoundException", "ResourceNotFound", "404"}
)
_THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "EC2ThrottledException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "PriorRequestNotComplete",
    }
)
_TRANSIENT_CODES: Final = _THROTTLING_CODES | {
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "IDPCommunicationError",
    # With self-refreshing credentials an expired token is a race with the refresh: retrying
    # signs with fresh credentials.
    "ExpiredToken",
    "ExpiredTokenException",
    "ConcurrentModification",
    "ConcurrentModificationException",
    # EC2 says this while a dependent resource is still being deleted (a NAT gateway takes
    # minutes to go); the next cycle succeeds.
    "DependencyViolation",
    # RDS says these while an instance or subnet group is still changing state (a deleting
    # instance holds its subnet group for minutes); the next cycle succeeds.
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "InvalidDBSubnetGroupStateFault",
}


def is_throttling(code: str | None, status: int | None = None) -> bool:
    """Whether an error code (or HTTP 429) means AWS is rate-limiting us."""
    return status == 429 or (code is not None and code in _THROTTLING_CODES)


def _error_class(code: str | None, status: int | None) -> type[ProviderError]:
    code = code or ""
    if code in _DENIED_CODES:
        return AccessDeniedError
    if code in _NOT_FOUND_CODES or "NotFound" in code or code.startswith("NoSuch"):
        return NotFoundError
    if code in _TRANSIENT_CODES or code.startswith("Throttl") or status == 429:
        return TransientProviderError
    if status is not None and status >= 500:
        return TransientProviderError
    return PermanentProviderError


def _where(account: AccountRef | None, region: str | None) -> str:
    place = f"account {account.account_id}" if account else "the control account"
    return f"{place} ({region})" if region else place


def map_error(
    exc: ClientError | BotoCoreError,
    *,
    service: str,
    operation: str,
    account: AccountRef | None = None,
    region: str | None = None,
) -> ProviderError:
    """The driftwarden error for a botocore error; callers `raise map_error(e, ...) from e`.

    Not-found codes (``NoSuchEntity``, ``ResourceNotFoundException``, ``*NotFound*``) give
    `NotFoundError`; access codes (``AccessDenied``, ``UnauthorizedOperation``...) give
    `AccessDeniedError`; throttling, 5xx, timeouts and connection errors give
    `TransientProviderError`; everything else `PermanentProviderError`.
    """
    call = f"{service}:{operation} in {_where(account, region)}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # AWS validation messages quote the offending input, which may be a secret, and error
        # messages reach logs and status.
        message = redact(error.get("Message") or "")
        detail = ": ".join(part for part in (code, message) if part) or f"HTTP {status}"
        return _error_class(code, status)(f"{call} failed: {detail}", code=code)
    code = type(exc).__name__
    cls: type[ProviderError]
    if isinstance(exc, BotoConnectionError | HTTPClientError | CredentialRetrievalError):
        cls = TransientProviderError
    elif isinstance(exc, CapacityNotAvailableError):
        # The adaptive-mode client-side rate limiter ran out of tokens: back off and retry.
        cls = TransientProviderError
    else:
        # No credentials, bad parameters, unknown region...: retrying the same call won't help.
        cls = PermanentProviderError
    return cls(f"{call} failed: {code}: {exc}", code=code)


def assume_role_error(account: AccountRef, cause: ProviderError) -> ProviderError:
    """The error for a failed AssumeRole into `account`, naming account and role, not the id."""
    if cause.code in _ASSUME_ROLE_DENIED_CODES:
        cls: type[ProviderError] = AccessDeniedError
    else:
        cls = type(cause)
    message = (
        f"cannot assume role {account.role_name} in account {account.account_id}: "
        f"{cause.code or 'error'}"
    )
    if cls is AccessDeniedError:
        message += " (check the role's trust policy and the cluster's externalId)"
    return cls(message, code=cause.code)


def call_result_of(error: BaseException) -> CallResult:
    if isinstance(error, AccessDeniedError):
        return "denied"
    if isinstance(error, NotFoundError):
        return "not_found"
    if isinstance(error, ProviderError) and error.retryable:
        return "transient"
    return "error"
