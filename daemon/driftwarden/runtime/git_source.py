"""A Git remote followed on a branch, tag or commit: `GitSource`, the only gitpython import.

`GitSource.fetch()` returns a `Snapshot` of the manifest files (`*.yaml`/`*.yml`) under the
path in the commit the ref points to; a fetch that fails raises `SourceError` (every message
passed through `driftwarden.redaction.redact`) and leaves `last_good` as it was.

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
* Credentials and the environment of each git process come from `git_auth`; none is ever
  written to the cache repository.
* With a `SignaturePolicy`, the head commit must carry a good GPG or SSH signature by a key of
  the dedicated keyring / allowed-signers file; otherwise the fetch fails and the last good
  (signed) snapshot stays in force. Reading git's verdict is `signatures`' job.

What this module must not do: parse YAML or know about manifest kinds, or let any other
module of the package import gitpython (`git`, `gitdb`): Git stays behind this one adapter.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import git
from git.exc import GitCommandNotFound
from git.refs import SymbolicReference
from gitdb.exc import ODBError

from driftwarden.errors import SourceError
from driftwarden.manifests.discovery import MANIFEST_SUFFIXES, Limits
from driftwarden.manifests.problems import Problem
from driftwarden.redaction import redact, redact_url
from driftwarden.runtime.git_auth import (
    GitSecrets,
    git_secrets,
    gnupg_home,
    process_environment,
    split_credentials,
)
from driftwarden.runtime.git_refs import (
    Target,
    is_abbreviated_sha,
    listing_patterns,
    target_by_form,
    target_from_listing,
)
from driftwarden.runtime.git_refs import commit as commit_target
from driftwarden.runtime.signatures import git_reason, good_signer, signature_failure, trusted_kind
from driftwarden.runtime.source_types import (
    DEFAULT_TIMEOUT_SECONDS,
    NO_CREDENTIALS,
    GitCredentials,
    SignaturePolicy,
    Snapshot,
    normalise_subpath,
)

_SYMLINK_MODE = 0o120000


@dataclass
class _GitResult:
    status: int
    stdout: str
    stderr: str




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
        self._url, self._url_username, self._url_password = split_credentials(url)
        self._ref = ref
        self._path = normalise_subpath(path)
        self._cache_dir = cache_dir
        self._repo_dir = cache_dir / hashlib.sha256(self._url.encode()).hexdigest()[:16]
        self._credentials = credentials
        self._policy = verify
        self._limits = limits
        self._timeout = timeout
        self._target: Target | None = None
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
            secrets = git_secrets(
                self._url, self._url_username, self._url_password, self._credentials, self.describe()
            )
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

    def _resolve(self, secrets: GitSecrets) -> Target:
        """Which remote ref `--ref` names: asked of the remote once, on the first fetch."""
        ref = self._ref
        known = target_by_form(ref)
        if known is not None:
            return known
        listed = self._git(["ls-remote", "--symref", self._url, *listing_patterns(ref)], secrets, network=True)
        if listed.status != 0:
            raise SourceError(f"{self.describe()}: cannot list the remote's refs: {git_reason(listed.stderr)}")
        target = target_from_listing(ref, listed.stdout)
        if target is not None:
            return target
        if ref is None:
            raise SourceError(f"{self.describe()}: the remote repository has no commits yet")
        if is_abbreviated_sha(ref):
            return self._find_abbreviated_commit(ref, secrets)
        raise SourceError(f"{self.describe()}: {ref} is neither a branch nor a tag of the remote")

    def _update(self, target: Target, secrets: GitSecrets) -> str:
        """Fetch the target; the id its local ref now holds (a commit, or an annotated tag)."""
        if target.kind == "commit":
            return self._update_commit(target, secrets)
        fetched = self._fetch([f"+{target.remote_ref}:{target.local_ref}"], secrets, depth=1)
        if fetched.status != 0:
            if "couldn't find remote ref" in fetched.stderr:
                what = "the remote HEAD" if target.kind == "head" else f"{target.kind} {target.name}"
                raise SourceError(f"{self.describe()}: {what} no longer exists on the remote")
            raise SourceError(f"{self.describe()}: git fetch failed: {git_reason(fetched.stderr)}")
        with git.Repo(self._repo_dir) as repo:
            # Read from the ref file: no git process, no object read.
            return SymbolicReference.dereference_recursive(repo, target.local_ref)

    def _update_commit(self, target: Target, secrets: GitSecrets) -> str:
        sha = target.name
        if self._has_ref(target.local_ref):  # a commit never changes: no network once we have it
            return sha
        fetched = self._fetch([f"{sha}:{target.local_ref}"], secrets, depth=1)
        if fetched.status != 0:
            # Servers that refuse to serve an unadvertised commit: fetch everything instead.
            fetched = self._fetch_everything(secrets)
            if fetched.status != 0:
                raise SourceError(f"{self.describe()}: git fetch failed: {git_reason(fetched.stderr)}")
            found = self._git(["update-ref", target.local_ref, f"{sha}^{{commit}}"], secrets)
            if found.status != 0:
                raise SourceError(f"{self.describe()}: commit {sha} does not exist on the remote")
        return sha

    def _find_abbreviated_commit(self, ref: str, secrets: GitSecrets) -> Target:
        fetched = self._fetch_everything(secrets)
        if fetched.status != 0:
            raise SourceError(f"{self.describe()}: git fetch failed: {git_reason(fetched.stderr)}")
        parsed = self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], secrets)
        if parsed.status != 0:
            raise SourceError(f"{self.describe()}: {ref} is not a branch, tag or commit of the remote")
        target = commit_target(parsed.stdout.strip())
        self._git(["update-ref", target.local_ref, target.name], secrets)
        return target

    def _fetch_everything(self, secrets: GitSecrets) -> _GitResult:
        refspecs = ["+refs/heads/*:refs/driftwarden/all/heads/*", "+refs/tags/*:refs/driftwarden/all/tags/*"]
        unshallow = ["--unshallow"] if (self._repo_dir / "shallow").exists() else []
        return self._fetch(refspecs, secrets, extra=unshallow)

    def _fetch(
        self, refspecs: list[str], secrets: GitSecrets, *, depth: int | None = None, extra: Sequence[str] = ()
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

    def _verify(self, commit: git.Commit, secrets: GitSecrets) -> str:
        """The signer of `commit`; `SourceError` unless a trusted key signed it."""
        policy = self._policy
        assert policy is not None
        kind, why = trusted_kind(commit.gpgsig or "", policy)
        config: dict[str, str] = {}
        environment: dict[str, str] = {}
        if kind == "ssh" and policy.ssh_allowed_signers is not None:
            config["gpg.ssh.allowedSignersFile"] = str(policy.ssh_allowed_signers.expanduser().resolve())
        elif kind == "gpg" and policy.gpg_keyring is not None:
            environment["GNUPGHOME"] = str(gnupg_home(self._cache_dir, policy.gpg_keyring))
        else:
            self._refuse(commit, why)
        result = self._git(
            ["verify-commit", "--raw", commit.hexsha], secrets, config=config, environment=environment
        )
        output = result.stderr + "\n" + result.stdout
        if result.status != 0:
            self._refuse(commit, signature_failure(output))
        identity = good_signer(output)
        if identity is None:
            self._refuse(commit, "git reported no good signature")
        assert identity is not None
        return identity

    def _refuse(self, commit: git.Commit, why: str) -> None:
        keeping = self._last.revision if self._last is not None else "none yet"
        raise SourceError(
            f"{self.describe()}: commit {commit.hexsha} is not signed by a trusted key ({why}); "
            f"keeping the last good signed revision ({keeping})"
        )

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

    def _git(
        self,
        args: list[str],
        secrets: GitSecrets,
        *,
        network: bool = False,
        config: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> _GitResult:
        """Run one git command in the cache repository: every git process starts here."""
        env = process_environment(secrets, network=network, config=config, environment=environment)
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


def _manifest_entries(tree: git.Tree) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    """(path, blob id) of every manifest file under `tree`, and what was left out and why.

    Same rules as `discovery.discover`: hidden files and directories are skipped. Symlinks are
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


