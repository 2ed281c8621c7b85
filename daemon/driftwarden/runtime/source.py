"""Where manifests come from: a Git remote followed on a branch, tag or commit, or a directory.

This is the only module that imports gitpython. `open_source` turns `--source`, `--ref` and
`--path` into a `Source`; each `Source.fetch()` returns a `Snapshot`: the revision, the bytes of
every manifest file (`*.yaml`/`*.yml`) under the path, what changed since the previous snapshot,
and the problems met while reading (a symlink in a Git tree, a file over the size limit). A
fetch that fails raises `SourceError` and leaves `last_good` as it was, so the daemon keeps the
last good revision in force.

Git sources:

* The remote is fetched into a bare cache repository, `cache_dir/<sha256 of the URL>[:16]`,
  made once; every later fetch is one shallow `git fetch` of the one ref followed
  (`+refs/heads/B:refs/driftwarden/heads/B`, depth 1, so force-pushes are followed too).
  Files are read from the commit's tree, blob by blob; there is no working tree.
* Idle costs one `git fetch`: when the ref still points where it did, `fetch()` returns
  `last_good` itself (with `changed`/`removed` empty) and reads no object. A new commit
  re-reads only the blobs whose id changed. A pinned commit sha needs no network once fetched.
* `--ref` names a branch, a tag or a commit (full or abbreviated sha); without it the remote's
  HEAD branch is looked up once and then followed by name: if that branch is deleted, fetches
  fail ("branch X no longer exists on the remote"); the source never switches branches alone.
* Credentials never reach the cache repository's config, the command line, logs, errors or
  snapshots. An HTTPS token (from a file, re-read on every fetch so rotated tokens work, or
  an environment variable, or the `user:token@` part of the URL, which is stripped from the
  URL) is handed to git by a credential helper given through `GIT_CONFIG_*` environment
  variables of the git process only; the helper prints the token from that process's
  environment. SSH uses `GIT_SSH_COMMAND` with the given key and known-hosts file and strict
  host key checking. Every message is passed through `driftwarden.redaction.redact`.
* With a `SignaturePolicy`, the head commit must carry a good GPG or SSH signature by a key of
  the dedicated keyring / allowed-signers file; otherwise the fetch fails and the last good
  (signed) snapshot stays in force. The host's own `~/.gnupg` is never consulted.

Directory sources: a plain directory is read as-is with `loader.discover` and
`loader.read_bytes` (hidden directories skipped, symlinks leaving the root refused); its revision
is a content hash, `dir:<12 hex>`. A Git work tree given without `--ref` is read as a plain
directory too (what is on disk, uncommitted edits included: what a developer running `plan`
expects); with `--ref` it is followed as a Git source, like a bare repository or a URL.

Snapshot file names are relative POSIX paths from the repository (or directory) root, so they
include `--path`: `manifests/clusters/prod.yaml` is what an author finds in the repository.

What this module must not do: parse YAML or know about manifest kinds (`loader`, `validation`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
import shlex
import shutil
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import git
from git.exc import GitCommandNotFound
from git.refs import SymbolicReference
from gitdb.exc import ODBError

from driftwarden.errors import SourceError, UsageError
from driftwarden.manifests.loader import MANIFEST_SUFFIXES, Limits, discover, read_bytes
from driftwarden.manifests.problems import Problem
from driftwarden.redaction import redact, redact_url

DEFAULT_TIMEOUT_SECONDS = 120.0

# Environment variables of the git subprocess that carry HTTPS credentials to the helper.
_USERNAME_VARIABLE = "DRIFTWARDEN_GIT_USERNAME"
_PASSWORD_VARIABLE = "DRIFTWARDEN_GIT_PASSWORD"
# A credential helper that answers `get` from the git process's own environment. Run by the
# shell because it starts with "!"; it contains variable names only, never a secret.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf "username=%s\\npassword=%s\\n" "${_USERNAME_VARIABLE}" "${_PASSWORD_VARIABLE}"; }}; f'
)
_SYMLINK_MODE = 0o120000
_GIT_SCHEMES = frozenset({"http", "https", "ssh", "git", "file", "git+ssh", "ssh+git"})
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_ABBREVIATED_SHA = re.compile(r"^[0-9a-f]{4,39}$")
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)")


# --- values -------------------------------------------------------------------------------------


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
    subpath = _normalise_subpath(path)
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


def _normalise_subpath(path: str | None) -> str:
    if not path:
        return ""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise UsageError(f"--path {path}: must be a relative path inside the repository")
    return "/".join(parts)


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


# --- Git ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The remote ref followed, and where its fetched tip is kept in the cache repository."""

    kind: Literal["branch", "tag", "head", "commit"]
    name: str
    remote_ref: str
    local_ref: str


@dataclass
class _GitResult:
    status: int
    stdout: str
    stderr: str


@dataclass
class _Secrets:
    """Values that must never be shown, and the environment that hands them to git."""

    values: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    config: list[tuple[str, str]] = field(default_factory=list)


class GitSource:
    """A Git remote followed on one ref; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        ref: str | None,
        path: str = "",
        cache_dir: Path,
        credentials: GitCredentials = NO_CREDENTIALS,
        verify: SignaturePolicy | None = None,
        limits: Limits = Limits(),
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._display_url = redact_url(url)
        self._url, self._url_username, self._url_password = _split_credentials(url)
        self._ref = ref
        self._path = _normalise_subpath(path)
        self._cache_dir = cache_dir
        self._repo_dir = cache_dir / hashlib.sha256(self._url.encode()).hexdigest()[:16]
        self._credentials = credentials
        self._policy = verify
        self._limits = limits
        self._timeout = timeout
        self._target: _Target | None = None
        self._last: Snapshot | None = None
        self._last_tip: str | None = None
        # path -> (blob id, bytes) of the last snapshot: a new commit re-reads changed blobs only.
        self._blobs: dict[str, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()

    # -- public surface

    @property
    def last_good(self) -> Snapshot | None:
        return self._last

    @property
    def repository_dir(self) -> Path:
        """The bare cache repository (for operators and tests; holds no credentials)."""
        return self._repo_dir

    def describe(self) -> str:
        ref = self._ref or (self._target.name if self._target is not None else "HEAD")
        where = f"{self._display_url}@{ref}"
        return f"{where}:{self._path}" if self._path else where

    def fetch(self) -> Snapshot:
        with self._lock:
            secrets = self._secrets()
            try:
                self._ensure_repository()
                target = self._target or self._resolve(secrets)
                self._target = target
                tip = self._update(target, secrets)
                if self._last is not None and tip == self._last_tip:
                    return self._idle()
                with git.Repo(self._repo_dir) as repo:
                    commit = repo.commit(tip)
                    signer = self._verify(commit, secrets) if self._policy is not None else None
                    snapshot, blobs = self._snapshot(repo, commit, signer)
            except SourceError as exc:
                raise SourceError(redact(str(exc), secrets.values)) from None
            except (git.GitError, ODBError, ValueError, OSError) as exc:
                message = redact(f"{self.describe()}: cannot read the repository: {exc}", secrets.values)
                raise SourceError(message) from None
            self._last = snapshot
            self._last_tip = tip
            self._blobs = blobs
            return snapshot

    # -- steps of a fetch

    def _idle(self) -> Snapshot:
        assert self._last is not None
        if self._last.changed or self._last.removed:
            # Same files, same mapping object: nothing is copied and no object is read.
            self._last = replace(self._last, changed=frozenset(), removed=frozenset())
        return self._last

    def _ensure_repository(self) -> None:
        if (self._repo_dir / "HEAD").is_file():
            return
        if self._repo_dir.exists():  # a half-made cache from an interrupted first fetch
            shutil.rmtree(self._repo_dir)
        self._repo_dir.parent.mkdir(parents=True, exist_ok=True)
        git.Repo.init(self._repo_dir, bare=True).close()

    def _resolve(self, secrets: _Secrets) -> _Target:
        """Which remote ref `--ref` names: asked of the remote once, on the first fetch."""
        ref = self._ref
        if ref is not None and ref.startswith("refs/heads/"):
            return _branch(ref.removeprefix("refs/heads/"))
        if ref is not None and ref.startswith("refs/tags/"):
            return _tag(ref.removeprefix("refs/tags/"))
        if ref is not None and _FULL_SHA.match(ref):
            return _commit(ref)
        patterns = ["HEAD"] if ref is None else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        listed = self._git(["ls-remote", "--symref", self._url, *patterns], secrets, network=True)
        if listed.status != 0:
            raise SourceError(f"{self.describe()}: cannot list the remote's refs: {_reason(listed.stderr)}")
        refs: dict[str, str] = {}
        head_branch: str | None = None
        for line in listed.stdout.splitlines():
            value, _tab, name = line.partition("\t")
            if value.startswith("ref: ") and name == "HEAD":
                head_branch = value.removeprefix("ref: ").removeprefix("refs/heads/")
            elif name:
                refs[name] = value
        if ref is None:
            if head_branch is not None:
                return _branch(head_branch)
            if "HEAD" in refs:  # a detached remote HEAD: follow it as it moves
                return _Target("head", "HEAD", "HEAD", "refs/driftwarden/HEAD")
            raise SourceError(f"{self.describe()}: the remote repository has no commits yet")
        # A name that is both a branch and a tag: the branch, the thing meant to move.
        if f"refs/heads/{ref}" in refs:
            return _branch(ref)
        if f"refs/tags/{ref}" in refs:
            return _tag(ref)
        if _ABBREVIATED_SHA.match(ref):
            return self._find_abbreviated_commit(ref, secrets)
        raise SourceError(f"{self.describe()}: {ref} is neither a branch nor a tag of the remote")

    def _update(self, target: _Target, secrets: _Secrets) -> str:
        """Fetch the target; the id its local ref now holds (a commit, or an annotated tag)."""
        if target.kind == "commit":
            return self._update_commit(target, secrets)
        fetched = self._fetch([f"+{target.remote_ref}:{target.local_ref}"], secrets, depth=1)
        if fetched.status != 0:
            if "couldn't find remote ref" in fetched.stderr:
                what = "the remote HEAD" if target.kind == "head" else f"{target.kind} {target.name}"
                raise SourceError(f"{self.describe()}: {what} no longer exists on the remote")
            raise SourceError(f"{self.describe()}: git fetch failed: {_reason(fetched.stderr)}")
        with git.Repo(self._repo_dir) as repo:
            # Read from the ref file: no git process, no object read.
            return SymbolicReference.dereference_recursive(repo, target.local_ref)

    def _update_commit(self, target: _Target, secrets: _Secrets) -> str:
        sha = target.name
        if self._has_ref(target.local_ref):  # a commit never changes: no network once we have it
            return sha
        fetched = self._fetch([f"{sha}:{target.local_ref}"], secrets, depth=1)
        if fetched.status != 0:
            # Servers that refuse to serve an unadvertised commit: fetch everything instead.
            fetched = self._fetch_everything(secrets)
            if fetched.status != 0:
                raise SourceError(f"{self.describe()}: git fetch failed: {_reason(fetched.stderr)}")
            found = self._git(["update-ref", target.local_ref, f"{sha}^{{commit}}"], secrets)
            if found.status != 0:
                raise SourceError(f"{self.describe()}: commit {sha} does not exist on the remote")
        return sha

    def _find_abbreviated_commit(self, ref: str, secrets: _Secrets) -> _Target:
        fetched = self._fetch_everything(secrets)
        if fetched.status != 0:
            raise SourceError(f"{self.describe()}: git fetch failed: {_reason(fetched.stderr)}")
        parsed = self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], secrets)
        if parsed.status != 0:
            raise SourceError(f"{self.describe()}: {ref} is not a branch, tag or commit of the remote")
        target = _commit(parsed.stdout.strip())
        self._git(["update-ref", target.local_ref, target.name], secrets)
        return target

    def _fetch_everything(self, secrets: _Secrets) -> _GitResult:
        refspecs = ["+refs/heads/*:refs/driftwarden/all/heads/*", "+refs/tags/*:refs/driftwarden/all/tags/*"]
        unshallow = ["--unshallow"] if (self._repo_dir / "shallow").exists() else []
        return self._fetch(refspecs, secrets, extra=unshallow)

    def _fetch(
        self, refspecs: list[str], secrets: _Secrets, *, depth: int | None = None, extra: Sequence[str] = ()
    ) -> _GitResult:
        options = ["--no-tags", "--no-recurse-submodules", *extra]
        if depth is not None:
            options.append(f"--depth={depth}")
        return self._git(["fetch", *options, self._url, *refspecs], secrets, network=True)

    def _has_ref(self, ref: str) -> bool:
        with git.Repo(self._repo_dir) as repo:
            try:
                SymbolicReference.dereference_recursive(repo, ref)
            except ValueError:
                return False
            return True

    def _verify(self, commit: git.Commit, secrets: _Secrets) -> str:
        """The signer of `commit`; `SourceError` unless a trusted key signed it."""
        policy = self._policy
        assert policy is not None
        signature = commit.gpgsig or ""
        config: dict[str, str] = {}
        environment: dict[str, str] = {}
        if "BEGIN SSH SIGNATURE" in signature and policy.ssh_allowed_signers is not None:
            config["gpg.ssh.allowedSignersFile"] = str(policy.ssh_allowed_signers.expanduser().resolve())
        elif "BEGIN PGP SIGNATURE" in signature and policy.gpg_keyring is not None:
            environment["GNUPGHOME"] = str(self._gnupg_home(policy.gpg_keyring))
        elif not signature:
            self._refuse(commit, "it carries no signature")
        else:
            kind = "an SSH" if "SSH SIGNATURE" in signature else "a GPG" if "PGP" in signature else "an X.509"
            self._refuse(commit, f"it carries {kind} signature and no keys of that kind are trusted")
        result = self._git(
            ["verify-commit", "--raw", commit.hexsha], secrets, config=config, environment=environment
        )
        output = result.stderr + "\n" + result.stdout
        if result.status != 0:
            self._refuse(commit, _signature_failure(output))
        signer = _signer(output)
        if signer is None:
            self._refuse(commit, "git reported no good signature")
        assert signer is not None
        return signer

    def _refuse(self, commit: git.Commit, why: str) -> None:
        keeping = self._last.revision if self._last is not None else "none yet"
        raise SourceError(
            f"{self.describe()}: commit {commit.hexsha} is not signed by a trusted key ({why}); "
            f"keeping the last good signed revision ({keeping})"
        )

    def _gnupg_home(self, keyring: Path) -> Path:
        """A GnuPG home holding only the trusted keys: never the host's own keyring.

        A directory is used as the GnuPG home it is. A file of exported keys (armored or
        binary) becomes the legacy `pubring.gpg` of a private home in the cache: no
        `gpg --import`, which wants a gpg-agent whose socket path may be too long there.
        """
        keyring = keyring.expanduser()
        if keyring.is_dir():
            return keyring.resolve()
        try:
            data = keyring.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read the GPG keyring {keyring}: {exc.strerror}") from None
        packets = _dearmor(data)
        if not packets:
            raise SourceError(f"the GPG keyring {keyring} holds no public key")
        home = self._cache_dir / "gnupg" / hashlib.sha256(packets).hexdigest()[:16]
        if not (home / "pubring.gpg").is_file():
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            home.chmod(0o700)  # gpg warns about (and may refuse) a home others can read
            partial = home / "pubring.gpg.partial"
            partial.write_bytes(packets)
            partial.replace(home / "pubring.gpg")
        return home

    def _snapshot(
        self, repo: git.Repo, commit: git.Commit, signer: str | None
    ) -> tuple[Snapshot, dict[str, tuple[bytes, bytes]]]:
        tree = commit.tree
        if self._path:
            try:
                tree = tree / self._path
            except KeyError:
                raise SourceError(
                    f"{self.describe()}: {self._path} does not exist in commit {commit.hexsha}"
                ) from None
            if tree.type != "tree":
                raise SourceError(f"{self.describe()}: {self._path} is not a directory in commit {commit.hexsha}")
        entries, problems = _manifest_entries(tree)
        known = {blob_id: data for blob_id, data in self._blobs.values()}
        blobs: dict[str, tuple[bytes, bytes]] = {}
        for name, blob_id in entries:
            data = known.get(blob_id)
            if data is None:
                data, problem = self._read_blob(repo, blob_id, name)
                if problem is not None:
                    problems.append(problem)
                    continue
                assert data is not None
                known[blob_id] = data
            blobs[name] = (blob_id, data)
        old = self._blobs
        changed = frozenset(n for n, (blob_id, _d) in blobs.items() if n not in old or old[n][0] != blob_id)
        removed = frozenset(set(old) - set(blobs))
        snapshot = Snapshot(
            revision=commit.hexsha,
            files=MappingProxyType({name: data for name, (_id, data) in blobs.items()}),
            changed=changed,
            removed=removed,
            signer=signer,
            problems=tuple(sorted(problems)),
        )
        return snapshot, blobs

    def _read_blob(self, repo: git.Repo, blob_id: bytes, name: str) -> tuple[bytes | None, Problem | None]:
        """One blob's bytes, or a problem when it is too large to be a manifest."""
        size = repo.odb.info(blob_id).size
        if size > self._limits.max_file_bytes:
            return None, Problem.error(
                name,
                "file.too-large",
                f"file is {size} bytes; manifests are limited to {self._limits.max_file_bytes} bytes",
            )
        return repo.odb.stream(blob_id).read(), None

    # -- running git

    def _secrets(self) -> _Secrets:
        """The credentials of this fetch: token files are re-read so that rotation just works."""
        secrets = _Secrets()
        if self._url_password:
            secrets.values += [self._url_password, quote(self._url_password, safe="")]
        if self._url_username and _is_http(self._url):
            secrets.values += [self._url_username, quote(self._url_username, safe="")]
        if not _is_http(self._url):
            secrets.environment.update(self._ssh_environment())
            return secrets
        token = self._token()
        if token:
            secrets.values.append(token)
        password = token or self._url_password
        if password or self._url_username:
            # The empty value first resets helpers from the host's config: none of them may
            # answer for us, nor store the token on disk after a successful fetch.
            secrets.config += [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
            secrets.environment[_USERNAME_VARIABLE] = self._url_username or self._credentials.https_username
            secrets.environment[_PASSWORD_VARIABLE] = password or ""
        return secrets

    def _token(self) -> str | None:
        credentials = self._credentials
        if credentials.https_token_file is not None:
            try:
                return credentials.https_token_file.expanduser().read_text().strip() or None
            except OSError as exc:
                raise SourceError(
                    f"{self.describe()}: cannot read the Git token file {credentials.https_token_file}: {exc.strerror}"
                ) from None
        if credentials.https_token_env is not None:
            token = os.environ.get(credentials.https_token_env, "").strip()
            if not token:
                raise SourceError(f"{self.describe()}: the Git token variable {credentials.https_token_env} is not set")
            return token
        return None

    def _ssh_environment(self) -> dict[str, str]:
        credentials = self._credentials
        if credentials.ssh_key_file is None and credentials.known_hosts_file is None:
            return {}
        command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if credentials.ssh_key_file is not None:
            key = str(credentials.ssh_key_file.expanduser().resolve())
            command += ["-i", key, "-o", "IdentitiesOnly=yes"]
        if credentials.known_hosts_file is not None:
            known_hosts = str(credentials.known_hosts_file.expanduser().resolve())
            command += ["-o", f"UserKnownHostsFile={known_hosts}"]
        return {"GIT_SSH_COMMAND": shlex.join(command)}

    def _git(
        self,
        args: list[str],
        secrets: _Secrets,
        *,
        network: bool = False,
        config: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> _GitResult:
        """Run one git command in the cache repository: every git process starts here."""
        # Configuration for this one process, through the environment: never written to the
        # repository's config, never on the command line. Appended to what the operator
        # may already pass the same way.
        items = [("gc.autoDetach", "false")]  # no background gc outliving the fetch
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": ""}  # fail, never prompt
        if network:
            items += secrets.config
            env.update(secrets.environment)
        items += list((config or {}).items())
        env.update(environment or {})
        start = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        env["GIT_CONFIG_COUNT"] = str(start + len(items))
        for index, (key, value) in enumerate(items, start):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        try:
            status, stdout, stderr = git.Git(self._repo_dir).execute(
                ["git", *args],
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=self._timeout,
                env=env,
            )
        except GitCommandNotFound:
            raise SourceError("the git program is not installed") from None
        return _GitResult(int(status or 0), str(stdout), str(stderr))


def _branch(name: str) -> _Target:
    return _Target("branch", name, f"refs/heads/{name}", f"refs/driftwarden/heads/{name}")


def _tag(name: str) -> _Target:
    return _Target("tag", name, f"refs/tags/{name}", f"refs/driftwarden/tags/{name}")


def _commit(sha: str) -> _Target:
    return _Target("commit", sha, sha, f"refs/driftwarden/commits/{sha}")


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(URL without secrets, user name, password). An SSH user name stays in the URL."""
    if "://" not in url:
        return url, None, None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    if parts.scheme.lower() in ("ssh", "git+ssh", "ssh+git") and username:
        netloc = f"{quote(username, safe='')}@{netloc}"
        username = None
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), username, password


def _manifest_entries(tree: git.Tree) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    """(path, blob id) of every manifest file under `tree`, and what was left out and why.

    Same rules as `loader.discover`: hidden files and directories are skipped. Symlinks are
    not followed: their target is a path on the host, which a repository must not choose.
    """
    entries: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    pending = [tree]
    while pending:
        for item in pending.pop():
            path = str(item.path)
            name = posixpath.basename(path)
            if name.startswith("."):
                continue
            if item.type == "tree":
                pending.append(item)
            elif item.type == "submodule":
                problems.append(Problem.warning(path, "path.submodule", "submodules are not followed in Git sources"))
            elif item.type == "blob" and stat.S_IFMT(item.mode) == _SYMLINK_MODE:
                # A symlinked manifest would silently vanish: an error. Other symlinks
                # (a README, a directory) are worth a warning only.
                report = Problem.error if name.endswith(MANIFEST_SUFFIXES) else Problem.warning
                problems.append(report(path, "path.symlink", "symlinks are not followed in Git sources"))
            elif item.type == "blob" and name.endswith(MANIFEST_SUFFIXES):
                entries.append((path, item.binsha))
    entries.sort()
    return entries, problems


_ARMORED_KEYS = re.compile(
    rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL
)


def _dearmor(data: bytes) -> bytes:
    """The OpenPGP packets of an exported key file: every armored block decoded, or the bytes as-is."""
    if b"-----BEGIN PGP" not in data:
        return data
    packets = b""
    for block in _ARMORED_KEYS.finditer(data):
        lines = block.group(1).splitlines()
        # Armor headers ("Comment: ...") end at the first empty line; "=XXXX" is the checksum.
        blank = next((i for i, line in enumerate(lines) if not line.strip()), -1)
        body = lines[blank + 1 :]
        encoded = b"".join(line.strip() for line in body if line.strip() and not line.startswith(b"="))
        try:
            packets += base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
    return packets


_BOILERPLATE = ("please make sure you have the correct access rights", "and the repository exists.")


def _reason(stderr: str) -> str:
    """The useful part of git's complaint: its lines without prefixes and boilerplate."""
    reasons: list[str] = []
    for line in stderr.splitlines():
        text = re.sub(r"^(fatal|error):\s*", "", line.strip(), flags=re.IGNORECASE)
        if text.startswith("From ") or text.lower() in _BOILERPLATE:
            continue
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons)[:500] or "git gave no reason"


def _signature_failure(output: str) -> str:
    if "NO_PUBKEY" in output or "ERRSIG" in output:
        return "signed by a key that is not in the trusted keyring"
    if "BADSIG" in output:
        return "the signature does not match the commit"
    for marker in ("EXPKEYSIG", "EXPSIG", "REVKEYSIG"):
        if marker in output:
            return f"gpg says {marker}"
    if "No principal matched" in output or "is not in allowed signers" in output.lower():
        return "signed by a key that is not in the allowed signers file"
    return _reason(output)


_GPG_VALIDSIG = re.compile(r"^\[GNUPG:\] VALIDSIG (?:\S+ ){9}(?P<primary>[0-9A-F]{16,})", re.MULTILINE)
_GPG_VALIDSIG_SHORT = re.compile(r"^\[GNUPG:\] VALIDSIG (?P<fpr>[0-9A-F]{16,})", re.MULTILINE)
_SSH_GOOD = re.compile(r'Good "git" signature for (?P<principal>\S+) with \S+ key (?P<fpr>\S+)')


def _signer(output: str) -> str | None:
    """The identity of a good signature in `git verify-commit --raw` output."""
    found = _GPG_VALIDSIG.search(output) or _GPG_VALIDSIG_SHORT.search(output)
    if found is not None:
        return found.group(found.lastgroup or 1)
    good = _SSH_GOOD.search(output)
    if good is not None:
        return f"{good.group('principal')} {good.group('fpr')}"
    return None
