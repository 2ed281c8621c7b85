"""Where manifests come from: a Git remote followed on a branch, tag or commit, or a directory.

`open_source` turns `--source`, `--ref` and `--path` into a `Source`; each `Source.fetch()`
returns a `Snapshot`: the revision, the bytes of every manifest file (`*.yaml`/`*.yml`) under
the path, what changed since the previous snapshot, and the problems met while reading (a
symlink in a Git tree, a file over the size limit). A fetch that fails raises `SourceError` and
leaves `last_good` as it was, so the daemon keeps the last good revision in force.

This module owns classifying the location and the directory source; the values come from
`source_types` and are re-exported here, the one place the rest of driftwarden imports them
from. The pieces of the Git source:

* `git_source`: `GitSource`, the bare cache repository, refs, blobs (the only gitpython import);
* `git_auth`: credentials and the environment of each git process (never written down);
* `signatures`: which trusted keys check a commit's signature, and git's verdict, read.

Directory sources: a plain directory is read as-is with `discovery.discover` and
`discovery.read_bytes` (hidden directories skipped, symlinks leaving the root refused); its
revision is a content hash, `dir:<12 hex>`. A Git work tree given without `--ref` is read as a plain
directory too (what is on disk, uncommitted edits included: what a developer running `plan`
expects); with `--ref` it is followed as a Git source, like a bare repository or a URL.

Snapshot file names are relative POSIX paths from the repository (or directory) root, so they
include `--path`: `manifests/clusters/prod.yaml` is what an author finds in the repository.

What this module must not do: import gitpython (`git_source` does), parse YAML or know about
manifest kinds (`loader`, `validation`).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from driftwarden.errors import SourceError, UsageError
from driftwarden.manifests.discovery import Limits, discover, read_bytes
from driftwarden.manifests.problems import Problem
from driftwarden.redaction import redact_url
from driftwarden.runtime.git_source import GitSource
from driftwarden.runtime.source_types import (
    DEFAULT_TIMEOUT_SECONDS,
    NO_CREDENTIALS,
    GitCredentials,
    SignaturePolicy,
    Snapshot,
    Source,
    normalise_subpath,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "NO_CREDENTIALS",
    "DirectorySource",
    "GitCredentials",
    "GitSource",
    "SignaturePolicy",
    "Snapshot",
    "Source",
    "directory_revision",
    "open_source",
]

_GIT_SCHEMES = frozenset({"http", "https", "ssh", "git", "file", "git+ssh", "ssh+git"})
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)")


# --- opening ------------------------------------------------------------------------------------


def open_source(
    location: str,
    *,
    ref: str | None,
    path: str | None,
    cache_dir: Path,
    credentials: GitCredentials = NO_CREDENTIALS,
    verify: SignaturePolicy | None = None,
    limits: Limits = Limits(),
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Source:
    """The `Source` for `--source LOCATION [--ref REF] [--path PATH]`; `UsageError` if unusable.

    A URL (`https://`, `ssh://`, `git://`, `file://`, `git@host:org/repo`) or a bare repository
    is a Git source; a Git work tree is one when `ref` is given; any other directory is read
    as a plain directory.
    """
    subpath = normalise_subpath(path)
    kind = _classify(location, ref)
    if kind == "directory":
        if ref is not None:
            raise UsageError(f"--ref {ref}: {location} is a plain directory, not a Git repository")
        if verify is not None:
            raise UsageError(
                f"--source {location}: signatures can only be verified on a Git source "
                "(for a local Git work tree, also give --ref)"
            )
        return DirectorySource(Path(location), subpath, limits=limits)
    url = str(Path(location).expanduser().resolve()) if kind == "local-repo" else location
    return GitSource(
        url,
        ref=ref,
        path=subpath,
        cache_dir=cache_dir,
        credentials=credentials,
        verify=verify,
        limits=limits,
        timeout=timeout,
    )


def _classify(location: str, ref: str | None) -> Literal["url", "local-repo", "directory"]:
    scheme, sep, _rest = location.partition("://")
    if sep:
        if scheme.lower() not in _GIT_SCHEMES:
            raise UsageError(f"--source {redact_url(location)}: unsupported URL scheme {scheme}://")
        return "url"
    local = Path(location).expanduser()
    if not local.exists():
        if _SCP_LIKE.match(location):
            return "url"
        raise UsageError(f"--source {location}: no such directory, and not a Git URL")
    if not local.is_dir():
        raise UsageError(f"--source {location}: not a directory")
    if _is_bare_repository(local):
        return "local-repo"
    if (local / ".git").exists() and ref is not None:
        return "local-repo"
    return "directory"


def _is_bare_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()



# --- directories --------------------------------------------------------------------------------


def directory_revision(files: Mapping[str, bytes], problems: Sequence[Problem] = ()) -> str:
    """A content hash standing in for a Git revision when the source is a plain directory."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "big") + files[name])
    # A problem appearing (a file grown past the limit) is a change even when no file is.
    for problem in sorted(problems):
        digest.update(b"\1" + str(problem).encode())
    return "dir:" + digest.hexdigest()[:12]


class DirectorySource:
    """A directory read as it is on disk, every fetch (no Git, no signatures)."""

    def __init__(self, root: Path, subpath: str = "", *, limits: Limits = Limits()) -> None:
        self._root = root.expanduser().absolute()
        self._subpath = subpath
        self._limits = limits
        self._last: Snapshot | None = None
        self._lock = threading.Lock()

    @property
    def last_good(self) -> Snapshot | None:
        return self._last

    def describe(self) -> str:
        return f"{self._root}:{self._subpath}" if self._subpath else str(self._root)

    def fetch(self) -> Snapshot:
        with self._lock:
            directory = self._root / self._subpath if self._subpath else self._root
            if not directory.is_dir():
                raise SourceError(f"{self.describe()}: not a directory")
            found, problems = discover([directory])
            files: dict[str, bytes] = {}
            for real, display in found:
                name = self._relative(display)
                data, problem = read_bytes(real, name, self._limits)
                if problem is not None:
                    problems.append(problem)
                elif data is not None:
                    files[name] = data
            problems = [replace(p, file=self._relative(p.file)) for p in problems]
            revision = directory_revision(files, problems)
            previous = self._last
            if previous is not None and previous.revision == revision:
                return self._idle()
            old = previous.files if previous is not None else {}
            snapshot = Snapshot(
                revision=revision,
                files=MappingProxyType(files),
                changed=frozenset(n for n, data in files.items() if old.get(n) != data),
                removed=frozenset(set(old) - set(files)),
                problems=tuple(sorted(problems)),
            )
            self._last = snapshot
            return snapshot

    def _relative(self, display: str) -> str:
        try:
            return Path(display).relative_to(self._root).as_posix()
        except ValueError:
            return display

    def _idle(self) -> Snapshot:
        assert self._last is not None
        if self._last.changed or self._last.removed:
            self._last = replace(self._last, changed=frozenset(), removed=frozenset())
        return self._last


