"""What `--ref` names on a Git remote, and where the cache repository keeps its fetched tip.

Owns `Target` (the remote ref followed and its local ref under `refs/driftwarden/`), the
naming rules (a full ref name or a full sha needs no remote; otherwise a branch wins over a
tag of the same name, the thing meant to move; no `--ref` follows the remote's HEAD branch
by name) and reading `git ls-remote --symref` output.

What this module must not do: run git, touch the network or import gitpython (`git_source`
asks the remote and hands the listing here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_ABBREVIATED_SHA = re.compile(r"^[0-9a-f]{4,39}$")


@dataclass(frozen=True)
class Target:
    """The remote ref followed, and where its fetched tip is kept in the cache repository."""

    kind: Literal["branch", "tag", "head", "commit"]
    name: str
    remote_ref: str
    local_ref: str


def branch(name: str) -> Target:
    return Target("branch", name, f"refs/heads/{name}", f"refs/driftwarden/heads/{name}")


def tag(name: str) -> Target:
    return Target("tag", name, f"refs/tags/{name}", f"refs/driftwarden/tags/{name}")


def commit(sha: str) -> Target:
    return Target("commit", sha, sha, f"refs/driftwarden/commits/{sha}")


# A detached remote HEAD: followed as it moves.
DETACHED_HEAD = Target("head", "HEAD", "HEAD", "refs/driftwarden/HEAD")


def target_by_form(ref: str | None) -> Target | None:
    """The target a full ref name or a full sha names, without asking the remote; None otherwise."""
    if ref is not None and ref.startswith("refs/heads/"):
        return branch(ref.removeprefix("refs/heads/"))
    if ref is not None and ref.startswith("refs/tags/"):
        return tag(ref.removeprefix("refs/tags/"))
    if ref is not None and _FULL_SHA.match(ref):
        return commit(ref)
    return None


def listing_patterns(ref: str | None) -> list[str]:
    """The patterns given to `git ls-remote` to find what `ref` names."""
    return ["HEAD"] if ref is None else [f"refs/heads/{ref}", f"refs/tags/{ref}"]


def target_from_listing(ref: str | None, listing: str) -> Target | None:
    """The target `ref` names among the refs `git ls-remote --symref` listed; None when none."""
    refs: dict[str, str] = {}
    head_branch: str | None = None
    for line in listing.splitlines():
        value, _tab, name = line.partition("\t")
        if value.startswith("ref: ") and name == "HEAD":
            head_branch = value.removeprefix("ref: ").removeprefix("refs/heads/")
        elif name:
            refs[name] = value
    if ref is None:
        if head_branch is not None:
            return branch(head_branch)
        return DETACHED_HEAD if "HEAD" in refs else None
    # A name that is both a branch and a tag: the branch, the thing meant to move.
    if f"refs/heads/{ref}" in refs:
        return branch(ref)
    if f"refs/tags/{ref}" in refs:
        return tag(ref)
    return None


def is_abbreviated_sha(ref: str) -> bool:
    return _ABBREVIATED_SHA.match(ref) is not None
