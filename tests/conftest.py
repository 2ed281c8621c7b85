"""Shared fixtures: a real moto server over HTTP, and helpers to act as the control account or
as a target account.

* `moto_server` (session): moto's `ThreadedMotoServer` on 127.0.0.1 (through
  `driftwarden.sandbox.server.Sandbox`); yields its endpoint URL. ``AWS_ENDPOINT_URL`` points at it
  for the whole session, so even a client built without an endpoint never leaves loopback.
* `aws` (function, not autouse): resets moto's state, then gives an `AwsHelper`:
  `control_session()`, `account_client(account_id, service, region)` (acting inside a target
  account out of band, through AssumeRole of ``driftwarden-remote-management``) and
  `sessions(observer=None, ...)` (driftwarden's own `AwsSessions`, with a fast retry policy).
* `fault_proxy` (function): a `faultproxy.FaultProxy` in front of the moto server.
* `botocore_loader` (session): one botocore model loader shared by every session the helpers
  build; parsing service models is most of the cost of a new client.

Fake credentials are set before any test runs and real-AWS configuration (profiles, config
files, instance metadata) is switched off, so no test can reach real AWS. moto's default AMIs
are not loaded (``MOTO_EC2_LOAD_DEFAULT_AMIS=false``) to keep new accounts cheap.

moto notes: assuming a role with another account id gives an isolated account (resources made
there are invisible elsewhere). Temporary credentials are only known to moto until the next
reset: after `aws` resets, credentials from an earlier test silently map to the default account
123456789012, so never keep `AwsSessions` across tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config
from botocore.loaders import Loader

from driftwarden.providers.aws import AwsSessions, client_config
from driftwarden.providers.calls import ApiCallObserver
from driftwarden.sandbox.server import Sandbox, reset_moto
from faultproxy import FaultProxy

CONTROL_ACCOUNT_ID = "123456789012"  # moto's default account: the daemon's own
REGION = "us-east-1"
TARGET_ROLE_NAME = "driftwarden-remote-management"
FAKE_ENVIRONMENT = {
    # Loading AWS managed policies costs about a second per account on every reset; tests
    # that need them (EKS roles) ask with the `aws_managed_policies` fixture.
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "false",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    # Never read the developer's ~/.aws.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # moto (in this process) would otherwise parse thousands of default AMIs for every new
    # account and region: seconds per test session, and nothing here launches instances.
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}
REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so that nothing imported by a test module sees real credentials.
    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FAKE_ENVIRONMENT)


def fast_retry_config(*, max_attempts: int = 3) -> Config:
    """The retry policy for tests: few attempts and short timeouts, so failures are quick."""
    return client_config(max_attempts=max_attempts, connect_timeout=2, read_timeout=20)


class AwsHelper:
    """What a test needs to talk to moto: as the control account, or as a target account."""

    def __init__(self, endpoint_url: str, data_loader: Loader) -> None:
        self.endpoint_url = endpoint_url
        self._loader = data_loader
        self._assumed: dict[str, dict[str, str]] = {}
        self._sessions: list[AwsSessions] = []

    def control_session(self) -> boto3.Session:
        """A session with the fake static credentials of the control account."""
        return self._session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

    def _session(self, **kwargs: str) -> boto3.Session:
        core = botocore.session.Session()
        core.register_component("data_loader", self._loader)
        return boto3.Session(botocore_session=core, **kwargs)

    def account_client(self, account_id: str, service: str, region: str = REGION) -> Any:
        """A client acting inside `account_id`, out of band (not through driftwarden)."""
        if account_id not in self._assumed:
            sts = self.control_session().client("sts", endpoint_url=self.endpoint_url)
            credentials = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/{TARGET_ROLE_NAME}",
                RoleSessionName="driftwarden-tests",
            )["Credentials"]
            self._assumed[account_id] = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        session = self._session(region_name=region, **self._assumed[account_id])
        return session.client(service, endpoint_url=self.endpoint_url)

    def sessions(
        self,
        observer: ApiCallObserver | None = None,
        *,
        endpoint_url: str | None = None,
        config: Config | None = None,
        **kwargs: Any,
    ) -> AwsSessions:
        """driftwarden's `AwsSessions` against moto (or `endpoint_url`, e.g. a fault proxy)."""
        sessions = AwsSessions(
            self.control_session,
            endpoint_url=endpoint_url or self.endpoint_url,
            observer=observer,
            config=config or fast_retry_config(),
            data_loader=self._loader,
            **kwargs,
        )
        self._sessions.append(sessions)
        return sessions

    def close(self) -> None:
        for sessions in self._sessions:
            sessions.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on loopback for the whole session; yields its endpoint URL."""
    with Sandbox(load_managed_policies=False) as sandbox, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", sandbox.endpoint_url)
        yield sandbox.endpoint_url


@pytest.fixture(scope="session")
def botocore_loader() -> Loader:
    """One botocore model loader for the session: parsing models is the slow part of a client."""
    return botocore.loaders.create_loader()


@pytest.fixture
def aws(moto_server: str, botocore_loader: Loader) -> Iterator[AwsHelper]:
    """A freshly reset moto, and helpers to act as the control or a target account."""
    reset_moto(moto_server)
    helper = AwsHelper(moto_server, botocore_loader)
    yield helper
    helper.close()


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto; point `endpoint_url` at `.endpoint_url`."""
    with FaultProxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def aws_managed_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto know AWS managed policies (EKS roles attach them); ~1 s per account, so opt-in.

    moto reads the setting when it creates an account's IAM backend, i.e. after the reset of the
    `aws` fixture, on the first IAM call of the test.
    """
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
