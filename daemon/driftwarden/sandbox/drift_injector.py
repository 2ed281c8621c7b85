"""Out-of-band drift for the sandbox: ``driftwarden run --sandbox --sandbox-drift-every 2m``.

Nobody else touches a simulated AWS, so after the first apply a sandbox never drifts, and the
half of driftwarden that matters day to day (drift found, repaired or only reported, the
dashboards) has nothing to show. The injector plays the colleague with console access: every
so often it picks one resource that driftwarden manages (found the way anyone would find it, by
the ``driftwarden:managed-by`` tag) and changes it by hand, through the AWS API, inside the
resource's account. The kinds of change, taken in turn:

* ``subnet-role-tag`` — remove a subnet's load-balancer role tag (``kubernetes.io/role/elb``);
* ``nodegroup-scaling`` — raise a node group's maximum size;
* ``ssm-parameter`` — edit a deployment's rendered configuration parameter;
* ``role-trust`` — let the account root assume a role (a widened trust policy);
* ``default-route`` — delete a route table's ``0.0.0.0/0`` route.

A kind with nothing to change (no node group yet, every default route already gone) passes its
turn to the next. Which resource of a kind is changed is chosen by a seeded random generator
over the candidates in a stable order (by place and driftwarden key, not by AWS's random ids),
so the same seed over the same manifests injects the same drift. Every change is logged as one ``sandbox.drift_injected`` event naming the kind, the
resource (its driftwarden key), where it lives and what was done.

What it owns: its thread (a daemon thread, ended by `stop`), its own AWS sessions (assuming
``OrganizationAccountAccessRole`` in each account, as a person would; none of its calls count in
driftwarden's metrics), and the choice of what to change.

What it must not do: run against anything but a loopback endpoint (the sandbox); touch a
resource without our managed-by tag; remove an ownership tag (the resource would stop being
ours and the next plan would create a second one: that is not drift); or let an error end its
thread (a failed injection is logged and the next tick tries again).
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from driftwarden.engine.graph import DEFAULT_INSTANCE, TAG_COMPONENT, TAG_MANAGED_BY, TAG_OWNER
from driftwarden.errors import DriftwardenError
from driftwarden.providers.aws import (
    AwsClient,
    AwsSessions,
    SessionFactory,
    client_config,
    paginate,
)
from driftwarden.providers.base import tag_map
from driftwarden.providers.calls import AccountRef
from driftwarden.runtime.logs import EventLog

PlaceKey = tuple[str, str]  # (account id, region)

# The load-balancer role tags of EKS subnets and the default route: what the AWS load balancer
# controller and the VPC route tables use, as a person editing them by hand knows them. Our own
# words, not the providers': the injector plays someone outside driftwarden.
ROLE_TAGS: Final = ("kubernetes.io/role/elb", "kubernetes.io/role/internal-elb")
DEFAULT_ROUTES: Final = frozenset({"0.0.0.0/0"})

# What someone with console access in a member account of an organisation assumes.
OPERATOR_ROLE: Final = "OrganizationAccountAccessRole"
ROLE_SESSION_NAME: Final = "sandbox-drift"


@dataclass(frozen=True)
class Injection:
    """One change made by hand: which kind, to which resource, where, and what."""

    kind: str
    resource: str  # driftwarden's key (owner/component), e.g. Cluster/dev/subnet/public-a
    id: str  # AWS's name or id for it
    account: str
    region: str
    change: str


@dataclass(frozen=True)
class _Target:
    """A resource a kind can change, with what the change needs to know."""

    id: str
    tags: Mapping[str, str]
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        owner, component = self.tags.get(TAG_OWNER), self.tags.get(TAG_COMPONENT)
        return f"{owner}/{component}" if owner and component else self.id


Clients = Callable[[str], AwsClient]  # service name -> client in one account and region


@dataclass(frozen=True)
class _Kind:
    name: str
    find: Callable[[Clients, str], list[_Target]]
    change: Callable[[Clients, _Target, str], str]  # returns what was done
    # IAM is global: look once per account, not in every region.
    global_service: bool = False


# --- the kinds of change ---------------------------------------------------------------------------


def _ec2_managed(clients: Clients, operation: str, result_key: str, instance: str) -> list[dict[str, Any]]:
    items = paginate(clients("ec2"), operation, result_key,
                     Filters=[{"Name": f"tag:{TAG_MANAGED_BY}", "Values": [instance]}])
    return [item for item in items if tag_map(item.get("Tags")).get(TAG_MANAGED_BY) == instance]


def _find_subnets(clients: Clients, instance: str) -> list[_Target]:
    found = []
    for subnet in _ec2_managed(clients, "describe_subnets", "Subnets", instance):
        tags = tag_map(subnet.get("Tags"))
        present = [key for key in ROLE_TAGS if key in tags]
        if present:
            found.append(_Target(subnet["SubnetId"], tags, {"role_tag": present[0]}))
    return found


def _remove_role_tag(clients: Clients, target: _Target, account: str) -> str:
    role_tag = target.detail["role_tag"]
    clients("ec2").delete_tags(Resources=[target.id], Tags=[{"Key": role_tag}])
    return f"removed tag {role_tag}"


def _find_nodegroups(clients: Clients, instance: str) -> list[_Target]:
    eks = clients("eks")
    found = []
    for cluster in paginate(eks, "list_clusters", "clusters"):
        for name in paginate(eks, "list_nodegroups", "nodegroups", clusterName=cluster):
            group = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
            tags = dict(group.get("tags") or {})
            if tags.get(TAG_MANAGED_BY) == instance and group.get("status", "ACTIVE") == "ACTIVE":
                found.append(_Target(name, tags, {"cluster": cluster, "scaling": dict(group.get("scalingConfig") or {})}))
    return found


def _raise_max_size(clients: Clients, target: _Target, account: str) -> str:
    scaling = target.detail["scaling"]
    before = int(scaling.get("maxSize") or 1)
    wanted = {**scaling, "maxSize": before + 2}
    clients("eks").update_nodegroup_config(
        clusterName=target.detail["cluster"], nodegroupName=target.id, scalingConfig=wanted
    )
    return f"scalingConfig.maxSize {before} -> {before + 2}"


def _find_parameters(clients: Clients, instance: str) -> list[_Target]:
    ssm = clients("ssm")
    found = []
    listed = paginate(ssm, "describe_parameters", "Parameters",
                      ParameterFilters=[{"Key": f"tag:{TAG_MANAGED_BY}", "Values": [instance]}])
    for parameter in listed:
        name = parameter["Name"]
        tags = tag_map(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name).get("TagList"))
        if tags.get(TAG_MANAGED_BY) == instance:
            found.append(_Target(name, tags, {"type": parameter.get("Type", "String")}))
    return found


def _edit_parameter(clients: Clients, target: _Target, account: str) -> str:
    ssm = clients("ssm")
    value = ssm.get_parameter(Name=target.id, WithDecryption=False)["Parameter"]["Value"]
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if isinstance(document, dict):
        # The rendered configuration is JSON: a hand edit adds what someone needed in a hurry.
        previous = document.get("hotfix")
        number = previous + 1 if isinstance(previous, int) else 1
        edited = json.dumps({**document, "hotfix": number}, sort_keys=True)
        what = f"value edited by hand (hotfix {number})"
    else:
        edited, what = f"{value} # edited by hand", "value edited by hand"
    ssm.put_parameter(Name=target.id, Value=edited, Type=target.detail["type"], Overwrite=True)
    return what


def _policy(document: Any) -> dict[str, Any]:
    # GetAccountAuthorizationDetails documents are URL-encoded JSON; botocore usually decodes them.
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    return dict(document)


def _find_roles(clients: Clients, instance: str) -> list[_Target]:
    found = []
    for role in paginate(clients("iam"), "get_account_authorization_details", "RoleDetailList", Filter=["Role"]):
        tags = tag_map(role.get("Tags"))
        if tags.get(TAG_MANAGED_BY) == instance:
            found.append(_Target(role["RoleName"], tags, {"trust": _policy(role["AssumeRolePolicyDocument"])}))
    return found


def _widen_trust(clients: Clients, target: _Target, account: str) -> str:
    trust = target.detail["trust"]
    root = f"arn:aws:iam::{account}:root"
    statements = list(trust.get("Statement") or [])
    statements.append({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "sts:AssumeRole"})
    clients("iam").update_assume_role_policy(
        RoleName=target.id, PolicyDocument=json.dumps({**trust, "Statement": statements})
    )
    return f"trust policy now also allows {root}"


def _find_default_routes(clients: Clients, instance: str) -> list[_Target]:
    found = []
    for table in _ec2_managed(clients, "describe_route_tables", "RouteTables", instance):
        routes = [r["DestinationCidrBlock"] for r in table.get("Routes", [])
                  if r.get("DestinationCidrBlock") in DEFAULT_ROUTES]
        if routes:
            found.append(_Target(table["RouteTableId"], tag_map(table.get("Tags")), {"destination": sorted(routes)[0]}))
    return found


def _delete_route(clients: Clients, target: _Target, account: str) -> str:
    destination = target.detail["destination"]
    clients("ec2").delete_route(RouteTableId=target.id, DestinationCidrBlock=destination)
    return f"deleted route {destination}"


KINDS: Final[tuple[_Kind, ...]] = (
    _Kind("subnet-role-tag", _find_subnets, _remove_role_tag),
    _Kind("nodegroup-scaling", _find_nodegroups, _raise_max_size),
    _Kind("ssm-parameter", _find_parameters, _edit_parameter),
    _Kind("role-trust", _find_roles, _widen_trust, global_service=True),
    _Kind("default-route", _find_default_routes, _delete_route),
)
KIND_NAMES: Final = tuple(kind.name for kind in KINDS)


# --- the injector ----------------------------------------------------------------------------------


def require_loopback(endpoint_url: str) -> None:
    """Refuse any endpoint but ``http://`` on a loopback address: drift is for the sandbox only."""
    url = urllib.parse.urlsplit(endpoint_url)
    host = url.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if url.scheme != "http" or not loopback:
        raise DriftwardenError(f"drift is only injected into the sandbox on loopback, not {endpoint_url}")


class DriftInjector:
    """Every `every` seconds, one hand-made change to a managed resource in the sandbox.

    `places` lists the (account id, region) pairs to look in; it is called on every tick, so
    accounts that appear later are found. `session_factory` builds the identity that assumes
    the operator role (the sandbox's fake credentials). Use `inject` for one change now, or
    `start`/`stop` (or ``with``) for the background thread.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        every: float,
        places: Callable[[], Iterable[PlaceKey]],
        session_factory: SessionFactory,
        instance: str = DEFAULT_INSTANCE,
        seed: int | None = 0,
        kinds: Sequence[str] = KIND_NAMES,
        log: EventLog | None = None,
    ) -> None:
        require_loopback(endpoint_url)
        if every <= 0:
            raise ValueError("every must be positive")
        unknown = sorted(set(kinds) - set(KIND_NAMES))
        if unknown:
            raise ValueError(f"unknown kinds of drift: {', '.join(unknown)} (known: {', '.join(KIND_NAMES)})")
        self.every = every
        self.instance = instance
        self._places = places
        self._kinds = [kind for kind in KINDS if kind.name in kinds]
        self._turn = 0
        self._random = random.Random(seed)
        self._log = log or EventLog("driftwarden.sandbox.server")
        # Few quick attempts: a change that fails is logged and the next tick tries another.
        self._sessions = AwsSessions(session_factory, endpoint_url=endpoint_url, role_session_name=ROLE_SESSION_NAME,
                                     config=client_config(max_attempts=2, connect_timeout=2, read_timeout=20))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # One injection at a time, whether from the thread or a direct call.
        self._lock = threading.Lock()

    def __enter__(self) -> DriftInjector:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._log.info("sandbox.drift_started", every_seconds=self.every, kinds=[k.name for k in self._kinds])
        self._thread = threading.Thread(target=self._run, name="sandbox-drift", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread (after the change in progress, if any) and close the sessions."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._sessions.close()

    def inject(self) -> Injection | None:
        """Make one change now: the next kind that has something to change; None if none has."""
        with self._lock:
            places = sorted(set(self._places()))
            for offset in range(len(self._kinds)):
                index = (self._turn + offset) % len(self._kinds)
                kind = self._kinds[index]
                candidates = self._candidates(kind, places)
                if not candidates:
                    continue
                self._turn = index + 1
                (account, region), target = self._random.choice(candidates)
                change = kind.change(self._clients(account, region), target, account)
                injection = Injection(kind.name, target.key, target.id, account, region, change)
                self._log.info("sandbox.drift_injected", kind=injection.kind, resource=injection.resource,
                               id=injection.id, account=account, region=region, change=change)
                return injection
            self._log.debug("sandbox.drift_skipped", reason="no managed resource to change yet")
            return None

    def _candidates(self, kind: _Kind, places: Sequence[PlaceKey]) -> list[tuple[PlaceKey, _Target]]:
        found: list[tuple[PlaceKey, _Target]] = []
        seen_accounts: set[str] = set()
        for account, region in places:
            if kind.global_service:
                if account in seen_accounts:
                    continue
                seen_accounts.add(account)
            targets = kind.find(self._clients(account, region), self.instance)
            found.extend(((account, region), target) for target in sorted(targets, key=lambda t: (t.key, t.id)))
        return found

    def _clients(self, account: str, region: str) -> Clients:
        # The sandbox checks no ExternalId; a real account's operator role would not need one.
        ref = AccountRef(account, OPERATOR_ROLE, "sandbox")
        return lambda service: self._sessions.client(ref, region, service)

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                self.inject()
            except DriftwardenError as exc:
                self._log.warning("sandbox.drift_failed", error=str(exc))
            except Exception as exc:  # the thread must outlive one bad tick; the next one tries again
                self._log.error("sandbox.drift_failed", error=str(exc), exc_info=True)


__all__ = ["KIND_NAMES", "DriftInjector", "Injection", "require_loopback"]
