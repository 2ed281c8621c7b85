"""The values every manifest source deals in: `Snapshot`, the `Source` protocol, and its options.

`GitCredentials` and `SignaturePolicy` say how to reach and trust a Git remote; they hold
paths and names, never secrets (those are read at fetch time by `git_auth`).
`normalise_subpath` checks `--path` once for both kinds of source.

These live apart from `source` (which opens sources) so that `git_source` can use them
without importing `source` back: no import cycle.

What this module must not do: touch the filesystem, the network or Git, or parse YAML.
Import these names from `driftwarden.runtime.source`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from driftwarden.errors import UsageError
from driftwarden.manifests.problems import Problem

DEFAULT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Snapshot:
    """One revision of the manifests: what the rest of driftwarden validates and reconciles.

    `problems` are files that could not be taken (a symlink in a Git tree, a file over the
    size limit, a symlink leaving a directory root): treat a snapshot with error problems like
    a revision whose manifests fail to validate (report them; never prune).
    """

    revision: str
    files: Mapping[str, bytes]
    changed: frozenset[str]
    removed: frozenset[str]
    signer: str | None = None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class GitCredentials:
    """How to authenticate to the remote. Paths are read at fetch time, never copied."""

    https_token_file: Path | None = None
    https_token_env: str | None = None
    https_username: str = "x-access-token"
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None

    def __post_init__(self) -> None:
        if self.https_token_file is not None and self.https_token_env is not None:
            raise UsageError("give the Git HTTPS token as a file or as an environment variable, not both")


NO_CREDENTIALS = GitCredentials()


@dataclass(frozen=True)
class SignaturePolicy:
    """Keys trusted to sign the head commit.

    `gpg_keyring`: a file of exported public keys (imported into a private GnuPG home under
    the cache directory) or a GnuPG home directory used as it is. `ssh_allowed_signers`: an
    allowed-signers file in the format of `ssh-keygen -Y verify`.
    """

    gpg_keyring: Path | None = None
    ssh_allowed_signers: Path | None = None

    def __post_init__(self) -> None:
        if self.gpg_keyring is None and self.ssh_allowed_signers is None:
            raise UsageError("signature verification needs a GPG keyring or an SSH allowed-signers file")


class Source(Protocol):
    """A place manifests are read from."""

    def fetch(self) -> Snapshot:
        """The current snapshot; raises `SourceError` (message redacted) on failure."""
        ...

    @property
    def last_good(self) -> Snapshot | None:
        """The last snapshot `fetch` returned, kept when a later fetch fails."""
        ...

    def describe(self) -> str:
        """Where this source reads from, without credentials (for logs and status)."""
        ...


def normalise_subpath(path: str | None) -> str:
    """`--path` as a clean relative POSIX path ("" for the root); `UsageError` if it leaves the root."""
    if not path:
        return ""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise UsageError(f"--path {path}: must be a relative path inside the repository")
    return "/".join(parts)
