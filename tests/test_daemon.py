"""`driftwarden run` as an operator runs it: a subprocess following a real Git remote, talking to
moto's server over HTTP, watched through its own /status, /metrics and log.

Each test makes a bare remote and a working clone (`gitrepo.Origin`), starts the daemon with
`--interval 2s --drift-interval 3s` (or longer where a test wants the webhook to be the only
trigger) on a port it picks itself (read back from its `daemon.started` log event), and acts on
AWS out of band through the `aws` fixture. Waiting is always a bounded polling loop on an
observable condition, never a sleep whose length is asserted.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from faultproxy import FaultProxy, error
from gitrepo import HERMETIC_GIT_ENV, Origin, run_git
from moto_state import set_eks_cluster_status

DRIFTWARDEN = shutil.which("driftwarden", path=str(Path(sys.executable).parent)) or "driftwarden"
ACCOUNT = "210987654321"
OTHER_ACCOUNT = "310987654322"
REGION = "us-east-1"
CLUSTER = "test-use1"
SSM_NAME = f"/driftwarden/{CLUSTER}/etl/configuration"
FAST = ["--interval", "2s", "--drift-interval", "3s"]
# Generous bounds for conditions that normally hold within a pass or two; a test that hits
# one fails with the daemon's log, it never asserts how fast things were.
STARTUP_TIMEOUT = 60.0

CLUSTER_YAML = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: {CLUSTER}
spec:
  account:
    id: "{ACCOUNT}"
    externalId: dw-test-use1-0001
  natGateways: single
  tags:
    team: data
  nodePools:
    - name: default
      nodeInstanceType: m5.xlarge
      minNodeCount: 1
      maxNodeCount: 3
      isDefault: true
"""

# The line of `natGateways` in CLUSTER_YAML: where a broken value is reported.
NAT_LINE = CLUSTER_YAML.splitlines().index("  natGateways: single") + 1


def deployment_yaml(description: str = "Nightly loads.", annotations: str = "") -> str:
    meta = f"  annotations:\n    {annotations}\n" if annotations else ""
    return f"""\
apiVersion: driftwarden/v1
kind: Deployment
metadata:
  name: etl
{meta}spec:
  cluster: {CLUSTER}
  description: {description}
  runtimeVersion: 12.1.0
  executor: CELERY
  workerQueues:
    - name: default
      workerType: m5.xlarge
      maxWorkerCount: 3
"""


def write_platform(tmp_path: Path) -> Path:
    """`tmp_path/repo/platform` with one Cluster (`cluster.yaml`) and one Deployment (`etl.yaml`)."""
    platform = tmp_path / "repo" / "platform"
    platform.mkdir(parents=True)
    (platform / "cluster.yaml").write_text(CLUSTER_YAML)
    (platform / "etl.yaml").write_text(deployment_yaml())
    return platform


def moto_environment(endpoint: str, *, drop: tuple[str, ...] = ("AWS_", "DRIFTWARDEN_")) -> dict[str, str]:
    """This process's environment without variables starting with `drop`, pointed at `endpoint` with fake credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    return env


def second_cluster_yaml() -> str:
    return (
        CLUSTER_YAML.replace(CLUSTER, "other-use1")
        .replace(ACCOUNT, OTHER_ACCOUNT)
        .replace("dw-test-use1-0001", "dw-other-use1-0001")
    )


# --- the daemon as a process ----------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], what: str, *, timeout: float = STARTUP_TIMEOUT, daemon: DaemonProcess | None = None) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` (and the log) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if daemon is not None and daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.process.returncode}) while waiting for {what}\n{daemon.log_tail()}")
        if time.monotonic() > deadline:
            tail = daemon.log_tail() if daemon is not None else ""
            raise AssertionError(f"gave up waiting for {what}\n{tail}")
        time.sleep(0.1)


class DaemonProcess:
    """One `driftwarden run` subprocess, its log file and its HTTP endpoints."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str = "daemon") -> None:
        self.log_path = workdir / f"{name}.log"
        self.out_path = workdir / f"{name}.out"
        self._log = self.log_path.open("wb")
        self._out = self.out_path.open("wb")
        self.process = subprocess.Popen(
            [DRIFTWARDEN, "run", *args], env=env, stdout=self._out, stderr=self._log, cwd=workdir
        )
        started = wait_for(lambda: self.events("daemon.started"), "the daemon to start", daemon=self)[0]
        self.base = started["http"]
        self.port = int(self.base.rsplit(":", 1)[1])

    # -- the log

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "daemon log (tail):\n" + "\n".join(line[:600] for line in text)

    # -- HTTP

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def status(self) -> dict[str, Any]:
        code, body, _headers = self.request("GET", "/status")
        assert code == 200, body
        return json.loads(body)

    def obj(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.status()["objects"] if (o["kind"], o["name"]) == (kind, name)), None)

    def metrics(self) -> str:
        code, body, headers = self.request("GET", "/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version="), headers
        return body.decode()

    def sample(self, metric: str, /, **labels: str) -> float | None:
        return metric_sample(self.metrics(), metric, **labels)

    def passes(self) -> float:
        text = self.metrics()
        return sum(metric_sample(text, "driftwarden_reconcile_total", result=r) or 0 for r in ("success", "partial", "failure"))

    def wait_passes(self, count: int) -> None:
        """Wait until `count` more reconcile passes have finished."""
        target = self.passes() + count
        wait_for(lambda: self.passes() >= target, f"{count} more reconcile passes", daemon=self)

    def wait_ready(self) -> None:
        wait_for(lambda: self.request("GET", "/readyz")[0] == 200, "/readyz to answer 200", daemon=self)

    def wait_status(self, kind: str, name: str, status: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            found = self.obj(kind, name)
            return found if found is not None and found["status"] == status else None

        return wait_for(reached, f"{kind}/{name} to be {status}", daemon=self)

    # -- stopping

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()
            self._out.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
        self._out.close()


def metric_sample(text: str, metric: str, /, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    """A bare remote whose `main` holds the Cluster and the Deployment under platform/."""
    repo = Origin(tmp_path / "git")
    repo.commit_and_push({"platform/cluster.yaml": CLUSTER_YAML, "platform/etl.yaml": deployment_yaml()}, "platform")
    return repo


@pytest.fixture
def start_daemon(tmp_path: Path, aws_managed_policies, aws, moto_server: str) -> Iterator[Callable[..., DaemonProcess]]:
    """Start `driftwarden run` subprocesses against moto; every one still running is stopped at the end."""
    started: list[DaemonProcess] = []
    environment = moto_environment(moto_server, drop=("AWS_", "DRIFTWARDEN_", "GIT_"))
    environment.update(HERMETIC_GIT_ENV)
    # Few quick retries: a refused call should fail the pass, not stall it.
    environment["AWS_MAX_ATTEMPTS"] = "2"

    def start(source: str | Path, *extra: str, endpoint: str | None = None, name: str = "daemon") -> DaemonProcess:
        env = dict(environment)
        if endpoint is not None:
            env["AWS_ENDPOINT_URL"] = endpoint
        args = [
            "--source", str(source), "--path", "platform", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
            "--cache-dir", str(tmp_path / "cache"), "--log-format", "json", *extra,
        ]
        daemon = DaemonProcess(args, env, tmp_path, name)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        try:
            daemon.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def oversized(port: int) -> int:
    """POST /webhook announcing a body over 1 MiB, without sending it: refused on the length alone."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("POST", "/webhook")
        connection.putheader("Content-Length", str(1024 * 1024 + 1))
        connection.putheader("X-GitHub-Event", "push")
        connection.putheader("X-Hub-Signature-256", "sha256=" + "0" * 64)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def signed(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def our_vpcs(aws) -> list[dict[str, Any]]:
    ec2 = aws.account_client(ACCOUNT, "ec2")
    return ec2.describe_vpcs(Filters=[{"Name": "tag:driftwarden:owner", "Values": [f"Cluster/{CLUSTER}"]}])["Vpcs"]


def our_roles(aws) -> list[str]:
    roles = aws.account_client(ACCOUNT, "iam").list_roles()["Roles"]
    return sorted(r["RoleName"] for r in roles if r["RoleName"].startswith("driftwarden-"))


def ssm_value(aws) -> str | None:
    ssm = aws.account_client(ACCOUNT, "ssm")
    try:
        return ssm.get_parameter(Name=SSM_NAME)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None


# --- tests ---------------------------------------------------------------------------------------------


def test_a_pushed_commit_is_applied_within_two_poll_intervals(origin, start_daemon, aws):
    """A Deployment pushed to the remote exists in AWS and /status shows its revision within two intervals."""
    origin.remove("platform/etl.yaml")
    first = origin.commit("the cluster only")
    origin.push()
    daemon = start_daemon(origin.remote, *FAST)
    daemon.wait_ready()
    assert daemon.request("GET", "/healthz")[0] == 200
    daemon.wait_status("Cluster", CLUSTER, "CREATED")
    status = daemon.status()
    assert (status["revision"], status["head_revision"], status["head_valid"]) == (first, first, True)
    assert status["source"].endswith("remote.git@main:platform")
    assert ssm_value(aws) is None

    second = origin.commit_and_push({"platform/etl.yaml": deployment_yaml()}, "add the etl deployment")
    # Bounded by two poll intervals plus the time a pass itself may take on a loaded machine.
    wait_for(lambda: ssm_value(aws) is not None and daemon.status()["revision"] == second,
             "the new revision to be applied", timeout=2 * 2 + 20, daemon=daemon)
    deployment = daemon.wait_status("Deployment", "etl", "HEALTHY")
    assert (deployment["cluster"], deployment["account"], deployment["region"], deployment["drift"]) == (CLUSTER, ACCOUNT, REGION, "none")
    assert json.loads(ssm_value(aws) or "{}")["deployment"] == "etl"
    metrics = daemon.metrics()
    assert metric_sample(metrics, "driftwarden_git_revision_info", revision=second) == 1
    assert metric_sample(metrics, "driftwarden_resource_info", kind="Deployment", name="etl", status="HEALTHY", drift="none") == 1
    assert metric_sample(metrics, "driftwarden_manifests", kind="Deployment", valid="true") == 1
    assert (metric_sample(metrics, "driftwarden_last_successful_reconcile_timestamp_seconds") or 0) > 0
    assert (metric_sample(metrics, "driftwarden_aws_api_calls_total", service="ec2", operation="CreateVpc", result="ok") or 0) == 1
    applied = [e for e in daemon.events("apply.applied") if e["resource"] == "Deployment/etl/ssm-parameter/configuration"]
    assert applied and applied[0]["revision"] == second and applied[0]["account"] == ACCOUNT
    assert daemon.terminate() == 0


def test_a_signed_webhook_syncs_at_once_and_a_bad_signature_changes_nothing(origin, start_daemon, aws, tmp_path):
    """With hour-long intervals only a correctly signed push delivery fetches and applies a new commit."""
    secret = b"webhook-secret-for-tests"
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_bytes(secret + b"\n")
    origin.remove("platform/etl.yaml")
    first = origin.commit("the cluster only")
    origin.push()
    daemon = start_daemon(origin.remote, "--interval", "1h", "--drift-interval", "1h", "--webhook-secret-file", str(secret_file))
    daemon.wait_ready()
    second = origin.commit_and_push({"platform/etl.yaml": deployment_yaml()}, "add the etl deployment")
    body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    push = {"X-GitHub-Event": "push", "Content-Type": "application/json", "X-GitHub-Delivery": "d-1"}

    refused = [
        daemon.request("POST", "/webhook", body, push)[0],  # unsigned
        daemon.request("POST", "/webhook", body, {**push, "X-Hub-Signature-256": signed(b"wrong secret", body)})[0],
        daemon.request("POST", "/webhook", body + b" ", {**push, "X-Hub-Signature-256": signed(secret, body)})[0],
        oversized(daemon.port),
        daemon.request("POST", "/webhook", body, {**push, "X-GitHub-Event": "issues", "X-Hub-Signature-256": signed(secret, body)})[0],
    ]
    assert refused == [401, 403, 403, 413, 400]
    assert daemon.request("POST", "/webhook", body, {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signed(secret, body)})[0] == 200
    status = daemon.status()
    assert (status["revision"], status["head_revision"]) == (first, first)
    assert ssm_value(aws) is None

    code, answer, _headers = daemon.request("POST", "/webhook", body, {**push, "X-Hub-Signature-256": signed(secret, body)})
    assert code == 202, answer
    wait_for(lambda: daemon.status()["revision"] == second and ssm_value(aws) is not None,
             "the webhook's sync to apply the new commit", daemon=daemon)
    daemon.wait_status("Deployment", "etl", "HEALTHY")
    metrics = daemon.metrics()
    # One pass at start-up and exactly one for the webhook: no refused delivery triggered anything.
    assert metric_sample(metrics, "driftwarden_reconcile_duration_seconds_count", trigger="startup") == 1
    assert metric_sample(metrics, "driftwarden_reconcile_duration_seconds_count", trigger="webhook") == 1
    assert metric_sample(metrics, "driftwarden_git_fetch_total", result="success") == 2
    log = daemon.log_path.read_text()
    assert body.decode() not in log and secret.decode() not in log
    assert len(daemon.events("webhook.refused")) == 4
    assert daemon.terminate() == 0


def test_drift_is_repaired_in_enforce_mode_and_only_reported_when_warn(origin, start_daemon, aws, tmp_path):
    """A removed subnet tag shows as drift and is repaired; a hand-edited SSM parameter of a warn-only Deployment is reported and left."""
    secret = b"drift-test-secret"
    (tmp_path / "secret").write_bytes(secret)
    daemon = start_daemon(origin.remote, "--interval", "1h", "--drift-interval", "3s",
                          "--webhook-secret-file", str(tmp_path / "secret"))
    daemon.wait_ready()
    daemon.wait_status("Cluster", CLUSTER, "CREATED")
    daemon.wait_status("Deployment", "etl", "HEALTHY")

    # Enforce: a tag removed by hand is drift on the next drift check, and put back.
    ec2 = aws.account_client(ACCOUNT, "ec2")
    (subnet,) = ec2.describe_subnets(Filters=[{"Name": "tag:driftwarden:component", "Values": ["subnet/public-a"]}])["Subnets"]
    ec2.delete_tags(Resources=[subnet["SubnetId"]], Tags=[{"Key": "team"}])

    def drifted_cluster() -> tuple[dict[str, Any], str] | None:
        found = daemon.obj("Cluster", CLUSTER)
        return (found, daemon.metrics()) if found and found["drift"] == "drifted" else None

    cluster, metrics = wait_for(drifted_cluster, "the Cluster to show drift", timeout=30, daemon=daemon)
    assert cluster["drifted"] == [{"resource": f"Cluster/{CLUSTER}/subnet/public-a", "type": "ec2.subnet",
                                   "action": "update", "fields": ["tags.team"], "repair": "applied"}]
    assert metric_sample(metrics, "driftwarden_resource_info", kind="Cluster", name=CLUSTER, drift="drifted") == 1
    assert metric_sample(metrics, "driftwarden_drifted_resources", kind="Cluster", cluster=CLUSTER, account=ACCOUNT, region=REGION) == 1
    assert metric_sample(metrics, "driftwarden_drift_detected_total", kind="Cluster", resource="ec2.subnet") == 1

    def tag_restored() -> bool:
        tags = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]["Tags"]
        return {"Key": "team", "Value": "data"} in tags

    wait_for(tag_restored, "the tag to be put back", daemon=daemon)
    wait_for(lambda: daemon.obj("Cluster", CLUSTER)["drift"] == "none", "the drift to clear", daemon=daemon)
    assert daemon.sample("driftwarden_drifted_resources", kind="Cluster", cluster=CLUSTER) == 0
    assert daemon.sample("driftwarden_apply_actions_total", action="update", resource="ec2.subnet", result="applied") == 1

    # Warn: the same kind of hand edit is reported, held, and left as it is.
    sha = origin.commit_and_push({"platform/etl.yaml": deployment_yaml(annotations="driftwarden/drift: warn")}, "etl: warn only")
    body = b'{"ref": "refs/heads/main"}'
    assert daemon.request("POST", "/webhook", body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(secret, body)})[0] == 202
    # Once a pass of the warn-only revision has finished, no pass of the old one is running.
    wait_for(lambda: (daemon.status()["last_reconcile"] or {}).get("revision") == sha, "a pass of the warn-only revision",
             daemon=daemon)
    hand_edit = '{"edited":"by-hand-0xC0FFEE"}'
    aws.account_client(ACCOUNT, "ssm").put_parameter(Name=SSM_NAME, Value=hand_edit, Type="String", Overwrite=True)

    def warned() -> dict[str, Any] | None:
        found = daemon.obj("Deployment", "etl")
        return found if found and found["drift"] == "warn" else None

    deployment = wait_for(warned, "the Deployment to show warn-only drift", timeout=30, daemon=daemon)
    assert deployment["drifted"] == [{"resource": "Deployment/etl/ssm-parameter/configuration", "type": "ssm.parameter",
                                      "action": "update", "fields": ["Value"], "repair": "held"}]
    daemon.wait_passes(2)
    assert ssm_value(aws) == hand_edit
    status_text = daemon.request("GET", "/status")[1].decode()
    assert "0xC0FFEE" not in status_text and "0xC0FFEE" not in daemon.metrics()
    assert "0xC0FFEE" not in daemon.log_path.read_text()
    metrics = daemon.metrics()
    assert metric_sample(metrics, "driftwarden_resource_info", kind="Deployment", name="etl", drift="warn") == 1
    assert metric_sample(metrics, "driftwarden_drifted_resources", kind="Deployment", cluster=CLUSTER) == 1
    # Found on several passes, counted once: it is the same drift.
    assert metric_sample(metrics, "driftwarden_drift_detected_total", kind="Deployment", resource="ssm.parameter") == 1
    assert daemon.obj("Cluster", CLUSTER)["drift"] == "none"
    assert daemon.terminate() == 0


def test_an_invalid_commit_keeps_the_last_good_revision_in_force(origin, start_daemon, aws):
    """A broken manifest is reported with file and line; the last good revision is still enforced and nothing is deleted, even with --prune."""
    good = origin.head()
    daemon = start_daemon(origin.remote, *FAST, "--prune")
    daemon.wait_ready()
    daemon.wait_status("Deployment", "etl", "HEALTHY")
    daemon.wait_status("Cluster", CLUSTER, "CREATED")
    roles = our_roles(aws)
    assert len(roles) == 3

    # The Deployment's manifest is gone and the Cluster's is broken: applying this would prune.
    origin.remove("platform/etl.yaml")
    origin.write("platform/cluster.yaml", CLUSTER_YAML.replace("natGateways: single", "natGateways: sometimes"))
    bad = origin.commit("break the cluster, drop the deployment")
    origin.push()
    wait_for(lambda: daemon.status()["head_revision"] == bad, "the broken revision to be fetched", daemon=daemon)
    status = daemon.status()
    assert (status["revision"], status["head_valid"]) == (good, False)
    (problem,) = status["manifests"]["errors"]
    assert (problem["file"], problem["line"], problem["kind"], problem["name"]) == ("platform/cluster.yaml", NAT_LINE, "Cluster", CLUSTER)
    assert "sometimes" in problem["message"]
    assert status["prune"]["active"] is False
    metrics = daemon.metrics()
    assert metric_sample(metrics, "driftwarden_manifests", kind="Cluster", valid="false") == 1
    assert metric_sample(metrics, "driftwarden_manifests", kind="Deployment", valid="true") == 0
    assert metric_sample(metrics, "driftwarden_git_revision_info", revision=good) == 1
    invalid = daemon.events("revision.invalid")
    assert invalid and invalid[0]["problems"][0]["file"] == "platform/cluster.yaml" and invalid[0]["problems"][0]["line"] == NAT_LINE

    # The last good revision is still enforced, the removed Deployment included.
    aws.account_client(ACCOUNT, "ssm").put_parameter(Name=SSM_NAME, Value="{}", Type="String", Overwrite=True)
    wait_for(lambda: ssm_value(aws) != "{}", "the last good revision to repair the parameter", daemon=daemon)
    daemon.wait_passes(2)
    assert json.loads(ssm_value(aws) or "{}")["deployment"] == "etl"
    assert our_roles(aws) == roles and len(our_vpcs(aws)) == 1
    assert daemon.sample("driftwarden_apply_actions_total", action="delete", resource="ssm.parameter", result="applied") is None
    assert daemon.obj("Deployment", "etl")["status"] == "HEALTHY"
    assert daemon.terminate() == 0


def test_an_unreachable_remote_is_reported_and_recovered_and_force_pushes_are_followed(origin, start_daemon, aws, tmp_path):
    """A vanished remote counts fetch failures and shows the error; once back, the daemon recovers and applies force-pushed history (not as drift)."""
    good = origin.head()
    daemon = start_daemon(origin.remote, *FAST)
    daemon.wait_ready()
    daemon.wait_status("Deployment", "etl", "HEALTHY")

    away = tmp_path / "moved-away.git"
    origin.remote.rename(away)
    wait_for(lambda: (daemon.sample("driftwarden_git_fetch_total", result="failure") or 0) >= 1, "a failed fetch", daemon=daemon)
    status = daemon.status()
    assert status["fetch_error"] and "remote.git" in status["fetch_error"] and status["last_error"] == status["fetch_error"]
    assert status["revision"] == good
    # Still reconciling the revision in force meanwhile.
    daemon.wait_passes(1)
    assert daemon.obj("Deployment", "etl")["status"] == "HEALTHY"

    away.rename(origin.remote)
    wait_for(lambda: daemon.status()["last_error"] is None, "the fetch to recover", daemon=daemon)
    assert daemon.events("sync.fetch_failed") and daemon.events("sync.recovered")

    # History rewritten and force-pushed: the daemon follows the remote, not its own past.
    origin.write("platform/etl.yaml", deployment_yaml(description="Rewritten history."))
    run_git("add", "--all", cwd=origin.work)
    run_git("commit", "--quiet", "--amend", "-m", "rewritten", cwd=origin.work)
    rewritten = origin.head()
    origin.push(force=True)
    wait_for(lambda: daemon.status()["revision"] == rewritten, "the force-pushed revision", daemon=daemon)
    wait_for(lambda: json.loads(ssm_value(aws) or "{}").get("description") == "Rewritten history.",
             "the rewritten description to be applied", daemon=daemon)
    # A change Git asked for is applied, not reported as drift.
    assert not daemon.events("drift.detected")
    assert daemon.sample("driftwarden_drift_detected_total", kind="Deployment", resource="ssm.parameter") is None
    assert daemon.terminate() == 0


def test_sigterm_during_an_apply_exits_cleanly_and_a_restart_finishes_without_duplicates(origin, start_daemon, aws, monkeypatch):
    """SIGTERM while CreateCluster is in flight waits for it and exits 0; a restart continues where AWS is and creates nothing twice."""
    from moto.eks.models import EKSBackend

    entered, release = threading.Event(), threading.Event()
    original = EKSBackend.create_cluster

    def slow_create_cluster(self, *args, **kwargs):
        entered.set()
        release.wait(timeout=60)
        cluster = original(self, *args, **kwargs)
        cluster.status = "CREATING"  # as AWS answers: the control plane takes minutes
        return cluster

    monkeypatch.setattr(EKSBackend, "create_cluster", slow_create_cluster)
    daemon = start_daemon(origin.remote, *FAST)
    assert entered.wait(timeout=STARTUP_TIMEOUT), daemon.log_tail()
    daemon.process.send_signal(signal.SIGTERM)
    wait_for(lambda: daemon.events("daemon.stopping"), "the daemon to begin stopping", daemon=daemon)
    assert daemon.process.poll() is None, "exited with an AWS call in flight"
    release.set()
    assert daemon.terminate(timeout=30) == 0
    events = [e["event"] for e in daemon.events()]
    assert events.index("reconcile.finished") > events.index("daemon.stopping")
    started = [e for e in daemon.events("apply.started") if e["resource"] == f"Cluster/{CLUSTER}/eks-cluster"]
    assert started and started[0]["state"] == "CREATING"
    assert not daemon.events("apply.failed")

    eks = aws.account_client(ACCOUNT, "eks")
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == []

    again = start_daemon(origin.remote, *FAST, name="restarted")
    again.wait_ready()
    cluster = again.wait_status("Cluster", CLUSTER, "CREATING")
    assert cluster["last_error"] is None
    again.wait_passes(1)
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == []  # not while the cluster is CREATING

    set_eks_cluster_status(ACCOUNT, REGION, CLUSTER, "ACTIVE")
    again.wait_status("Cluster", CLUSTER, "CREATED")
    again.wait_status("Deployment", "etl", "HEALTHY")
    assert len(our_vpcs(aws)) == 1
    assert len(our_roles(aws)) == 3
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    assert len(eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"]) == 1
    nat = aws.account_client(ACCOUNT, "ec2").describe_nat_gateways(
        Filters=[{"Name": "tag:driftwarden:owner", "Values": [f"Cluster/{CLUSTER}"]}])["NatGateways"]
    assert len(nat) == 1
    # The restart applies only what the stopped daemon had not: the node group (its cluster was
    # CREATING), and whatever the stopping pass no longer started.
    first = {e["resource"] for e in daemon.events("apply.applied")}
    created = [e["resource"] for e in again.events("apply.applied")]
    assert f"Cluster/{CLUSTER}/nodegroup/default" in created
    assert len(created) == len(set(created)) and first.isdisjoint(created)
    assert again.terminate() == 0


def test_outside_every_apply_window_the_daemon_plans_and_reports_only(origin, start_daemon, aws):
    """With an apply window that is closed now, nothing is created and /status says why."""
    now = time.gmtime()
    closed = f"{now.tm_min} {(now.tm_hour + 12) % 24} * * *"  # twelve hours from now
    daemon = start_daemon(origin.remote, *FAST, "--apply-window", closed)
    daemon.wait_ready()
    status = daemon.status()
    assert status["apply_window"]["open"] is False and "outside every apply window" in status["apply_window"]["reason"]
    assert status["apply_window"]["windows"] == [closed]
    assert status["last_reconcile"]["applied"] is False
    assert status["last_reconcile"]["plan"]["create"] == 20
    assert our_vpcs(aws) == [] and ssm_value(aws) is None
    assert {(o["kind"], o["status"]) for o in status["objects"]} == {("Cluster", "CREATING"), ("Deployment", "CREATING")}
    assert daemon.terminate() == 0


def test_a_failing_account_backs_off_alone(tmp_path, start_daemon, aws, moto_server):
    """AccessDenied into one account backs that account off (no new attempts for a while); the other account is reconciled."""
    repo = Origin(tmp_path / "two")
    repo.commit_and_push({"platform/cluster.yaml": CLUSTER_YAML, "platform/other.yaml": second_cluster_yaml()})
    with FaultProxy(moto_server) as proxy:
        proxy.inject(lambda r: r.service == "sts" and OTHER_ACCOUNT in r.body_or_target,
                     [error("AccessDenied", status=403)], repeat_last=True)
        daemon = start_daemon(repo.remote, *FAST, endpoint=proxy.endpoint_url)
        daemon.wait_ready()
        daemon.wait_status("Cluster", CLUSTER, "CREATED")
        other = daemon.obj("Cluster", "other-use1")
        assert other is not None and other["status"] == "CREATE_FAILED"
        assert "AccessDenied" in other["last_error"] and other["next_attempt"] is not None
        (backoff,) = daemon.status()["backoff"]
        assert (backoff["account"], backoff["region"], backoff["failures"]) == (OTHER_ACCOUNT, REGION, 1)
        attempts = len([r for r in proxy.calls("sts", "AssumeRole") if OTHER_ACCOUNT in r.body_or_target])
        daemon.wait_passes(3)
        # Backing off (30 s at first): the next passes do not try that account again.
        assert len([r for r in proxy.calls("sts", "AssumeRole") if OTHER_ACCOUNT in r.body_or_target]) == attempts
        assert daemon.sample("driftwarden_reconcile_total", result="partial") >= 1
        assert daemon.obj("Cluster", CLUSTER)["status"] == "CREATED"
        assert daemon.terminate() == 0


def test_run_sandbox_serves_status_and_metrics_against_an_embedded_aws(tmp_path):
    """`run --sandbox` starts its own simulated AWS, applies a directory of manifests and says where /status is."""
    write_platform(tmp_path)
    # Nothing of the test session's AWS or moto settings: the sandbox makes its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DRIFTWARDEN_", "MOTO_"))}
    # Configuration through the environment, as in a container.
    env.update({"DRIFTWARDEN_INTERVAL": "2s", "DRIFTWARDEN_DRIFT_INTERVAL": "1h", "DRIFTWARDEN_SANDBOX": "1",
                "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"})
    daemon = DaemonProcess(["--source", str(tmp_path / "repo"), "--path", "platform", "--metrics-host", "127.0.0.1",
                            "--metrics-port", "0"], env, tmp_path)
    try:
        hint = wait_for(lambda: [line for line in daemon.out_path.read_text().splitlines() if "/status" in line],
                        "the sandbox hint on stdout", daemon=daemon)[0]
        assert f"{daemon.base}/metrics" in hint and f"{daemon.base}/status" in hint
        daemon.wait_ready()
        daemon.wait_status("Cluster", CLUSTER, "CREATED")
        daemon.wait_status("Deployment", "etl", "HEALTHY")
        assert daemon.status()["revision"].startswith("dir:")
        assert (daemon.sample("driftwarden_reconcile_total", result="success") or 0) >= 1
    finally:
        assert daemon.terminate() == 0


def test_durations_and_apply_windows_read_like_crontab():
    """Durations take s/m/h suffixes; apply-window weekdays count from Sunday = 0 (or 7), as crontab does."""
    from datetime import UTC, datetime

    from driftwarden.errors import UsageError
    from driftwarden.runtime.settings import parse_duration
    from driftwarden.runtime.windows import ApplyWindows

    assert [parse_duration(t) for t in ("30s", "5m", "1h", "1h30m", "90", "0.5s")] == [30, 300, 3600, 5400, 90, 0.5]
    for bad in ("", "5x", "m5", "0s", "-1m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    office = ApplyWindows(["* 9-17 * * 1-5"])
    monday, saturday, sunday = datetime(2024, 6, 3, 10, 30, tzinfo=UTC), datetime(2024, 6, 8, 10, 30, tzinfo=UTC), datetime(2024, 6, 9, 10, 30, tzinfo=UTC)
    assert [office.check(d).open for d in (monday, saturday, sunday)] == [True, False, False]
    assert office.check(monday.replace(hour=18)).open is False
    assert office.check(saturday).next_open == datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
    assert ApplyWindows(["* * * * 0"]).check(sunday).open and ApplyWindows(["* * * * 7"]).check(sunday).open
    assert not ApplyWindows(["* * * * 0"]).check(monday).open
    assert ApplyWindows([]).check(saturday).open
    for bad in ("* * *", "* 25 * * *", "* * * * 5-1"):
        with pytest.raises(UsageError):
            ApplyWindows([bad])
