"""The plan/apply/trust-policy/iam-policy commands as a user runs them (subprocess, embedded sandbox)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DRIFTWARDEN = shutil.which("driftwarden", path=str(Path(sys.executable).parent)) or "driftwarden"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DRIFTWARDEN_", "MOTO_"))}
    environment.update(env or {})
    return subprocess.run([DRIFTWARDEN, *args], capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture
def dynamic_manifests(tmp_path: Path) -> Path:
    """The example platform without the static-placement cluster, whose VPC exists only in a real account."""
    root = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", root)
    (root / "clusters" / "corp-apse2.yaml").unlink()
    return root


def test_plan_in_the_sandbox_shows_every_create_and_exits_2_with_detailed_exitcode(dynamic_manifests):
    """plan --sandbox against an empty simulated AWS lists creates per owner and a summary, exit 2."""
    done = run("plan", "--source", str(dynamic_manifests), "--sandbox", "--detailed-exitcode")
    assert done.returncode == 2, done.stderr
    assert "Cluster/prod-euw1  account 742096158823, eu-west-1" in done.stdout
    assert "+ ec2.vpc vpc" in done.stdout
    assert "CidrBlock: \"10.40.0.0/18\"" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("Plan: ")
    assert " to create, 0 to update, 0 to replace, 0 to delete; 0 unchanged." in done.stdout


def test_plan_json_follows_the_contract(dynamic_manifests):
    """plan --format json has revision, summary, changes with the documented fields, errors and warnings."""
    done = run("plan", "--source", str(dynamic_manifests), "--sandbox", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"revision", "summary", "changes", "errors", "warnings"} <= set(data)
    assert set(data["summary"]) == {"create", "update", "replace", "delete", "unchanged"}
    change = data["changes"][0]
    assert {"action", "owner", "resource", "id", "account", "region", "reason", "diff"} <= set(change)
    assert {"path", "observed", "desired"} == set(change["diff"][0])
    assert data["summary"]["create"] == len(data["changes"])


def test_secret_values_never_appear_in_plan_or_apply_output(dynamic_manifests):
    """A secret variable's value, read from the daemon's environment, is in no output."""
    secret = "s3cr3t-value-that-must-not-leak"
    done = run("apply", "--source", str(dynamic_manifests), "--sandbox", env={"DW_DATADOG_API_KEY": secret})
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret not in done.stdout and secret not in done.stderr
    assert "ContentHash: (sensitive)" in done.stdout


def test_apply_in_the_sandbox_reports_progress_and_verifies_no_changes_remain(dynamic_manifests):
    """apply --sandbox shows progress on stderr, an outcome summary, and a verifying plan with no changes."""
    done = run("apply", "--source", str(dynamic_manifests), "--sandbox")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "+ create Cluster/dev-use1/vpc" in done.stderr
    assert "Apply: " in done.stdout and "failed" not in done.stdout.split("Apply: ")[1]
    assert "Verify: No changes" in done.stdout


def test_invalid_manifests_stop_plan_before_aws(dynamic_manifests):
    """An invalid revision is reported with file and line and nothing reaches AWS."""
    (dynamic_manifests / "broken.yaml").write_text("apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: x}\nspec: {}\n")
    done = run("plan", "--source", str(dynamic_manifests), "--sandbox")
    assert done.returncode == 1
    assert "broken.yaml:4:1: error: Cluster/x /spec/account: missing required field 'account'" in done.stderr
    assert "nothing was read from or changed in AWS" in done.stderr


def test_git_url_source_is_a_usage_error_that_hides_credentials():
    """plan does not clone; a URL with a token is refused without printing the token."""
    done = run("plan", "--source", "https://x-token:ghp_secret123@example.com/org/repo.git")
    assert done.returncode == 2
    assert "ghp_secret123" not in done.stderr and "***@example.com" in done.stderr


def test_trust_policy_lists_every_external_id_of_the_account(tmp_path):
    """trust-policy trusts the control account with the ExternalIds of that account's clusters only."""
    root = tmp_path / "m"
    shutil.copytree(REPO / "manifests", root)
    (root / "clusters" / "dev-use2.yaml").write_text(
        "apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: dev-use2}\n"
        "spec:\n  account: {id: '318574920163', externalId: dw-dev-use2-77aa}\n  region: us-east-2\n"
    )
    done = run("trust-policy", "--account", "318574920163", "--control", "123456789012", "--source", str(root))
    assert done.returncode == 0, done.stderr
    statement = json.loads(done.stdout)["Statement"][0]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statement["Action"] == "sts:AssumeRole"
    ids = statement["Condition"]["StringEquals"]["sts:ExternalId"]
    assert isinstance(ids, list) and len(ids) == 2


def test_trust_policy_rejects_a_malformed_account():
    """A non-12-digit account id is a usage error."""
    assert run("trust-policy", "--account", "12345", "--control", "123456789012").returncode == 2


def test_iam_policy_covers_every_provider_action():
    """iam-policy is generated from the providers' declarations and includes PassRole only for our roles."""
    from driftwarden.providers.registry import default_providers

    done = run("iam-policy")
    assert done.returncode == 0
    statements = json.loads(done.stdout)["Statement"]
    granted = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    declared = {a for p in default_providers().values() for names in p.permissions.values() for a in names}
    assert declared <= granted
    passrole = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passrole and passrole[0]["Resource"] != "*"


def test_trust_policy_asks_sts_for_the_control_account_when_none_is_given(moto_server, tmp_path):
    """Without --control, the principal is the caller's own account, from sts:GetCallerIdentity."""
    root = tmp_path / "m"
    root.mkdir()
    (root / "dev.yaml").write_text(
        "apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: dev-use2}\n"
        "spec:\n  account: {id: '318574920163', externalId: dw-dev-use2-77aa}\n  region: us-east-2\n"
    )
    aws = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}
    done = run("trust-policy", "--account", "318574920163", "--source", str(root), env=aws)
    assert done.returncode == 0, done.stderr
    # moto answers GetCallerIdentity for fake credentials with its default account.
    assert json.loads(done.stdout)["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


def test_default_region_follows_boto3_configuration_with_a_fallback(monkeypatch):
    """The CLI's control-account region is boto3's configured one, us-east-1 when none is set."""
    from driftwarden.providers.aws import default_region

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    assert default_region() == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert default_region() == "eu-west-3"


def test_the_command_line_imports_no_boto3():
    """No module of driftwarden.cli imports boto3 or botocore: AWS is reached through providers.aws."""
    import ast

    cli = REPO / "daemon" / "driftwarden" / "cli"
    offenders = []
    for module in sorted(cli.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{module.name}: {n}" for n in names if n.split(".")[0] in ("boto3", "botocore")]
    assert not offenders
