"""The AWS access layer (`driftwarden.providers.aws`) and the sandbox, against moto's real
server over HTTP: assume-role isolation, caching, refresh, retries, error mapping and call
accounting. Faults are injected on the wire by `faultproxy`, never by mocking botocore.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from conftest import CONTROL_ACCOUNT_ID, TARGET_ROLE_NAME, AwsHelper, fast_retry_config
from driftwarden.errors import (
    AccessDeniedError,
    DriftwardenError,
    NotFoundError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from driftwarden.providers.aws import paginate
from driftwarden.providers.aws_errors import map_error
from driftwarden.providers.calls import AccountRef, CountingObserver, is_mutating
from driftwarden.sandbox import moto_internals
from driftwarden.sandbox.server import CLEARED_VARIABLES, Sandbox
from faultproxy import (
    OK,
    SERVER_ERROR,
    THROTTLE,
    FaultProxy,
    Matcher,
    RecordedRequest,
    error,
    operation_is,
)

REGION = "us-east-1"
ACCOUNT_A = AccountRef("111111111111", TARGET_ROLE_NAME, "external-id-for-a")
ACCOUNT_B = AccountRef("222222222222", TARGET_ROLE_NAME, "external-id-for-b")


def assume_role_into(account_id: str) -> Matcher:
    """Match STS AssumeRole requests for a role in `account_id`."""

    def match(request: RecordedRequest) -> bool:
        arn = request.params.get("RoleArn", "")
        return request.operation == "AssumeRole" and arn.startswith(f"arn:aws:iam::{account_id}:")

    return match


def client_error(code: str, status: int = 400, message: str = "boom") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "AnyOperation",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Accounts, isolation and caching
# ---------------------------------------------------------------------------------------------


def test_account_ref_names_the_role_arn_and_keeps_the_external_id_out_of_repr() -> None:
    """An AccountRef builds the role ARN and never prints its ExternalId."""
    assert ACCOUNT_A.role_arn == f"arn:aws:iam::111111111111:role/{TARGET_ROLE_NAME}"
    assert "external-id-for-a" not in repr(ACCOUNT_A)


def test_control_client_acts_as_the_daemon_itself(aws: AwsHelper) -> None:
    """A control client calls AWS with the daemon's own identity, assuming no role."""
    observer = CountingObserver()
    sts = aws.sessions(observer).control_client("sts", REGION)

    assert sts.get_caller_identity()["Account"] == CONTROL_ACCOUNT_ID
    assert observer.count(operation="AssumeRole") == 0


def test_assumed_accounts_have_isolated_state(aws: AwsHelper) -> None:
    """A VPC created in one assumed account is not visible from another account."""
    sessions = aws.sessions()
    ec2_a = sessions.client(ACCOUNT_A, REGION, "ec2")
    ec2_b = sessions.client(ACCOUNT_B, REGION, "ec2")

    vpc_id = ec2_a.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]

    assert vpc_id in {v["VpcId"] for v in ec2_a.describe_vpcs()["Vpcs"]}
    assert vpc_id not in {v["VpcId"] for v in ec2_b.describe_vpcs()["Vpcs"]}
    # The out-of-band view of account A agrees: the VPC really lives there.
    out_of_band = aws.account_client(ACCOUNT_A.account_id, "ec2")
    assert vpc_id in {v["VpcId"] for v in out_of_band.describe_vpcs()["Vpcs"]}
    identity = sessions.client(ACCOUNT_B, REGION, "sts").get_caller_identity()
    assert identity["Account"] == ACCOUNT_B.account_id


def test_assume_role_sends_the_role_arn_external_id_and_a_driftwarden_session_name(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """AssumeRole asks for the account's role with its ExternalId, as a driftwarden-* session."""
    sessions = aws.sessions(endpoint_url=fault_proxy.endpoint_url)

    sessions.client(ACCOUNT_A, REGION, "ec2").describe_vpcs()

    (assume,) = fault_proxy.calls("sts", "AssumeRole")
    assert assume.params["RoleArn"] == ACCOUNT_A.role_arn
    assert assume.params["ExternalId"] == ACCOUNT_A.external_id
    assert assume.params["RoleSessionName"].startswith("driftwarden-")


def test_credentials_and_clients_are_built_once_per_account_role_and_external_id(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """Many clients and calls cost one AssumeRole per (account, role, external id)."""
    observer = CountingObserver()
    sessions = aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url)

    first = sessions.client(ACCOUNT_A, REGION, "ec2")
    for _ in range(3):
        assert sessions.client(ACCOUNT_A, REGION, "ec2") is first
        sessions.client(ACCOUNT_A, REGION, "ec2").describe_vpcs()
        sessions.client(ACCOUNT_A, "eu-west-1", "ec2").describe_vpcs()
        sessions.client(ACCOUNT_A, REGION, "iam").list_roles()
    assert sessions.client(ACCOUNT_A, "eu-west-1", "ec2") is not first

    assert len(fault_proxy.calls("sts", "AssumeRole")) == 1
    # Another external id for the same role is another trust relationship: its own AssumeRole.
    rotated = AccountRef(ACCOUNT_A.account_id, ACCOUNT_A.role_name, "rotated-external-id")
    sessions.client(rotated, REGION, "ec2").describe_vpcs()
    assert sessions.client(rotated, REGION, "ec2") is not first
    assert len(fault_proxy.calls("sts", "AssumeRole")) == 2
    assert observer.count("sts", "AssumeRole", "ok") == 2


def test_clients_built_from_many_threads_are_shared_and_assume_the_role_once(
    aws: AwsHelper,
) -> None:
    """Threads asking for the same client at once get one client and one AssumeRole."""
    observer = CountingObserver()
    sessions = aws.sessions(observer)
    barrier = threading.Barrier(12)
    clients: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        client = sessions.client(ACCOUNT_A, REGION, "ec2")
        client.describe_vpcs()
        with lock:
            clients.append(client)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(clients) == 12
    assert len({id(c) for c in clients}) == 1
    assert observer.count("sts", "AssumeRole") == 1
    assert observer.count("ec2", "DescribeVpcs", "ok") == 12


def test_expiring_credentials_are_refreshed_by_assuming_the_role_again(aws: AwsHelper) -> None:
    """Close to expiry, the cached client assumes the role again by itself and keeps working."""
    now = [datetime.now(UTC)]
    observer = CountingObserver()
    sessions = aws.sessions(observer, clock=lambda: now[0])
    ec2 = sessions.client(ACCOUNT_A, REGION, "ec2")

    ec2.describe_vpcs()
    ec2.describe_vpcs()
    assert observer.count("sts", "AssumeRole") == 1

    # 55 minutes into a one-hour session: inside botocore's mandatory refresh window.
    now[0] += timedelta(minutes=55)
    ec2.describe_vpcs()

    assert observer.count("sts", "AssumeRole") == 2
    assert ec2 is sessions.client(ACCOUNT_A, REGION, "ec2")


# ---------------------------------------------------------------------------------------------
# Retries and error mapping
# ---------------------------------------------------------------------------------------------


def test_throttling_is_retried_transparently_and_counted(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """Two throttles then success: the caller sees success; the observer sees both throttles."""
    observer = CountingObserver()
    ec2 = aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url).client(
        ACCOUNT_A, REGION, "ec2"
    )
    fault_proxy.inject(operation_is("ec2", "DescribeVpcs"), [THROTTLE, THROTTLE, OK])

    vpcs = ec2.describe_vpcs()["Vpcs"]

    assert vpcs  # moto's default VPC, from the real server
    assert len(fault_proxy.calls("ec2", "DescribeVpcs")) == 3
    assert observer.throttles["ec2"] == 2
    assert observer.count("ec2", "DescribeVpcs", "retried") == 2
    assert observer.count("ec2", "DescribeVpcs", "ok") == 1


def test_throttling_of_json_and_rest_services_is_retried_too(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """A JSON (SSM) and a REST-JSON (EKS) throttle are recognised and retried like EC2's."""
    observer = CountingObserver()
    sessions = aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url)
    fault_proxy.inject(operation_is("ssm", "DescribeParameters"), [THROTTLE, OK])
    fault_proxy.inject(operation_is("eks", "ListClusters"), [THROTTLE, OK])

    sessions.client(ACCOUNT_A, REGION, "ssm").describe_parameters()
    sessions.client(ACCOUNT_A, REGION, "eks").list_clusters()

    assert observer.throttles == {"ssm": 1, "eks": 1}
    assert observer.count(result="retried") == 2


def test_a_permanent_client_error_maps_to_permanent_provider_error_without_retrying(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """A 400 that is not throttling raises PermanentProviderError at once, caused by the ClientError."""
    observer = CountingObserver()
    ec2 = aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url).client(
        ACCOUNT_A, REGION, "ec2"
    )
    fault_proxy.inject(
        operation_is("ec2", "CreateVpc"), [error("InvalidParameterValue", message="bad CIDR")]
    )

    with pytest.raises(PermanentProviderError) as raised:
        ec2.create_vpc(CidrBlock="10.0.0.0/16")

    assert type(raised.value) is PermanentProviderError
    assert raised.value.code == "InvalidParameterValue"
    assert raised.value.retryable is False
    assert "bad CIDR" in str(raised.value) and ACCOUNT_A.account_id in str(raised.value)
    assert isinstance(raised.value.__cause__, ClientError)
    assert len(fault_proxy.calls("ec2", "CreateVpc")) == 1
    assert observer.count("ec2", "CreateVpc", "error") == 1


def test_a_server_error_storm_beyond_max_attempts_maps_to_transient_provider_error(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """503s on every attempt end, after max_attempts, in TransientProviderError."""
    observer = CountingObserver()
    sessions = aws.sessions(
        observer, endpoint_url=fault_proxy.endpoint_url, config=fast_retry_config(max_attempts=3)
    )
    ec2 = sessions.client(ACCOUNT_A, REGION, "ec2")
    fault_proxy.inject(operation_is("ec2", "DescribeVpcs"), [SERVER_ERROR], repeat_last=True)

    with pytest.raises(TransientProviderError) as raised:
        ec2.describe_vpcs()

    assert raised.value.retryable is True
    assert len(fault_proxy.calls("ec2", "DescribeVpcs")) == 3
    assert observer.count("ec2", "DescribeVpcs", "retried") == 2
    assert observer.count("ec2", "DescribeVpcs", "transient") == 1


def test_an_unreachable_endpoint_maps_to_transient_provider_error(aws: AwsHelper) -> None:
    """A connection refused on every attempt ends in TransientProviderError."""
    observer = CountingObserver()
    sessions = aws.sessions(
        observer,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=fast_retry_config(max_attempts=2),
    )

    with pytest.raises(TransientProviderError) as raised:
        sessions.control_client("ec2", REGION).describe_vpcs()

    assert isinstance(raised.value.__cause__, EndpointConnectionError)
    assert observer.count("ec2", "DescribeVpcs", "retried") == 1
    assert observer.count("ec2", "DescribeVpcs", "transient") == 1


def test_missing_resources_map_to_not_found_error(aws: AwsHelper) -> None:
    """moto's own not-found answers (EC2, IAM, EKS, paginated or not) raise NotFoundError."""
    observer = CountingObserver()
    sessions = aws.sessions(observer)

    with pytest.raises(NotFoundError) as ec2_missing:
        sessions.client(ACCOUNT_A, REGION, "ec2").describe_vpcs(VpcIds=["vpc-0123456789abcdef0"])
    with pytest.raises(NotFoundError) as iam_missing:
        sessions.client(ACCOUNT_A, REGION, "iam").get_role(RoleName="absent")
    with pytest.raises(NotFoundError) as eks_missing:
        sessions.client(ACCOUNT_A, REGION, "eks").describe_cluster(name="absent")
    with pytest.raises(NotFoundError) as paged_missing:
        iam = sessions.client(ACCOUNT_A, REGION, "iam")
        list(paginate(iam, "ListAttachedRolePolicies", "AttachedPolicies", RoleName="absent"))

    assert ec2_missing.value.code == "InvalidVpcID.NotFound"
    assert iam_missing.value.code == "NoSuchEntity"
    assert eks_missing.value.code == "ResourceNotFoundException"
    assert paged_missing.value.code == "NoSuchEntity"
    assert observer.count(result="not_found") == 4


def test_access_denied_on_assume_role_fails_only_that_account(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """A role that cannot be assumed fails its own account's calls; other accounts keep working."""
    observer = CountingObserver()
    sessions = aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url)
    denial = fault_proxy.inject(
        assume_role_into(ACCOUNT_A.account_id),
        [error("AccessDenied", status=403, message="not authorized to perform sts:AssumeRole")],
        repeat_last=True,
    )

    with pytest.raises(AccessDeniedError) as raised:
        sessions.client(ACCOUNT_A, REGION, "ec2").describe_vpcs()
    assert sessions.client(ACCOUNT_B, REGION, "ec2").describe_vpcs()["Vpcs"]

    message = str(raised.value)
    assert ACCOUNT_A.account_id in message and ACCOUNT_A.role_name in message
    assert raised.value.code == "AccessDenied"
    chain: BaseException | None = raised.value
    while chain is not None:
        assert ACCOUNT_A.external_id not in str(chain)
        chain = chain.__cause__
    assert denial.hits and observer.count("ec2", "DescribeVpcs", "denied") == 1

    # Fixing the trust policy needs no restart: the next call assumes the role again.
    fault_proxy.clear()
    assert sessions.client(ACCOUNT_A, REGION, "ec2").describe_vpcs()["Vpcs"]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AccessDenied", 403, AccessDeniedError),
        ("AccessDeniedException", 403, AccessDeniedError),
        ("UnauthorizedOperation", 403, AccessDeniedError),
        ("NoSuchEntity", 404, NotFoundError),
        ("ResourceNotFoundException", 404, NotFoundError),
        ("InvalidSubnetID.NotFound", 400, NotFoundError),
        ("DBInstanceNotFound", 404, NotFoundError),
        ("ParameterNotFound", 400, NotFoundError),
        ("Throttling", 400, TransientProviderError),
        ("ThrottlingException", 400, TransientProviderError),
        ("RequestLimitExceeded", 503, TransientProviderError),
        ("InternalError", 500, TransientProviderError),
        ("SomethingNew", 502, TransientProviderError),
        ("ValidationError", 400, PermanentProviderError),
        ("InvalidParameterValue", 400, PermanentProviderError),
        ("LimitExceededException", 400, PermanentProviderError),
    ],
)
def test_error_codes_map_to_the_driftwarden_error_that_says_what_to_do(
    code: str, status: int, expected: type[ProviderError]
) -> None:
    """Each AWS error code maps to exactly the expected driftwarden error class."""
    mapped = map_error(client_error(code, status), service="ec2", operation="CreateVpc")

    assert type(mapped) is expected
    assert mapped.code == code


def test_botocore_errors_without_an_answer_map_by_whether_retrying_helps() -> None:
    """No connection is transient; no credentials at all needs a human."""
    unreachable = map_error(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), service="ec2", operation="X"
    )
    no_credentials = map_error(NoCredentialsError(), service="ec2", operation="X")

    assert type(unreachable) is TransientProviderError
    assert type(no_credentials) is PermanentProviderError


def test_error_messages_never_repeat_the_value_aws_rejected() -> None:
    """A validation message quoting the rejected input (maybe a secret) is redacted."""
    rejected = client_error(
        "ValidationException",
        message="1 validation error detected: Value 'hunter2' at 'secretString' failed to "
        "satisfy constraint: Member must have length less than or equal to 4",
    )

    mapped = map_error(rejected, service="secretsmanager", operation="PutSecretValue")

    assert "hunter2" not in str(mapped)
    assert "secretString" in str(mapped)


# ---------------------------------------------------------------------------------------------
# Accounting and paging
# ---------------------------------------------------------------------------------------------


def test_mutating_calls_counts_creates_but_not_reads_or_assume_role(aws: AwsHelper) -> None:
    """Describe/List calls and the AssumeRole to get in are not mutating; a CreateVpc is."""
    observer = CountingObserver()
    ec2 = aws.sessions(observer).client(ACCOUNT_A, REGION, "ec2")

    ec2.describe_vpcs()
    assert observer.mutating_calls() == 0

    ec2.create_vpc(CidrBlock="10.7.0.0/16")
    ec2.describe_vpcs()
    assert observer.mutating_calls() == 1
    assert observer.count("sts", "AssumeRole", "ok") == 1


def test_counting_observer_counts_logical_calls_not_retries_as_mutating() -> None:
    """mutating_calls counts each non-read call once, however many attempts it took."""
    observer = CountingObserver()
    for operation in ("DescribeVpcs", "ListRoles", "GetParameter", "HeadObject", "LookupEvents"):
        observer.api_call("any", operation, "ok")
    observer.api_call("ec2", "CreateTags", "retried")
    observer.api_call("ec2", "CreateTags", "ok")
    observer.api_call("eks", "DeleteCluster", "error")

    assert observer.mutating_calls() == 2
    assert not is_mutating("sts", "AssumeRole")
    assert is_mutating("iam", "TagRole")


def test_paginate_yields_every_item_across_pages(aws: AwsHelper, fault_proxy: FaultProxy) -> None:
    """paginate follows botocore's paginator page by page and yields the items, not the pages."""
    iam = aws.account_client(ACCOUNT_A.account_id, "iam")
    for index in range(5):
        iam.create_role(RoleName=f"role-{index}", AssumeRolePolicyDocument="{}")
    client = aws.sessions(endpoint_url=fault_proxy.endpoint_url).client(ACCOUNT_A, REGION, "iam")

    roles = list(paginate(client, "ListRoles", "Roles", PaginationConfig={"PageSize": 2}))

    assert sorted(r["RoleName"] for r in roles) == [f"role-{i}" for i in range(5)]
    assert len(fault_proxy.calls("iam", "ListRoles")) == 3


# ---------------------------------------------------------------------------------------------
# The fault proxy itself (a test tool others rely on)
# ---------------------------------------------------------------------------------------------


def test_fault_proxy_names_the_operations_of_every_protocol(
    aws: AwsHelper, fault_proxy: FaultProxy
) -> None:
    """Query, EC2, JSON and REST-JSON requests are recorded with service and operation."""
    sessions = aws.sessions(endpoint_url=fault_proxy.endpoint_url)
    sessions.control_client("sts", REGION).get_caller_identity()
    sessions.control_client("ec2", REGION).describe_vpcs()
    sessions.control_client("ssm", REGION).describe_parameters()
    eks = sessions.control_client("eks", REGION)
    eks.list_clusters()
    with pytest.raises(NotFoundError):
        eks.describe_nodegroup(clusterName="c", nodegroupName="n")

    recorded = [(r.service, r.operation, r.protocol) for r in fault_proxy.requests]
    assert recorded == [
        ("sts", "GetCallerIdentity", "query"),
        ("ec2", "DescribeVpcs", "ec2"),
        ("ssm", "DescribeParameters", "json"),
        ("eks", "ListClusters", "rest-json"),
        ("eks", "DescribeNodegroup", "rest-json"),
    ]


# ---------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # moto keeps its state per process: this server shares it with the session's `moto_server`,
    # so this fixture never resets it.
    with Sandbox() as running:
        yield running


def test_sandbox_serves_aws_on_loopback_and_releases_its_port_on_exit() -> None:
    """Inside the context the sandbox answers AWS calls; afterwards its port is closed."""
    with Sandbox() as sandbox:
        port = int(sandbox.endpoint_url.rsplit(":", 1)[1])
        assert sandbox.endpoint_url.startswith("http://127.0.0.1:")
        sts = boto3.Session(
            aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name=REGION
        ).client("sts", endpoint_url=sandbox.endpoint_url)
        assert sts.get_caller_identity()["Account"] == CONTROL_ACCOUNT_ID

    assert not sandbox.running
    assert not accepts_connections(port)


def test_sandbox_environment_points_boto3_at_it_and_away_from_real_profiles(
    sandbox: Sandbox,
) -> None:
    """apply() sets endpoint, fake keys and region, and removes profile and token variables."""
    environ = {"AWS_PROFILE": "production", "AWS_SESSION_TOKEN": "real", "HOME": "/root"}

    sandbox.apply(environ)

    assert environ["AWS_ENDPOINT_URL"] == sandbox.endpoint_url
    assert environ["AWS_DEFAULT_REGION"] == REGION
    assert environ["AWS_ACCESS_KEY_ID"] and environ["AWS_SECRET_ACCESS_KEY"]
    assert not set(CLEARED_VARIABLES) & set(environ)
    assert environ["HOME"] == "/root"


def test_sandbox_on_a_busy_port_fails_with_a_clear_error() -> None:
    """Asking for a port that is taken fails at once, naming the port, instead of hanging."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(DriftwardenError, match=f"127.0.0.1:{port}"):
            Sandbox(port=port).start()


def test_sandbox_without_moto_explains_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the sandbox without moto installed names the extra to install."""
    monkeypatch.setitem(sys.modules, "moto.server", None)  # what an absent package looks like

    with pytest.raises(DriftwardenError, match=r"pip install 'driftwarden\[sandbox\]'"):
        Sandbox().start()


def test_sandbox_refuses_a_moto_older_than_its_internals_need_naming_the_version() -> None:
    """A moto older than MINIMUM_MOTO fails with a message naming the version needed; newer ones pass."""
    needed = ".".join(map(str, moto_internals.MINIMUM_MOTO))

    with pytest.raises(DriftwardenError, match=rf"moto >= {re.escape(needed)}, but moto 5\.2\.1 is installed"):
        moto_internals.check_moto_version("5.2.1")
    with pytest.raises(DriftwardenError, match=r"moto 4\.2\.14"):
        moto_internals.check_moto_version("4.2.14")
    for fine in (needed, "5.2.10", "5.10.0", "6.0.0.dev3"):
        moto_internals.check_moto_version(fine)
    moto_internals.require_moto()  # the installed moto


def test_sandbox_extra_requires_the_moto_that_the_internals_check_for() -> None:
    """pyproject's `sandbox` extra has MINIMUM_MOTO as moto's lower bound: pip and the check agree."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    bounds = [re.fullmatch(r"moto\[server\]>=([\d.]+)", r) for r in project["optional-dependencies"]["sandbox"]]

    assert [m.group(1) for m in bounds if m] == [".".join(map(str, moto_internals.MINIMUM_MOTO))]


def test_sandbox_lists_db_subnet_groups_in_the_tagging_api_as_aws_does(aws: AwsHelper) -> None:
    """The sandbox's tagging API lists DB subnet groups (rds:subgrp) with their tags, as AWS's does."""
    ec2 = aws.account_client(CONTROL_ACCOUNT_ID, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    aws.account_client(CONTROL_ACCOUNT_ID, "rds").create_db_subnet_group(
        DBSubnetGroupName="tagged", DBSubnetGroupDescription="d", SubnetIds=subnets,
        Tags=[{"Key": "team", "Value": "data"}],
    )

    listed = aws.account_client(CONTROL_ACCOUNT_ID, "resourcegroupstaggingapi").get_resources(
        ResourceTypeFilters=["rds:subgrp"]
    )["ResourceTagMappingList"]

    assert [(r["ResourceARN"].rsplit(":", 1)[1], r["Tags"]) for r in listed] == [
        ("tagged", [{"Key": "team", "Value": "data"}])
    ]


def test_fixed_ids_hands_out_the_chosen_ids_in_order_then_random_ones_again(aws: AwsHelper) -> None:
    """Inside `fixed_ids` new VPCs take the chosen ids in order; past them, and after the block, ids are random."""
    ec2 = aws.account_client(CONTROL_ACCOUNT_ID, "ec2")
    ec2.describe_vpcs()  # moto's default VPC first, outside the block

    with moto_internals.fixed_ids("vpc", ["vpc-0fixed0000000001"]):
        first = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        beyond = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    after = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]

    assert first == "vpc-0fixed0000000001"
    assert beyond != first and after != first and beyond.startswith("vpc-") and after.startswith("vpc-")
    assert (CONTROL_ACCOUNT_ID, REGION) in moto_internals.simulated_places()


def test_client_config_follows_the_standard_retry_environment(monkeypatch) -> None:
    """AWS_RETRY_MODE and AWS_MAX_ATTEMPTS reach every client (adaptive: client-side rate limiting); explicit values win."""
    from driftwarden.providers.aws import client_config

    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert client_config().retries == {"mode": "standard", "total_max_attempts": 5}
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    assert client_config().retries == {"mode": "adaptive", "total_max_attempts": 2}
    assert client_config(retry_mode="standard", max_attempts=7).retries == {"mode": "standard", "total_max_attempts": 7}
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")  # not ours to pick: the jittered standard mode
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "zero")
    assert client_config().retries == {"mode": "standard", "total_max_attempts": 5}
