"""Reconcile passes built from real engine values, for the runtime's in-process tests.

A passed-in `PassResult` is what `engine.reconcile` returns: a real validated revision (YAML
through `validate_documents`), real `Resource`s, a real `Plan` from `make_plan` (with a stub
provider that declares field rules and never calls AWS), real `Observation`s and `Outcome`s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftwarden.engine.apply import Outcome
from driftwarden.engine.graph import Resource, ownership_tags
from driftwarden.engine.observe import Observation, PlaceError
from driftwarden.engine.plan import Change, make_plan
from driftwarden.engine.reconcile import PassResult
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, Provider, TypeInfo

ACCOUNT = "210987654321"
OTHER_ACCOUNT = "310987654322"
REGION = "us-east-1"


def cluster_yaml(name: str, account: str) -> str:
    return f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: {name}
spec:
  account:
    id: "{account}"
    externalId: dw-{name}-0001
"""


class StubProvider(Provider):
    """Declares no field rules; planning never calls AWS."""

    def __init__(self, type_: str) -> None:
        # Per instance: each stub stands for a type of its own.
        self.info = TypeInfo(  # type: ignore[misc]
            type=type_, service="stub", enumeration=Enumeration("list", "Items", "Id"), not_found=(),
            tag_style=tag_styles.EC2, create_order=0, permissions={}, managed_fields=(),
        )

    def read(self, ctx: Context) -> list[Observed]:
        raise AssertionError("planning must not read AWS")

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        raise AssertionError("planning must not create")

    def update(self, ctx: Any, resource: Any, desired: Any, observed: Any, changed: Any) -> Observed:
        raise AssertionError("planning must not update")

    def delete(self, ctx: Any, observed: Any) -> None:
        raise AssertionError("planning must not delete")


PROVIDERS = {"net": StubProvider("net")}


def validation(*clusters: tuple[str, str]) -> ValidationResult:
    """A valid revision of the given (name, account) clusters."""
    result = validate_documents([(f"{name}.yaml", cluster_yaml(name, account).encode()) for name, account in clusters])
    assert result.valid, result.errors
    return result


def core(revision: ValidationResult, cluster: str, size: int = 3) -> Resource:
    """The EKS cluster resource of `cluster`: what a Cluster's status follows."""
    (found,) = [c for c in revision.clusters if c.name == cluster]
    owner = f"Cluster/{cluster}"
    return Resource(key=f"{owner}/eks-cluster", type="net", owner=owner, component="eks-cluster",
                    account=found.account, region=found.region, desired={"Size": size},
                    tags=ownership_tags("driftwarden", owner, "eks-cluster", {}))


def seen(resource: Resource, size: int, status: str = "ready", state: str = "") -> Observed:
    return Observed(resource.type, "id-" + resource.owner, {"Size": size}, resource.tags, {"id": "x"},
                    status=status, state=state,  # type: ignore[arg-type]
                    account=resource.account.id, region=resource.region)


def a_pass(
    revision: ValidationResult,
    resources: Sequence[Resource],
    observed: Iterable[Observed],
    *,
    results: Mapping[str, str] | None = None,
    read_errors: Sequence[PlaceError] = (),
) -> PassResult:
    """A pass that planned `resources` against `observed`; `results`: key -> outcome of its change."""
    observed = list(observed)
    plan = make_plan(resources, observed, revision="r1", providers=PROVIDERS,
                     declared_owners={r.owner for r in resources})
    outcomes = [Outcome(c, (results or {}).get(c.key, "applied"), "boom" if (results or {}).get(c.key) == "failed"
                        else "") for c in plan.changes]
    return PassResult(revision="r1", validation=revision, plan=plan,
                      observation=Observation(observed, list(read_errors)), resources=list(resources),
                      outcomes=outcomes)


def change_of(result: PassResult, key: str) -> Change:
    assert result.plan is not None
    (change,) = [c for c in result.plan.changes if c.key == key]
    return change
