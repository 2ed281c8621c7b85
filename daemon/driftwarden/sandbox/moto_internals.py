"""The one module that reaches past moto's public surface, behind a check of moto's version.

What it owns: everything the sandbox needs from moto that its server, its ``/moto-api``
endpoints and its documented ``MOTO_*`` settings do not offer, each checked against
`MINIMUM_MOTO` (the oldest moto these internals were written and tested against, and the lower
bound of the ``sandbox`` extra in pyproject.toml) before it is touched:

* `index_db_subnet_groups` — the only patch of a moto backend: moto's Resource Groups Tagging
  API leaves DB subnet groups out (AWS lists them, and driftwarden reads their tags there);
* `simulated_places` — the (account, region) pairs the in-process simulated EC2 holds state in;
* `fixed_ids` — moto hands out chosen VPC or subnet ids for a moment (static placement names
  real ones; moto has no public way to choose an EC2 id);
* `close_listening_socket` — what `ThreadedMotoServer.stop` leaves open.

What it must not do: be imported outside `driftwarden.sandbox` (the rest of the package talks
to the sandbox over HTTP, as to AWS), or touch moto before `require_moto` has passed: a moto
that moved its internals must fail with a message naming the version needed, not with an
ImportError from deep inside.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

from driftwarden.errors import DriftwardenError

# moto 5.2.2 moved tagging into `moto.core.resource_tagging` and gave every backend
# `iter_tagged_resources`, which `index_db_subnet_groups` extends.
MINIMUM_MOTO: Final = (5, 2, 2)
INSTALL_HINT: Final = "pip install 'driftwarden[sandbox]'"

# The id generators `fixed_ids` swaps, by kind of EC2 resource.
_ID_GENERATORS: Final = {
    "vpc": ("moto.ec2.models.vpcs", "random_vpc_id"),
    "subnet": ("moto.ec2.models.subnets", "random_subnet_id"),
}


def _version_tuple(version: str) -> tuple[int, ...]:
    # "5.2.2", "5.2.3.dev4", "6.0.0rc1": the leading release numbers are what is compared.
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def check_moto_version(version: str) -> None:
    """Raise `DriftwardenError` naming the moto needed when `version` is older than `MINIMUM_MOTO`."""
    needed = ".".join(map(str, MINIMUM_MOTO))
    if _version_tuple(version) < MINIMUM_MOTO:
        raise DriftwardenError(
            f"the sandbox needs moto >= {needed}, but moto {version} is installed: "
            f"pip install --upgrade 'moto[server]>={needed}' (or {INSTALL_HINT})"
        )


def require_moto() -> None:
    """Check that moto is installed and new enough for this module; raise `DriftwardenError` if not."""
    try:
        import moto
    except ImportError as e:
        raise DriftwardenError(f"the sandbox needs moto, an optional dependency: {INSTALL_HINT}") from e
    check_moto_version(getattr(moto, "__version__", "0"))


def index_db_subnet_groups() -> None:
    """Make moto's Resource Groups Tagging API list DB subnet groups, as AWS's does (`rds:subgrp`).

    moto indexes RDS instances, clusters, snapshots and proxies but not subnet groups;
    driftwarden reads their tags from that index (providers/tagging.py). Idempotent.
    """
    require_moto()
    from moto.core.resource_tagging import TaggedResource
    from moto.rds.models import RDSBackend

    listed = RDSBackend.iter_tagged_resources
    if getattr(listed, "indexes_subnet_groups", False):
        return

    def iter_tagged_resources(self: Any) -> Iterator[Any]:
        yield from listed(self)
        for group in self.subnet_groups.values():
            tags = {tag["Key"]: tag["Value"] for tag in group.get_tags()}
            yield TaggedResource(arn=group.arn, tags=tags, resource_type="rds:subgrp")

    iter_tagged_resources.indexes_subnet_groups = True  # type: ignore[attr-defined]
    RDSBackend.iter_tagged_resources = iter_tagged_resources  # type: ignore[method-assign]


def simulated_places() -> list[tuple[str, str]]:
    """Every (account id, region) in which the in-process simulated EC2 holds state."""
    require_moto()
    from moto.backends import get_backend

    return sorted(
        (account, region)
        for account, regions in list(get_backend("ec2").items())
        for region in list(regions.keys())
    )


@contextlib.contextmanager
def fixed_ids(kind: str, ids: Sequence[str]) -> Iterator[None]:
    """While inside, moto hands out `ids` in order for new resources of `kind` ("vpc", "subnet").

    The sandbox's moto runs in this process; its random id generator of that kind is swapped
    for the duration, then put back (also on error). Past the end of `ids`, ids are random again.
    """
    require_moto()
    module, function = _ID_GENERATORS[kind]
    target = importlib.import_module(module)
    original = getattr(target, function)
    queue = list(ids)

    def next_id() -> str:
        return queue.pop(0) if queue else original()

    setattr(target, function, next_id)
    try:
        yield
    finally:
        setattr(target, function, original)


def close_listening_socket(server: Any) -> None:
    """Close the socket a stopped `ThreadedMotoServer` still listens on (its stop() does not)."""
    inner = getattr(server, "_server", None)
    if inner is not None:
        inner.server_close()


__all__ = [
    "MINIMUM_MOTO",
    "check_moto_version",
    "close_listening_socket",
    "fixed_ids",
    "index_db_subnet_groups",
    "require_moto",
    "simulated_places",
]
