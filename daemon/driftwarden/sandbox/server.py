"""The embedded sandbox: a simulated AWS (moto's server) on loopback, behind `--sandbox`.

What it owns: starting and stopping moto's `ThreadedMotoServer` on 127.0.0.1 and a free port,
the endpoint URL and the environment (endpoint, fake credentials, region) that point boto3 at
it, resetting its state, and seeding what a real account would already have. moto is an optional
extra (``pip install 'driftwarden[sandbox]'``), imported only when a sandbox starts. This module
uses moto's public surface only: `moto.server.ThreadedMotoServer`, the ``/moto-api/reset``
endpoint and the documented ``MOTO_*`` settings; what else the sandbox needs from moto goes
through `driftwarden.sandbox.moto_internals`, which checks moto's version first.

What it must not do: reach real AWS, or leave the port open after `stop`. Every moto server in
one process shares the same simulated state (moto keeps its backends in the process), so two
sandboxes in one process see each other's resources.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import os
import socket
import urllib.parse
from collections.abc import MutableMapping, Sequence
from types import TracebackType
from typing import Any, Final

from driftwarden.errors import DriftwardenError
from driftwarden.sandbox import moto_internals

SANDBOX_ACCESS_KEY_ID: Final = "driftwarden-sandbox"
SANDBOX_SECRET_ACCESS_KEY: Final = "driftwarden-sandbox"

# Variables that could lead boto3 to real credentials (or a real account) instead of the
# sandbox's fake ones; `apply` removes them.
CLEARED_VARIABLES: Final = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


class Sandbox:
    """moto's server on 127.0.0.1; use as a context manager (`with Sandbox() as sandbox:`).

    `port=0` picks a free port (the kernel chooses it when binding, so there is no race with
    another process grabbing it first).
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1", load_managed_policies: bool = True
    ):
        # EKS needs AWS managed policies (AmazonEKSClusterPolicy, ...) attached to its roles, and
        # moto only knows them when asked to load them; loading costs about a second per
        # account, so test servers that do not need them can say no.
        self._load_managed_policies = load_managed_policies
        self._host = host
        self._port = port
        self._region = region
        self._server: Any = None
        self._endpoint_url: str | None = None
        self._werkzeug_level: int | None = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise DriftwardenError("the sandbox is not running")
        return self._endpoint_url

    @property
    def running(self) -> bool:
        return self._endpoint_url is not None

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as e:
            raise DriftwardenError(
                f"the sandbox needs moto, an optional dependency: {moto_internals.INSTALL_HINT}"
            ) from e
        # Before anything else: an older moto fails here, naming the version needed.
        moto_internals.require_moto()
        if self._port:
            self._check_port_free()
        # moto serves through werkzeug, which logs every request at INFO to stderr unless its
        # logger is configured: that would drown the CLI's own output.
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        if werkzeug.level == logging.NOTSET:
            werkzeug.setLevel(logging.WARNING)
        if self._load_managed_policies:
            os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        # Thousands of default AMIs per account and region are parsed on first use otherwise;
        # nothing driftwarden manages uses them.
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        moto_internals.index_db_subnet_groups()
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"

    def _check_port_free(self) -> None:
        # moto binds in its own thread and its start() would wait forever if that failed.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self._host, self._port))
            except OSError as e:
                raise DriftwardenError(
                    f"the sandbox cannot listen on {self._host}:{self._port}: {e.strerror}"
                ) from e

    def stop(self) -> None:
        server, self._server, self._endpoint_url = self._server, None, None
        if server is None:
            return
        server.stop()
        # moto's stop() ends the serving loop but leaves the listening socket open (moto 5.x),
        # so the port would keep accepting connections that nobody answers. Close it.
        moto_internals.close_listening_socket(server)
        if self._werkzeug_level is not None:
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
            self._werkzeug_level = None

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (and the CLI) at this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self._region,
            # Nothing to discover on loopback; skip the instance-metadata timeout.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def apply(self, environ: MutableMapping[str, str]) -> None:
        """Point `environ` (usually `os.environ`) at the sandbox and away from real credentials."""
        for name in CLEARED_VARIABLES:
            environ.pop(name, None)
        environ.update(self.environment())

    def reset(self) -> None:
        """Forget every simulated resource (in every account and region)."""
        reset_moto(self.endpoint_url)


def reset_moto(endpoint_url: str) -> None:
    """POST moto's ``/moto-api/reset`` at `endpoint_url`: every simulated resource is gone."""
    # http.client rather than urllib: urllib would honour an HTTP(S)_PROXY from the
    # environment and send a loopback request elsewhere.
    url = urllib.parse.urlsplit(endpoint_url)
    if url.scheme != "http" or not url.hostname:
        raise DriftwardenError(f"not a sandbox endpoint: {endpoint_url}")
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    try:
        connection.request("POST", "/moto-api/reset", body=b"")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise DriftwardenError(f"resetting the sandbox failed: HTTP {response.status}")


def simulated_places() -> list[tuple[str, str]]:
    """Every (account id, region) in which the in-process simulated EC2 holds state.

    Every place driftwarden manages has EC2 state (a cluster's network, or at least the reads
    of it), so this is where the sandbox's managed resources can be. moto keeps its backends in
    the process (see the module docstring), so this sees every sandbox of the process.
    """
    return moto_internals.simulated_places()


def seed_existing(sandbox: Sandbox, sessions: Any, clusters: Sequence[Any], deployments: Sequence[Any]) -> list[str]:
    """Create in the sandbox what manifests expect to exist already in a real account.

    A real platform has the VPC and subnets named by static placement, and the customer
    managed policies named by `workloadIdentity.policyArns`; an empty simulated AWS has none
    of them, so the sandbox makes them (and says so). Returns one line per thing created.
    Nothing here runs outside `--sandbox`.
    """
    from driftwarden.engine.observe import account_ref

    done: list[str] = []
    for cluster in clusters:
        network = cluster.network
        if network is None:
            continue
        ec2 = sessions.client(account_ref(cluster.account), cluster.region, "ec2")
        # moto creates the region's default VPC and subnets on first use; let it do that
        # before the id generators are swapped, or they would take the ids.
        ec2.describe_vpcs()
        with moto_internals.fixed_ids("vpc", [network.vpc_id]):
            ec2.create_vpc(CidrBlock=cluster.vpc_subnet_range)
        subnet_ids = [*network.private_subnet_ids, *network.public_subnet_ids]
        blocks = list(ipaddress.ip_network(cluster.vpc_subnet_range).subnets(new_prefix=24))
        with moto_internals.fixed_ids("subnet", subnet_ids):
            for index, _subnet_id in enumerate(subnet_ids):
                zone = cluster.availability_zones[index % len(cluster.availability_zones)]
                ec2.create_subnet(VpcId=network.vpc_id, CidrBlock=str(blocks[index]), AvailabilityZone=zone)
        done.append(f"static placement of Cluster/{cluster.name}: VPC {network.vpc_id} with {len(subnet_ids)} subnets")
    by_name = {c.name: c for c in clusters}
    for deployment in deployments:
        cluster = by_name.get(deployment.cluster)
        if cluster is None:
            continue
        iam = sessions.client(account_ref(cluster.account), cluster.region, "iam")
        for arn in deployment.workload_identity.policy_arns:
            if ":aws:policy/" in arn:
                continue  # AWS managed policies are loaded by moto itself
            path, _, name = arn.split(":policy", 1)[1].rpartition("/")
            try:
                iam.create_policy(
                    PolicyName=name,
                    Path=f"{path}/" if path else "/",
                    PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}',
                )
            except DriftwardenError:
                continue  # already there (several deployments may name it)
            done.append(f"policy {arn} for Deployment/{deployment.name}")
    return done
