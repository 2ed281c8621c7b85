"""Astro CLI deployment files (`deployment:` at the top) read as driftwarden Deployments.

Teams moving from `astro deployment create --deployment-file` keep their files: this module
converts one (already checked against `astro-deployment.schema.json`) into the document a
`kind: Deployment` manifest would be, and carries every position over, so an error in the
converted Deployment still points at the line of the Astro file that caused it.

Secret values never belong in Git: a variable with `is_secret: true` and a value is an error;
it must say where the value comes from with `value_from` (driftwarden's extension, the same
shape as `valueFrom`).

What it must not do: validate beyond the conversion itself (the Deployment schema and the
cross-manifest checks run on the result, as for any Deployment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from driftwarden.manifests.discovery import Document
from driftwarden.manifests.model import API_VERSION
from driftwarden.manifests.problems import Problem


def is_astro_file(data: Any) -> bool:
    return isinstance(data, dict) and "deployment" in data and "kind" not in data and "apiVersion" not in data


def slug(name: str) -> str:
    """An Astro display name ("Data Science Prod") as a DNS label ("data-science-prod")."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:63].rstrip("-") or "deployment"


_CONFIGURATION_FIELDS = {
    # Astro configuration key -> Deployment spec key
    "cluster_name": "cluster",
    "workspace_name": "workspace",
    "description": "description",
    "runtime_version": "runtimeVersion",
    "executor": "executor",
    "dag_deploy_enabled": "dagDeployEnabled",
    "ci_cd_enforcement": "ciCdEnforced",
}
_QUEUE_FIELDS = {
    "name": "name",
    "worker_type": "workerType",
    "min_worker_count": "minWorkerCount",
    "max_worker_count": "maxWorkerCount",
    "worker_concurrency": "workerConcurrency",
}


def convert(document: Document) -> tuple[Document | None, list[Problem]]:
    """The Deployment document for an Astro deployment file, or the problems that prevent it."""
    source = document.data["deployment"]
    config: Mapping[str, Any] = source.get("configuration") or {}
    moved: dict[str, str] = {"": "", "/apiVersion": "", "/kind": "", "/metadata": "/deployment/configuration"}
    spec: dict[str, Any] = {}
    moved["/spec"] = "/deployment"

    name = config.get("name")
    metadata: dict[str, Any] = {"name": slug(name) if isinstance(name, str) else name}
    moved["/metadata/name"] = "/deployment/configuration/name"

    for astro_key, spec_key in _CONFIGURATION_FIELDS.items():
        if astro_key in config:
            spec[spec_key] = config[astro_key]
            moved[f"/spec/{spec_key}"] = f"/deployment/configuration/{astro_key}"
    scheduler: dict[str, Any] = {}
    if "scheduler_au" in config:
        scheduler["au"] = config["scheduler_au"]
        moved["/spec/scheduler/au"] = "/deployment/configuration/scheduler_au"
    if "scheduler_count" in config:
        scheduler["replicas"] = config["scheduler_count"]
        moved["/spec/scheduler/replicas"] = "/deployment/configuration/scheduler_count"
    if scheduler:
        spec["scheduler"] = scheduler
        moved["/spec/scheduler"] = "/deployment/configuration"

    queues = []
    for i, queue in enumerate(source.get("worker_queues") or []):
        converted = {}
        for astro_key, spec_key in _QUEUE_FIELDS.items():
            if astro_key in queue:
                converted[spec_key] = queue[astro_key]
                moved[f"/spec/workerQueues/{i}/{spec_key}"] = f"/deployment/worker_queues/{i}/{astro_key}"
        moved[f"/spec/workerQueues/{i}"] = f"/deployment/worker_queues/{i}"
        queues.append(converted)
    if queues:
        spec["workerQueues"] = queues
        moved["/spec/workerQueues"] = "/deployment/worker_queues"

    problems: list[Problem] = []
    variables = []
    for i, variable in enumerate(source.get("environment_variables") or []):
        at = f"/deployment/environment_variables/{i}"
        moved[f"/spec/environmentVariables/{i}"] = at
        moved[f"/spec/environmentVariables/{i}/key"] = f"{at}/key"
        key = variable.get("key")
        if variable.get("is_secret"):
            if variable.get("value") not in (None, ""):
                line, column = document.position(f"{at}/value")
                problems.append(
                    Problem.error(
                        document.file,
                        "secret.value-in-git",
                        f"secret variable {key!r} carries its value in the file; secret values must "
                        "not be in Git: remove 'value' and add value_from (secretsManagerArn, "
                        "ssmParameter or env)",
                        line=line,
                        column=column,
                        pointer=f"{at}/value",
                        kind="Deployment",
                        name=metadata["name"] if isinstance(metadata["name"], str) else None,
                    )
                )
                continue
            if "value_from" not in variable:
                line, column = document.position(at)
                problems.append(
                    Problem.error(
                        document.file,
                        "secret.no-source",
                        f"secret variable {key!r} has no value_from: say where its value is read "
                        "at apply time (secretsManagerArn, ssmParameter or env)",
                        line=line,
                        column=column,
                        pointer=at,
                        kind="Deployment",
                        name=metadata["name"] if isinstance(metadata["name"], str) else None,
                    )
                )
                continue
            variables.append({"key": key, "isSecret": True, "valueFrom": variable["value_from"]})
            moved[f"/spec/environmentVariables/{i}/valueFrom"] = f"{at}/value_from"
        else:
            variables.append({"key": key, "value": "" if variable.get("value") is None else variable["value"]})
            moved[f"/spec/environmentVariables/{i}/value"] = f"{at}/value"
    if variables:
        spec["environmentVariables"] = variables
        moved["/spec/environmentVariables"] = "/deployment/environment_variables"

    emails = source.get("alert_emails")
    if emails:
        spec["alertEmails"] = list(emails)
        moved["/spec/alertEmails"] = "/deployment/alert_emails"
        for i in range(len(emails)):
            moved[f"/spec/alertEmails/{i}"] = f"/deployment/alert_emails/{i}"

    if problems:
        return None, problems
    data = {"apiVersion": API_VERSION, "kind": "Deployment", "metadata": metadata, "spec": spec}
    positions = {ours: document.position(theirs) for ours, theirs in moved.items()}
    return Document(document.file, document.index, data, positions, {}, moved), []
