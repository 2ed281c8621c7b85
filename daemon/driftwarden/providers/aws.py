"""The AWS access layer: the only module that builds boto3 sessions and clients.

What it owns:

* `AwsSessions` — clients for the daemon's own (control) identity and, through
  `sts:AssumeRole` with the cluster's ExternalId, for every target account. Assumed-role
  credentials refresh themselves before they expire; credentials are cached per
  (account, role, external id) and clients per (account, role, external id, region, service),
  built once and shared by every thread (botocore clients are thread-safe, sessions are not, so
  building happens under a lock).
* The retry policy (`client_config`): botocore's "standard" or "adaptive" mode, i.e. jittered
  exponential backoff on throttling, 5xx and connection errors, with connect/read timeouts.
* Error mapping (`aws_errors.map_error`, applied here by each client's hooks): every client
  handed out raises driftwarden's own `ProviderError` family instead of botocore's exceptions,
  so providers and the engine never import botocore to tell "retry later" from "needs a human"
  from "absent".
* Call accounting (`calls.ApiCallObserver`): every logical call, retry and throttle is reported, for
  the `aws_api_calls_total` / `aws_throttled_total` metrics and for tests that prove a second
  apply makes no mutating call.

Both error mapping and accounting are botocore event handlers (`after-call`,
`after-call-error`, `needs-retry`) registered on each client, not wrappers around client
methods: that way paginators see them too, retries are observed where botocore makes them, and a
client stays a plain boto3 client. One consequence: botocore *waiters* that expect a
`ClientError` (error acceptors) do not work on these clients; poll with a provider's `refresh`.

What it must not do: log, return or put in an error message any credential (access key, secret,
session token) or the ExternalId; decide anything about resources (that is the providers' job).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import boto3
import botocore.session
from botocore import xform_name
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from driftwarden.errors import (
    ProviderError,
)
from driftwarden.providers.aws_errors import (
    assume_role_error,
    call_result_of,
    is_throttling,
    map_error,
)
from driftwarden.providers.calls import AccountRef, ApiCallObserver, NullObserver

logger = logging.getLogger(__name__)

# A botocore client. Its operations are generated at runtime, so there is no useful static type.
AwsClient = Any

SessionFactory = Callable[[], boto3.Session]
Clock = Callable[[], datetime]



# --------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------


def client_config(
    *,
    retry_mode: Literal["standard", "adaptive"] | None = None,
    max_attempts: int | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    max_pool_connections: int = 32,
) -> Config:
    """The botocore policy for every client: retries with jittered backoff, and timeouts.

    "standard" retries throttling, 5xx, timeouts and connection errors with jittered
    exponential backoff (capped at 20 s per wait by botocore); "adaptive" adds client-side rate
    limiting per client, i.e. per account, region and service here. `max_attempts` counts the
    first attempt. Left out, both follow boto3's standard environment (``AWS_RETRY_MODE``,
    ``AWS_MAX_ATTEMPTS``), else "standard" and 5: an explicit Config would otherwise hide those
    variables from botocore. The connection pool is sized for the reconcile thread pool.
    """
    if retry_mode is None:
        mode = os.environ.get("AWS_RETRY_MODE", "standard")
        retry_mode = "adaptive" if mode == "adaptive" else "standard"
    if max_attempts is None:
        max_attempts = _positive_int(os.environ.get("AWS_MAX_ATTEMPTS"), default=5)
    return Config(
        # botocore's Config "max_attempts" counts retries only; "total_max_attempts" counts
        # the first attempt too, like AWS_MAX_ATTEMPTS and the config file do.
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        user_agent_extra="driftwarden",
    )


def _positive_int(text: str | None, *, default: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value >= 1 else default


# --------------------------------------------------------------------------------------------
# Per-client hooks: accounting and error mapping
# --------------------------------------------------------------------------------------------


class _ClientHooks:
    """botocore event handlers for one client: count calls, retries, throttles; map errors."""

    def __init__(self, client: AwsClient, observer: ApiCallObserver, account: AccountRef | None):
        self._client = client
        self._observer = observer
        self._account = account
        self._service: str = client.meta.service_model.service_name
        self._region: str | None = client.meta.region_name

    def install(self) -> None:
        events = self._client.meta.events
        # `register_last` so that botocore's own after-call handlers (retry quota...) run first.
        events.register_last("after-call", self._after_call)
        events.register_last("after-call-error", self._after_call_error)
        # Returning None leaves the retry decision to botocore's retry handler.
        events.register("needs-retry", self._needs_retry)

    def _count_retries(self, operation: str, context: Mapping[str, Any]) -> None:
        attempts = int(context.get("retries", {}).get("attempt", 1))
        for _ in range(attempts - 1):
            self._observer.api_call(self._service, operation, "retried")

    def _needs_retry(
        self, response: tuple[Any, dict[str, Any]] | None = None, **_: Any
    ) -> None:
        # Called after every attempt, retried or not: the place to see each throttle.
        if response is None:
            return
        http, parsed = response
        if is_throttling(parsed.get("Error", {}).get("Code"), http.status_code):
            self._observer.throttled(self._service)

    def _after_call(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: Mapping[str, Any],
        **_: Any,
    ) -> None:
        operation = model.name
        self._count_retries(operation, context)
        if http_response.status_code < 300:
            self._observer.api_call(self._service, operation, "ok")
            return
        # The same ClientError botocore would raise next, kept as the cause.
        code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
        cause = self._client.exceptions.from_code(code)(parsed, operation)
        error = map_error(
            cause,
            service=self._service,
            operation=operation,
            account=self._account,
            region=self._region,
        )
        self._observer.api_call(self._service, operation, call_result_of(error))
        raise error from cause

    def _after_call_error(
        self, exception: BaseException, context: Mapping[str, Any], event_name: str, **_: Any
    ) -> None:
        # The request never got an HTTP answer (connection trouble, or credentials failed).
        operation = event_name.rsplit(".", 1)[-1]
        self._count_retries(operation, context)
        if isinstance(exception, ProviderError):
            # Already ours: a failed AssumeRole while signing this request.
            self._observer.api_call(self._service, operation, call_result_of(exception))
            return
        if not isinstance(exception, ClientError | BotoCoreError):
            # Not an AWS problem but a bug: let it surface unchanged.
            self._observer.api_call(self._service, operation, "error")
            return
        error = map_error(
            exception,
            service=self._service,
            operation=operation,
            account=self._account,
            region=self._region,
        )
        self._observer.api_call(self._service, operation, call_result_of(error))
        raise error from exception


# --------------------------------------------------------------------------------------------
# Sessions and clients
# --------------------------------------------------------------------------------------------


class _FixedCredentialProvider(CredentialProvider):  # type: ignore[misc]  # botocore is untyped
    """Hands one credentials object to a botocore session (the public way to set them)."""

    METHOD = "driftwarden-assume-role"
    CANONICAL_NAME = "driftwarden-assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def default_role_session_name() -> str:
    """``driftwarden-<host>``: CloudTrail in the target account shows which daemon called."""
    host = re.sub(r"[^\w+=,.@-]", "-", socket.gethostname(), flags=re.ASCII) or "daemon"
    return f"driftwarden-{host}"[:64]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AwsSessions:
    """boto3 clients for the control identity and for assumed roles in target accounts.

    `session_factory` builds the control session (the daemon's own identity; in tests, fake
    static credentials). `endpoint_url` overrides every client's endpoint; by default botocore
    resolves it itself (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, config files).
    `clock` is what the refreshing credentials compare their expiry with. `data_loader` is a
    botocore `Loader` to share: parsing a service model costs far more than building a client
    from it, so every account session shares one loader (by default the first one made here;
    tests pass one loader to every `AwsSessions` they build).
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        endpoint_url: str | None = None,
        observer: ApiCallObserver | None = None,
        config: Config | None = None,
        sts_region: str | None = None,
        role_session_name: str | None = None,
        credential_duration_seconds: int = 3600,
        clock: Clock = _utc_now,
        data_loader: Any = None,
    ) -> None:
        self._session_factory = session_factory
        self._endpoint_url = endpoint_url
        self._observer: ApiCallObserver = observer or NullObserver()
        self._config = config or client_config()
        self._sts_region = sts_region
        self._role_session_name = role_session_name or default_role_session_name()
        self._duration = credential_duration_seconds
        self._clock = clock
        # Building sessions and clients is not thread-safe in boto3; using clients is.
        self._lock = threading.RLock()
        self._control_session: boto3.Session | None = None
        self._account_sessions: dict[AccountRef, boto3.Session] = {}
        self._control_clients: dict[tuple[str, str], AwsClient] = {}
        self._clients: dict[tuple[AccountRef, str, str], AwsClient] = {}
        # Shared by every account session so service models are parsed once, not per account.
        self._loader: Any = data_loader

    @property
    def observer(self) -> ApiCallObserver:
        return self._observer

    def control_client(self, service: str, region: str) -> AwsClient:
        """A client acting as the daemon itself (the control account)."""
        key = (service, region)
        client = self._control_clients.get(key)
        if client is not None:
            return client
        with self._lock:
            if key not in self._control_clients:
                session = self._control()
                self._control_clients[key] = self._build(session, service, region, None)
            return self._control_clients[key]

    def client(self, account: AccountRef, region: str, service: str) -> AwsClient:
        """A client acting as `account.role_name` in `account`, via AssumeRole + ExternalId.

        The role is assumed lazily, on the first call made with any client of that account,
        and again shortly before the credentials expire.
        """
        key = (account, region, service)
        client = self._clients.get(key)
        if client is not None:
            return client
        with self._lock:
            if key not in self._clients:
                session = self._account_session(account)
                self._clients[key] = self._build(session, service, region, account)
            return self._clients[key]

    def close(self) -> None:
        """Close every client's connection pool; the object must not be used afterwards."""
        with self._lock:
            for client in [*self._control_clients.values(), *self._clients.values()]:
                client.close()
            self._control_clients.clear()
            self._clients.clear()

    def __enter__(self) -> AwsSessions:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _control(self) -> boto3.Session:
        if self._control_session is None:
            self._control_session = self._session_factory()
        return self._control_session

    def _build(
        self, session: boto3.Session, service: str, region: str, account: AccountRef | None
    ) -> AwsClient:
        client = session.client(
            service, region_name=region, endpoint_url=self._endpoint_url, config=self._config
        )
        _ClientHooks(client, self._observer, account).install()
        return client

    def _account_session(self, account: AccountRef) -> boto3.Session:
        session = self._account_sessions.get(account)
        if session is not None:
            return session
        control = self._control()
        # Same profile as the control session (for region and endpoint settings); boto3 reports
        # "default" when none was chosen, and naming a missing "default" is an error.
        profile = control.profile_name if control.profile_name != "default" else None
        core = botocore.session.Session(profile=profile)
        if self._loader is None:
            self._loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", self._loader)
        sts_region = self._sts_region or control.region_name or "us-east-1"
        credentials = DeferredRefreshableCredentials(
            refresh_using=self._assume_role_refresher(account, sts_region),
            method=_FixedCredentialProvider.METHOD,
            time_fetcher=self._clock,
        )
        core.register_component(
            "credential_provider", CredentialResolver([_FixedCredentialProvider(credentials)])
        )
        session = boto3.Session(botocore_session=core)
        self._account_sessions[account] = session
        return session

    def _assume_role_refresher(
        self, account: AccountRef, sts_region: str
    ) -> Callable[[], dict[str, str]]:
        # Runs on whichever thread first signs a request with these credentials, and again
        # before they expire; botocore serialises the calls.
        def refresh() -> dict[str, str]:
            sts = self.control_client("sts", sts_region)
            try:
                response = sts.assume_role(
                    RoleArn=account.role_arn,
                    RoleSessionName=self._role_session_name,
                    ExternalId=account.external_id,
                    DurationSeconds=self._duration,
                )
            except ProviderError as e:
                # The STS client's hooks already mapped it; name the account and role instead.
                raise assume_role_error(account, e) from e
            credentials = response["Credentials"]
            logger.debug(
                "assumed role %s in account %s", account.role_name, account.account_id
            )
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        return refresh


# --------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------


def paginate(client: AwsClient, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    """Every item under `result_key` across all pages of `operation`, via botocore paginators.

    `operation` may be the API name (``DescribeVpcs``) or the method name (``describe_vpcs``);
    `result_key` is a JMESPath expression (``Vpcs``, ``Reservations[].Instances[]``); `kwargs`
    are the operation's parameters (and ``PaginationConfig``). Pages are fetched lazily.
    """
    paginator = client.get_paginator(xform_name(operation))
    for item in paginator.paginate(**kwargs).search(result_key):
        # `search` yields None for a page without the key; that is "no items", not an item.
        if item is not None:
            yield item


def as_provider_error(
    exc: BaseException, *, service: str, account: AccountRef | None = None, region: str | None = None
) -> ProviderError | None:
    """`exc` as driftwarden's own error when it came from AWS (botocore); None otherwise.

    The engine calls providers, which let botocore errors through; this is where they become
    `ProviderError`s, so no module outside this one needs to know botocore's exceptions.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ClientError | BotoCoreError):
        operation = getattr(exc, "operation_name", None) or "call"
        return map_error(exc, service=service, operation=operation, account=account, region=region)
    return None


# --------------------------------------------------------------------------------------------
# The caller's own AWS configuration, for the command line (which imports no boto3 itself)
# --------------------------------------------------------------------------------------------

# The region of control-account calls when boto3's configuration names none: STS and the
# secret sources answer in every region, and a default beats refusing to start.
FALLBACK_REGION: Final = "us-east-1"


def default_session_factory() -> SessionFactory:
    """boto3's standard session: credentials and region from the environment, profile or role."""
    return boto3.Session


def default_region(session_factory: SessionFactory | None = None) -> str:
    """The region boto3's standard configuration names (AWS_REGION, the profile), else us-east-1."""
    session = (session_factory or default_session_factory())()
    return session.region_name or FALLBACK_REGION


def control_account_id(session_factory: SessionFactory | None = None) -> str:
    """The account id of the caller's own identity, from sts:GetCallerIdentity."""
    factory = session_factory or default_session_factory()
    with AwsSessions(factory) as sessions:
        identity = sessions.control_client("sts", default_region(factory)).get_caller_identity()
    return str(identity["Account"])
