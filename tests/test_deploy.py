"""deploy/: the ECS task definition and the IAM policies agree with the code they configure.

Static checks, no AWS: the task definition's DRIFTWARDEN_* variables are ones `driftwarden run`
reads (found from the argparse parser, see `driftwarden.cli.reference.environment_variables`) and
parse as the flags would; its port, health check, volumes and stop timeout match the daemon;
the policies are valid IAM documents naming the schema's default role; every placeholder is
explained in deploy/README.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from driftwarden.cli import reference
from driftwarden.cli.main import build_parser
from driftwarden.runtime.settings import DaemonSettings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
TASK_DEFINITION = DEPLOY / "ecs" / "task-definition.json"
CONTROL_POLICY = DEPLOY / "iam" / "control-account-policy.json"
EXECUTION_POLICY = DEPLOY / "iam" / "execution-role-policy.json"
ECS_TRUST_POLICY = DEPLOY / "iam" / "ecs-tasks-trust-policy.json"
PLACEHOLDER = re.compile(r"<[a-z][a-z0-9-]*>")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture
def task() -> dict[str, Any]:
    return load(TASK_DEFINITION)


def daemon_container(task: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in task["containerDefinitions"] if c["name"] == "driftwarden"]
    return container


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


def default_role_name() -> str:
    schema = load(REPO / "schemas" / "cluster.schema.json")
    return schema["properties"]["spec"]["properties"]["account"]["properties"]["roleName"]["default"]


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_the_task_definition_is_a_fargate_task_with_both_roles(task):
    """Valid JSON for `aws ecs register-task-definition`: Fargate, awsvpc, task and execution roles."""
    assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
    assert re.fullmatch(r"arn:aws:iam::<control-account-id>:role/[\w+=,.@-]+", task["taskRoleArn"])
    assert re.fullmatch(r"arn:aws:iam::<control-account-id>:role/[\w+=,.@-]+", task["executionRoleArn"])
    assert task["taskRoleArn"] != task["executionRoleArn"]
    names = [c["name"] for c in task["containerDefinitions"]]
    assert len(names) == len(set(names))
    assert daemon_container(task)["essential"] is True


def test_every_driftwarden_variable_is_an_option_of_run(task):
    """Each DRIFTWARDEN_* variable the task sets is one that `driftwarden run` really reads."""
    readable = reference.environment_variables("run")
    assert "DRIFTWARDEN_SOURCE" in readable  # the detection itself works
    container = daemon_container(task)
    names = set(environment(container)) | {s["name"] for s in container.get("secrets", [])}
    unknown = sorted(n for n in names if n.startswith("DRIFTWARDEN_") and n not in readable)
    assert not unknown, f"not read by `driftwarden run`: {unknown}"


def test_each_variable_means_what_its_flag_means(task, monkeypatch):
    """`run` configured by the task's variables parses exactly as with the same values as flags."""
    variables = {k: v for k, v in environment(daemon_container(task)).items() if k.startswith("DRIFTWARDEN_")}
    flags = reference.environment_variables("run")
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    switches = {f for a in commands.choices["run"]._actions if a.nargs == 0 for f in a.option_strings}
    argv = ["run"]
    for name, value in variables.items():
        # A switch (--prune) takes no value: its variable says "1" where the flag is simply given.
        argv += ([flags[name]] if value == "1" else []) if flags[name] in switches else [flags[name], value]
    for name in [n for n in os.environ if n.startswith("DRIFTWARDEN_")]:
        monkeypatch.delenv(name)
    from_flags = vars(build_parser().parse_args(argv))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    from_environment = vars(build_parser().parse_args(["run"]))
    assert {k: v for k, v in from_environment.items() if k != "handler"} == {
        k: v for k, v in from_flags.items() if k != "handler"
    }


def test_the_metrics_port_is_mapped_and_health_checked(task):
    """The port mapping and the health check use the port the daemon listens on, and ask /healthz."""
    container = daemon_container(task)
    port = int(environment(container).get("DRIFTWARDEN_METRICS_PORT", DaemonSettings().metrics_port))
    assert [m["containerPort"] for m in container["portMappings"]] == [port]
    check = " ".join(container["healthCheck"]["command"])
    assert container["healthCheck"]["command"][0] == "CMD"
    assert f"127.0.0.1:{port}/healthz" in check
    assert container["healthCheck"]["startPeriod"] >= 30


def test_the_root_filesystem_is_read_only_and_the_cache_is_a_writable_volume(task):
    """readonlyRootFilesystem, with the --cache-dir on a writable task volume."""
    volumes = {v["name"] for v in task["volumes"]}
    for container in task["containerDefinitions"]:
        assert container["readonlyRootFilesystem"] is True, container["name"]
        assert {m["sourceVolume"] for m in container.get("mountPoints", [])} <= volumes
    container = daemon_container(task)
    cache = environment(container)["DRIFTWARDEN_CACHE_DIR"]
    writable = [m for m in container["mountPoints"] if not m.get("readOnly")]
    assert any(Path(cache).is_relative_to(m["containerPath"]) for m in writable), cache


def test_files_named_by_variables_are_on_volumes_an_init_container_fills(task):
    """The token and webhook secret files are on a mounted volume written by a container that must succeed first."""
    container = daemon_container(task)
    files = {k: v for k, v in environment(container).items() if k.endswith("_FILE")}
    assert set(files) == {"DRIFTWARDEN_HTTPS_TOKEN_FILE", "DRIFTWARDEN_WEBHOOK_SECRET_FILE"}
    init_names = {d["containerName"] for d in container["dependsOn"] if d["condition"] == "SUCCESS"}
    inits = [c for c in task["containerDefinitions"] if c["name"] in init_names]
    for path in files.values():
        (mount,) = [m for m in container["mountPoints"] if Path(path).is_relative_to(m["containerPath"])]
        assert mount["readOnly"] is True
        writers = [(c, m) for c in inits for m in c["mountPoints"]
                   if m["sourceVolume"] == mount["sourceVolume"] and not m.get("readOnly")]
        assert writers, f"nothing writes {path}"
        writer, where = writers[0]
        target = Path(where["containerPath"]) / Path(path).relative_to(mount["containerPath"])
        assert f"> {target}" in " ".join(writer["command"]), target


def test_the_secrets_come_from_secrets_manager_through_the_execution_role(task):
    """Every `secrets` valueFrom is a Secrets Manager ARN the execution role may read."""
    allowed = [
        resource
        for statement in statements(load(EXECUTION_POLICY))
        if statement["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    sources = [s["valueFrom"] for c in task["containerDefinitions"] for s in c.get("secrets", [])]
    assert len(sources) >= 2
    for source in sources:
        assert any(fnmatch.fnmatchcase(source, pattern) for pattern in allowed), source


def test_the_daemon_gets_time_to_finish_its_pass(task):
    """stopTimeout is at least 30 s and longer than the daemon's own shutdown bound."""
    stop = daemon_container(task)["stopTimeout"]
    assert stop >= 30 and stop > DaemonSettings().shutdown_timeout_seconds


def test_logs_go_to_cloudwatch(task):
    """Every container logs with awslogs to one group, each under its own stream prefix."""
    options = [c["logConfiguration"] for c in task["containerDefinitions"]]
    assert {o["logDriver"] for o in options} == {"awslogs"}
    assert len({o["options"]["awslogs-group"] for o in options}) == 1
    prefixes = [o["options"]["awslogs-stream-prefix"] for o in options]
    assert len(prefixes) == len(set(prefixes))


@pytest.mark.parametrize("path", [CONTROL_POLICY, EXECUTION_POLICY, ECS_TRUST_POLICY], ids=lambda p: p.name)
def test_policies_are_iam_documents(path):
    """Version 2012-10-17, and statements with an effect, actions and resources or a principal."""
    policy = load(path)
    assert policy["Version"] == "2012-10-17"
    for statement in statements(policy):
        assert statement["Effect"] in ("Allow", "Deny")
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z*]+", a) for a in as_list(statement["Action"]))
        assert ("Resource" in statement) != ("Principal" in statement)


def test_the_control_account_may_assume_the_schemas_default_role():
    """The task role may assume the default roleName of a Cluster's account, in any account."""
    assume = [s for s in statements(load(CONTROL_POLICY)) if "sts:AssumeRole" in as_list(s["Action"])]
    assert assume and all(s["Effect"] == "Allow" for s in assume)
    resources = [r for s in assume for r in as_list(s["Resource"])]
    assert f"arn:aws:iam::*:role/{default_role_name()}" in resources


def test_the_control_account_may_read_valuefrom_sources():
    """secretsmanager:GetSecretValue and ssm:GetParameter, as the control-account secret resolver calls them."""
    actions = {a for s in statements(load(CONTROL_POLICY)) for a in as_list(s["Action"])}
    assert {"secretsmanager:GetSecretValue", "ssm:GetParameter"} <= actions
    resolver = (REPO / "daemon" / "driftwarden" / "providers" / "secret_sources.py").read_text()
    assert "get_secret_value(" in resolver and "get_parameter(" in resolver


def test_only_ecs_tasks_of_the_control_account_may_use_the_roles():
    """The roles trust ecs-tasks.amazonaws.com, limited to the control account."""
    (statement,) = statements(load(ECS_TRUST_POLICY))
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "<control-account-id>"


def test_every_placeholder_is_explained_in_the_deploy_readme():
    """Each <placeholder> of the templates has a row in deploy/README.md's placeholder table."""
    readme = (DEPLOY / "README.md").read_text()
    explained = set(re.findall(r"^\| `(<[a-z][a-z0-9-]*>)` \|", readme, re.M))
    used = {p for path in [TASK_DEFINITION, CONTROL_POLICY, EXECUTION_POLICY, ECS_TRUST_POLICY]
            for p in PLACEHOLDER.findall(path.read_text())}
    assert used and used <= explained, sorted(used - explained)
    assert explained <= used, sorted(explained - used)
