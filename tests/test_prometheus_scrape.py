"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes `driftwarden run` and answers queries.

The test starts the daemon (against moto, reading a manifest directory), then Prometheus on
127.0.0.1 with a temporary configuration scraping the daemon every second under
`job_name: driftwarden`, and asks Prometheus's HTTP API for the series dashboards and alerts
are built on. Without Prometheus the test skips on a developer machine and fails in CI
(``CI=true``), so CI cannot pass by skipping it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitrepo import free_port
from test_daemon import CLUSTER, REGION, DaemonProcess, moto_environment, wait_for, write_platform


@pytest.fixture
def prometheus_binary() -> str:
    """The prometheus executable; skipped locally when missing, a failure in CI."""
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not found: apt-get install prometheus (gives /usr/bin/prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must not skip the scrape test")
        pytest.skip(message)
    return path


@pytest.fixture
def daemon(tmp_path: Path, aws_managed_policies, aws, moto_server: str) -> Iterator[DaemonProcess]:
    """`driftwarden run` on a directory of one Cluster and one Deployment, against moto."""
    write_platform(tmp_path)
    env = moto_environment(moto_server)
    args = ["--source", str(tmp_path / "repo"), "--path", "platform", "--interval", "2s", "--drift-interval", "3s",
            "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--log-format", "json"]
    process = DaemonProcess(args, env, tmp_path)
    try:
        yield process
    finally:
        try:
            process.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class Prometheus:
    """A Prometheus server scraping one target, with its own storage under `workdir`."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: driftwarden\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.port = free_port()
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        self.log_path = workdir / "prometheus.log"

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector for `expression` (empty until Prometheus has it)."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        if status != 200:
            return []
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def test_prometheus_scrapes_the_daemon_and_the_key_series_are_queryable(prometheus_binary, daemon, tmp_path):
    """Prometheus scraping the daemon every second can query build_info, resource_info, reconcile_total and up."""
    daemon.wait_ready()
    prometheus = Prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{daemon.port}")
    try:
        def answered(expression: str) -> list[dict[str, Any]]:
            def found() -> list[dict[str, Any]]:
                if prometheus.process.poll() is not None:
                    raise AssertionError(f"prometheus exited: {prometheus.log_path.read_text()[-2000:]}")
                return prometheus.query(expression)

            return wait_for(found, f"Prometheus to answer {expression}", timeout=60)

        (up,) = answered('up{job="driftwarden"} == 1')
        assert up["metric"]["instance"] == f"127.0.0.1:{daemon.port}"
        (build,) = answered("driftwarden_build_info")
        assert build["metric"]["version"] and build["metric"]["job"] == "driftwarden"
        assert answered('driftwarden_reconcile_total{result="success"} > 0')
        objects = answered('driftwarden_resource_info{drift="none"}')
        found = {(o["metric"]["kind"], o["metric"]["name"], o["metric"]["cluster"], o["metric"]["region"]) for o in objects}
        assert ("Cluster", CLUSTER, CLUSTER, REGION) in found
        assert ("Deployment", "etl", CLUSTER, REGION) in found
        # A dashboard query over the same series works too.
        (count,) = answered("count(driftwarden_resource_info)")
        assert count["value"][1] == "2"
    finally:
        prometheus.stop()
    assert prometheus.process.returncode is not None
