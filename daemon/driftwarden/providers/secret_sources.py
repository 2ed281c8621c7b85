"""Where secret inputs (`valueFrom`) are read: the control account's SSM and Secrets Manager.

A Deployment's secret variables name a source: an environment variable of the daemon, an SSM
parameter or a Secrets Manager secret in the *control* account (driftwarden's own identity, not
a cluster's). This module makes the resolver the engine is handed (`plan_once(resolve_secret=)`):
`control_secret_resolver` reads the real sources, `sandbox_secret_resolver` stands in for them in
the sandbox, where there is no control account.

What it must not do: log, keep or put a secret value in an error message: errors name the
source and AWS's error code only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from driftwarden.errors import DriftwardenError, ProviderError
from driftwarden.manifests.model import SecretSource
from driftwarden.providers.aws import AwsSessions

SecretResolver = Callable[[SecretSource], str]


def control_secret_resolver(sessions: AwsSessions, default_region: str) -> SecretResolver:
    """Read a `valueFrom` source in the control account (the daemon's own identity)."""

    def resolve(source: SecretSource) -> str:
        if source.kind == "env":
            if source.ref not in os.environ:
                raise DriftwardenError(f"environment variable {source.ref} is not set in the daemon")
            return os.environ[source.ref]
        if source.kind == "ssmParameter":
            region = source.ref.split(":")[3] if source.ref.startswith("arn:") else default_region
            client = sessions.control_client("ssm", region)
            name = source.ref.split(":parameter", 1)[-1] if source.ref.startswith("arn:") else source.ref
            return str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        region = source.ref.split(":")[3]
        client = sessions.control_client("secretsmanager", region)
        value = str(client.get_secret_value(SecretId=source.ref)["SecretString"])
        if source.json_key:
            return str(json.loads(value)[source.json_key])
        return value

    return _mapping_errors(resolve)


def sandbox_secret_resolver() -> SecretResolver:
    """In the sandbox there is no control account to read from: stand-in values, never real ones."""

    def resolve(source: SecretSource) -> str:
        if source.kind == "env" and source.ref in os.environ:
            return os.environ[source.ref]
        return f"sandbox-placeholder-for-{source.kind}"

    return resolve


def _mapping_errors(resolve: SecretResolver) -> SecretResolver:
    def wrapped(source: SecretSource) -> str:
        try:
            return resolve(source)
        except ProviderError:
            raise
        except DriftwardenError:
            raise
        except Exception as exc:  # botocore errors carry no secret values, only codes
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise DriftwardenError(f"cannot read secret source {source.kind} {source.ref}: {code}") from exc

    return wrapped
