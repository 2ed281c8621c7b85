"""The manifest source: plain directories and Git remotes, against real repositories and servers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftwarden.errors import SourceError, UsageError
from driftwarden.manifests.discovery import Limits
from driftwarden.redaction import redact, redact_url
from driftwarden.runtime.git_source import GitSource
from driftwarden.runtime.source import (
    DirectorySource,
    GitCredentials,
    SignaturePolicy,
    Snapshot,
    open_source,
)
from gitrepo import (
    HERMETIC_GIT_ENV,
    GpgKey,
    Origin,
    SmartHttpServer,
    git_daemon,
    git_daemon_available,
    run_git,
    ssh_signing,
    ssh_signing_key,
)

TOKEN = "ghp_T0kenThatMustNeverBeShown0123456789"
CLUSTER = "apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: dev}\n"
DEPLOYMENT = "apiVersion: driftwarden/v1\nkind: Deployment\nmetadata: {name: etl}\n"


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's Git configuration never reaches the code under test."""
    for key, value in HERMETIC_GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    """A remote whose `main` holds two manifests under `manifests/` and files that are not."""
    repo = Origin(tmp_path / "origin")
    repo.commit_and_push(
        {
            "manifests/clusters/dev.yaml": CLUSTER,
            "manifests/deployments/etl.yml": DEPLOYMENT,
            "manifests/README.md": "not a manifest\n",
            "manifests/.github/hidden.yaml": "hidden: true\n",
            "ci/workflow.yaml": "outside: the path\n",
        },
        "first",
    )
    return repo


def git_source(location: str | Path, cache: Path, **options: Any) -> GitSource:
    options.setdefault("ref", None)
    options.setdefault("path", "manifests")
    source = open_source(str(location), cache_dir=cache, **options)
    assert isinstance(source, GitSource)
    return source


class Spy:
    """Records blob reads and git commands at `GitSource`'s own boundaries."""

    def __init__(self, source: GitSource, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blob_reads: list[str] = []
        self.commands: list[list[str]] = []
        self.environments: list[dict[str, str]] = []
        read_blob, run = source._read_blob, source._git

        def counting_read(repo: Any, blob_id: bytes, name: str) -> Any:
            self.blob_reads.append(name)
            return read_blob(repo, blob_id, name)

        def recording_git(args: list[str], secrets: Any, **kwargs: Any) -> Any:
            self.commands.append(args)
            self.environments.append(dict(secrets.environment))
            return run(args, secrets, **kwargs)

        monkeypatch.setattr(source, "_read_blob", counting_read)
        monkeypatch.setattr(source, "_git", recording_git)

    def reset(self) -> None:
        self.blob_reads.clear()
        self.commands.clear()
        self.environments.clear()


def all_cache_bytes(cache: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file() and not p.is_symlink())


# --- plain directories ----------------------------------------------------------------------------


def test_directory_revision_follows_content_not_timestamps(tmp_path: Path) -> None:
    """A directory's revision is a content hash: touching a file keeps it, editing one changes it."""
    root = tmp_path / "checkout"
    (root / "manifests/clusters").mkdir(parents=True)
    (root / "manifests/clusters/dev.yaml").write_text(CLUSTER)
    (root / "manifests/etl.yml").write_text(DEPLOYMENT)
    (root / "manifests/notes.txt").write_text("not a manifest\n")
    (root / "ci").mkdir()
    (root / "ci/outside.yaml").write_text("outside: the path\n")
    source = open_source(str(root), ref=None, path="manifests", cache_dir=tmp_path / "cache")
    assert isinstance(source, DirectorySource)

    first = source.fetch()
    assert first.revision.startswith("dir:") and len(first.revision) == len("dir:") + 12
    assert dict(first.files) == {"manifests/clusters/dev.yaml": CLUSTER.encode(), "manifests/etl.yml": DEPLOYMENT.encode()}
    assert first.changed == set(first.files)

    os.utime(root / "manifests/etl.yml", (1, 1))
    touched = source.fetch()
    assert touched.revision == first.revision
    assert touched is source.last_good and touched.files is first.files
    assert touched.changed == frozenset() and touched.removed == frozenset()

    (root / "manifests/etl.yml").write_text(DEPLOYMENT + "spec: {}\n")
    edited = source.fetch()
    assert edited.revision != first.revision
    assert edited.changed == {"manifests/etl.yml"}


def test_directory_source_refuses_symlinks_leaving_the_root(tmp_path: Path) -> None:
    """A directory source applies discovery.discover's rule: a symlink out of the root is a problem, not a file."""
    outside = tmp_path / "secret.yaml"
    outside.write_text("password: hunter2\n")
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "dev.yaml").write_text(CLUSTER)
    (root / "evil.yaml").symlink_to(outside)
    snapshot = open_source(str(root), ref=None, path=None, cache_dir=tmp_path / "cache").fetch()
    assert set(snapshot.files) == {"dev.yaml"}
    assert [(p.file, p.rule) for p in snapshot.problems] == [("evil.yaml", "path.symlink-escape")]


def test_open_source_tells_git_sources_from_directories(tmp_path: Path, origin: Origin) -> None:
    """Bare repositories and work trees with --ref are Git sources; other directories are read as-is."""
    cache = tmp_path / "cache"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert isinstance(open_source(str(plain), ref=None, path=None, cache_dir=cache), DirectorySource)
    assert isinstance(open_source(str(origin.remote), ref=None, path=None, cache_dir=cache), GitSource)
    assert isinstance(open_source(str(origin.work), ref=None, path=None, cache_dir=cache), DirectorySource)
    assert isinstance(open_source(str(origin.work), ref="main", path=None, cache_dir=cache), GitSource)
    assert isinstance(open_source("git@github.com:org/repo.git", ref=None, path=None, cache_dir=cache), GitSource)
    with pytest.raises(UsageError, match="plain directory"):
        open_source(str(plain), ref="main", path=None, cache_dir=cache)
    with pytest.raises(UsageError, match="relative path inside the repository"):
        open_source(str(origin.remote), ref=None, path="../elsewhere", cache_dir=cache)


# --- Git: reading ---------------------------------------------------------------------------------


def test_first_fetch_reads_every_manifest_under_the_path_and_nothing_else(tmp_path: Path, origin: Origin) -> None:
    """The first fetch returns the head commit's manifests under --path, all of them changed."""
    source = git_source(origin.remote, tmp_path / "cache")
    assert source.describe().endswith("@HEAD:manifests")
    snapshot = source.fetch()
    assert snapshot.revision == origin.head()
    assert dict(snapshot.files) == {
        "manifests/clusters/dev.yaml": CLUSTER.encode(),
        "manifests/deployments/etl.yml": DEPLOYMENT.encode(),
    }
    assert snapshot.changed == set(snapshot.files) and snapshot.removed == frozenset()
    assert snapshot.problems == () and snapshot.signer is None
    assert source.last_good is snapshot
    assert source.describe() == f"{origin.remote}@main:manifests"
    assert not list(source.repository_dir.glob("*.yaml")), "files are read from the tree, not a checkout"


def test_idle_fetch_is_one_git_fetch_and_returns_the_last_snapshot(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no new commit, fetch() runs a single `git fetch`, reads no blob and returns last_good itself."""
    source = git_source(origin.remote, tmp_path / "cache")
    spy = Spy(source, monkeypatch)
    first = source.fetch()
    assert sorted(spy.blob_reads) == sorted(first.files)  # the spy does see reads
    spy.reset()

    second = source.fetch()
    third = source.fetch()
    assert spy.blob_reads == []
    assert [command[0] for command in spy.commands] == ["fetch", "fetch"]
    assert second is source.last_good and third is second
    assert second.files is first.files and second.revision == first.revision
    assert second.changed == frozenset() and second.removed == frozenset()


def test_new_commit_rereads_only_changed_blobs_and_reports_removals(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit touching one manifest reads that blob only; deleting a manifest reports it removed."""
    source = git_source(origin.remote, tmp_path / "cache")
    first = source.fetch()
    spy = Spy(source, monkeypatch)

    edited = CLUSTER + "spec: {region: eu-west-1}\n"
    head = origin.commit_and_push({"manifests/clusters/dev.yaml": edited, "ci/workflow.yaml": "x: 1\n"})
    second = source.fetch()
    assert second.revision == head
    assert second.changed == {"manifests/clusters/dev.yaml"} and second.removed == frozenset()
    assert spy.blob_reads == ["manifests/clusters/dev.yaml"]
    assert second.files["manifests/clusters/dev.yaml"] == edited.encode()
    assert second.files["manifests/deployments/etl.yml"] == first.files["manifests/deployments/etl.yml"]

    spy.reset()
    origin.remove("manifests/deployments/etl.yml")
    origin.commit("drop etl")
    origin.push()
    third = source.fetch()
    assert third.removed == {"manifests/deployments/etl.yml"} and third.changed == frozenset()
    assert set(third.files) == {"manifests/clusters/dev.yaml"}
    assert spy.blob_reads == []


def test_force_push_rewriting_history_is_followed(tmp_path: Path, origin: Origin) -> None:
    """After a force-push the source follows the new head; what only the old history had is gone."""
    base = origin.head()
    source = git_source(origin.remote, tmp_path / "cache")
    origin.commit_and_push({"manifests/clusters/doomed.yaml": CLUSTER.replace("dev", "doomed")}, "doomed")
    assert "manifests/clusters/doomed.yaml" in source.fetch().files

    run_git("reset", "--quiet", "--hard", base, cwd=origin.work)
    origin.write("manifests/clusters/kept.yaml", CLUSTER.replace("dev", "kept"))
    rewritten = origin.commit("rewritten")
    origin.push(force=True)
    snapshot = source.fetch()
    assert snapshot.revision == rewritten
    assert snapshot.removed == {"manifests/clusters/doomed.yaml"}
    assert snapshot.changed == {"manifests/clusters/kept.yaml"}


def test_pinned_commit_is_read_and_needs_no_network_afterwards(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full commit sha as --ref reads that commit, not the branch tip, and never fetches again."""
    pinned = origin.head()
    origin.commit_and_push({"manifests/clusters/later.yaml": CLUSTER.replace("dev", "later")})
    source = git_source(origin.remote, tmp_path / "cache", ref=pinned)
    first = source.fetch()
    assert first.revision == pinned and "manifests/clusters/later.yaml" not in first.files

    spy = Spy(source, monkeypatch)
    shutil.rmtree(origin.remote)
    assert source.fetch() is source.last_good
    assert spy.commands == []


def test_pinned_commit_falls_back_to_a_full_fetch_when_the_server_refuses_it(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that will not serve an unadvertised commit (protocol v0) still yields the pinned commit."""
    pinned = origin.head()
    origin.commit_and_push({"manifests/clusters/later.yaml": CLUSTER.replace("dev", "later")})
    client_config = tmp_path / "gitconfig"
    client_config.write_text("[protocol]\n\tversion = 0\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(client_config))
    source = git_source(origin.remote, tmp_path / "cache", ref=pinned)
    spy = Spy(source, monkeypatch)
    assert source.fetch().revision == pinned
    fetches = [command for command in spy.commands if command[0] == "fetch"]
    assert len(fetches) == 2 and "+refs/heads/*:refs/driftwarden/all/heads/*" in fetches[1]


def test_abbreviated_commit_ref_resolves_to_the_full_sha(tmp_path: Path, origin: Origin) -> None:
    """An abbreviated sha as --ref is found on the remote and read as that commit."""
    pinned = origin.head()
    origin.commit_and_push({"manifests/clusters/later.yaml": CLUSTER.replace("dev", "later")})
    snapshot = git_source(origin.remote, tmp_path / "cache", ref=pinned[:10]).fetch()
    assert snapshot.revision == pinned
    assert "manifests/clusters/later.yaml" not in snapshot.files


def test_tag_ref_reads_the_tagged_commit(tmp_path: Path, origin: Origin) -> None:
    """An annotated tag as --ref resolves to the commit it tags, even after the branch moves on."""
    tagged = origin.head()
    run_git("tag", "-a", "v1", "-m", "release 1", cwd=origin.work)
    run_git("push", "--quiet", "origin", "v1", cwd=origin.work)
    origin.commit_and_push({"manifests/clusters/later.yaml": CLUSTER.replace("dev", "later")})
    source = git_source(origin.remote, tmp_path / "cache", ref="v1")
    assert source.fetch().revision == tagged
    assert source.describe().endswith("@v1:manifests")


def test_symlink_in_the_tree_is_reported_not_followed(tmp_path: Path, origin: Origin) -> None:
    """A symlinked manifest in a Git tree is left out with an error problem naming it."""
    origin.symlink("manifests/passwd.yaml", "/etc/passwd")
    origin.commit("link")
    origin.push()
    snapshot = git_source(origin.remote, tmp_path / "cache").fetch()
    assert "manifests/passwd.yaml" not in snapshot.files
    assert [(p.file, p.rule, p.severity, p.message) for p in snapshot.problems] == [
        ("manifests/passwd.yaml", "path.symlink", "error", "symlinks are not followed in Git sources")
    ]


def test_oversized_blob_is_reported_and_not_returned(tmp_path: Path, origin: Origin) -> None:
    """A blob over the loader's size limit is left out with a file.too-large problem."""
    origin.commit_and_push({"manifests/huge.yaml": "x: " + "y" * 200 + "\n"})
    source = git_source(origin.remote, tmp_path / "cache", limits=Limits(max_file_bytes=128))
    snapshot = source.fetch()
    assert "manifests/huge.yaml" not in snapshot.files
    assert "manifests/clusters/dev.yaml" in snapshot.files
    assert [(p.file, p.rule) for p in snapshot.problems] == [("manifests/huge.yaml", "file.too-large")]


# --- Git: failures --------------------------------------------------------------------------------


def test_deleted_branch_fails_and_keeps_last_good(tmp_path: Path, origin: Origin) -> None:
    """When the followed branch is deleted, fetch() says so and last_good stays."""
    origin.push(branch="release")
    source = git_source(origin.remote, tmp_path / "cache", ref="release")
    first = source.fetch()
    run_git("push", "--quiet", "origin", "--delete", "release", cwd=origin.work)
    with pytest.raises(SourceError, match="branch release no longer exists on the remote"):
        source.fetch()
    assert source.last_good is first


def test_missing_path_fails_and_keeps_last_good(tmp_path: Path, origin: Origin) -> None:
    """A commit without the --path directory is refused; the previous snapshot stays in force."""
    source = git_source(origin.remote, tmp_path / "cache")
    first = source.fetch()
    run_git("rm", "-r", "--quiet", "manifests", cwd=origin.work)
    gone = origin.commit("remove everything")
    origin.push()
    with pytest.raises(SourceError, match=f"manifests does not exist in commit {gone}"):
        source.fetch()
    assert source.last_good is first


def test_unreachable_remote_fails_then_recovers(tmp_path: Path, origin: Origin) -> None:
    """A remote that vanishes makes fetch() fail with last_good kept; when it returns, fetching resumes."""
    source = git_source(origin.remote, tmp_path / "cache")
    first = source.fetch()
    moved = origin.root / "moved.git"
    origin.remote.rename(moved)
    with pytest.raises(SourceError, match="git fetch failed"):
        source.fetch()
    assert source.last_good is first
    moved.rename(origin.remote)
    assert source.fetch().revision == first.revision


def test_token_in_an_https_url_never_shows(tmp_path: Path) -> None:
    """A token in the URL appears neither in describe(), nor in the error, nor in the cache."""
    cache = tmp_path / "cache"
    url = f"https://deploy:{TOKEN}@127.0.0.1:1/org/repo.git"
    source = git_source(url, cache, timeout=30)
    assert source.describe() == "https://***@127.0.0.1:1/org/repo.git@HEAD:manifests"
    with pytest.raises(SourceError) as failure:
        source.fetch()
    message = str(failure.value)
    assert "127.0.0.1" in message
    assert TOKEN not in message and "deploy" not in message
    assert TOKEN.encode() not in all_cache_bytes(cache)
    assert source.last_good is None


def test_token_file_authenticates_and_is_never_stored(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token file gets through HTTP Basic auth, never on a command line nor in any file of the cache."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cache = tmp_path / "cache"
    with SmartHttpServer(origin.root, "x-access-token", TOKEN) as server:
        source = git_source(server.url("remote.git"), cache, credentials=GitCredentials(https_token_file=token_file))
        spy = Spy(source, monkeypatch)
        assert source.fetch().revision == origin.head()
        assert server.authorized_requests > 0
    assert spy.commands and not any(TOKEN in arg for command in spy.commands for arg in command)
    assert TOKEN not in (source.repository_dir / "config").read_text()
    assert TOKEN.encode() not in all_cache_bytes(cache)


def test_wrong_token_is_refused_with_a_redacted_message(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected token makes fetch() fail with an authentication message that does not contain it."""
    wrong = "WrongTokenWithNoRecognisableShape0000"
    monkeypatch.setenv("DW_TEST_TOKEN", wrong)
    credentials = GitCredentials(https_token_env="DW_TEST_TOKEN")
    with SmartHttpServer(origin.root, "x-access-token", TOKEN) as server:
        source = git_source(server.url("remote.git"), tmp_path / "cache", credentials=credentials)
        with pytest.raises(SourceError, match="Authentication failed") as failure:
            source.fetch()
        assert server.refused_requests > 0 and server.authorized_requests == 0
    assert wrong not in str(failure.value)


def test_credentials_in_an_http_url_are_used_but_not_stored(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`http://user:token@host/...` authenticates, with the token off git's command line and out of the cache."""
    cache = tmp_path / "cache"
    with SmartHttpServer(origin.root, "x-access-token", TOKEN) as server:
        source = git_source(server.url("remote.git", userinfo=f"x-access-token:{TOKEN}"), cache)
        spy = Spy(source, monkeypatch)
        assert source.fetch().revision == origin.head()
        assert TOKEN not in source.describe()
    assert spy.commands and not any(TOKEN in arg for command in spy.commands for arg in command)
    assert TOKEN.encode() not in all_cache_bytes(cache)


def test_ssh_transport_uses_the_given_key_and_known_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SSH remote is reached with the configured key, known-hosts file and strict host checking."""
    key, _allowed = ssh_signing_key(tmp_path / "keys", "deploy")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    credentials = GitCredentials(ssh_key_file=key, known_hosts_file=known_hosts)
    source = git_source("ssh://git@127.0.0.1:1/org/repo.git", tmp_path / "cache", credentials=credentials, timeout=30)
    spy = Spy(source, monkeypatch)
    with pytest.raises(SourceError, match="Connection refused"):  # ssh accepted the options and ran
        source.fetch()
    command = spy.environments[0]["GIT_SSH_COMMAND"]
    for option in (f"-i {key}", "IdentitiesOnly=yes", f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes", "BatchMode=yes"):
        assert option in command
    assert source.describe() == "ssh://git@127.0.0.1:1/org/repo.git@HEAD:manifests"


# --- Git over the network -------------------------------------------------------------------------


@pytest.mark.skipif(not git_daemon_available(), reason="git daemon (git-daemon in git's exec path) is not installed")
def test_fetch_over_git_protocol_follows_new_commits(tmp_path: Path, origin: Origin) -> None:
    """Over git:// from a real `git daemon`, the first fetch and a later new commit are both read."""
    with git_daemon(origin.root) as base:
        source = git_source(f"{base}/remote.git", tmp_path / "cache")
        first = source.fetch()
        assert first.revision == origin.head()
        head = origin.commit_and_push({"manifests/deployments/etl.yml": DEPLOYMENT + "spec: {}\n"})
        second = source.fetch()
    assert second.revision == head
    assert second.changed == {"manifests/deployments/etl.yml"}


# --- signatures -----------------------------------------------------------------------------------


@pytest.fixture
def ssh_keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(trusted key, untrusted key, allowed-signers file trusting only the first)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    trusted, allowed = ssh_signing_key(tmp_path / "trusted", "platform@example.com")
    untrusted, _line = ssh_signing_key(tmp_path / "untrusted", "mallory@example.com")
    allowed_signers = tmp_path / "allowed_signers"
    allowed_signers.write_text(allowed + "\n")
    return trusted, untrusted, allowed_signers


def signed_source(origin: Origin, tmp_path: Path, policy: SignaturePolicy) -> GitSource:
    return git_source(origin.remote, tmp_path / "cache", verify=policy)


def test_ssh_signed_head_by_a_trusted_key_is_accepted(tmp_path: Path, origin: Origin, ssh_keys: tuple[Path, Path, Path]) -> None:
    """A head signed with a key of the allowed-signers file is read, and its signer recorded."""
    trusted, _untrusted, allowed = ssh_keys
    head = origin.commit("signed", signing=ssh_signing(trusted))
    origin.push()
    snapshot = signed_source(origin, tmp_path, SignaturePolicy(ssh_allowed_signers=allowed)).fetch()
    assert snapshot.revision == head
    assert snapshot.signer is not None and snapshot.signer.startswith("platform@example.com SHA256:")


def test_unsigned_head_is_refused_and_the_last_signed_snapshot_stays(
    tmp_path: Path, origin: Origin, ssh_keys: tuple[Path, Path, Path]
) -> None:
    """An unsigned head fails every fetch while last_good stays at the previous signed commit."""
    trusted, _untrusted, allowed = ssh_keys
    signed = origin.commit("signed", signing=ssh_signing(trusted))
    origin.push()
    source = signed_source(origin, tmp_path, SignaturePolicy(ssh_allowed_signers=allowed))
    good = source.fetch()
    unsigned = origin.commit_and_push({"manifests/clusters/sneaky.yaml": CLUSTER.replace("dev", "sneaky")})
    for _attempt in range(2):  # refused again, not silently treated as idle
        with pytest.raises(SourceError, match=f"commit {unsigned} is not signed by a trusted key"):
            source.fetch()
    assert source.last_good is good and good.revision == signed


def test_head_signed_by_an_untrusted_key_is_refused(
    tmp_path: Path, origin: Origin, ssh_keys: tuple[Path, Path, Path]
) -> None:
    """A head signed with a key missing from the allowed-signers file is refused."""
    _trusted, untrusted, allowed = ssh_keys
    head = origin.commit("signed by someone else", signing=ssh_signing(untrusted))
    origin.push()
    source = signed_source(origin, tmp_path, SignaturePolicy(ssh_allowed_signers=allowed))
    with pytest.raises(SourceError, match=f"commit {head} is not signed by a trusted key"):
        source.fetch()
    assert source.last_good is None


@pytest.fixture(scope="module")
def gpg_keys() -> Iterator[tuple[GpgKey, GpgKey]]:
    """(trusted, untrusted) GPG signing keys, each in its own GnuPG home."""
    if shutil.which("gpg") is None or shutil.which("gpgconf") is None:
        pytest.skip("gpg is not installed")
    trusted, untrusted = GpgKey("Platform <platform@example.com>"), GpgKey("Mallory <mallory@example.com>")
    yield trusted, untrusted
    trusted.close()
    untrusted.close()


def test_gpg_signature_by_a_keyring_key_is_accepted_and_others_refused(
    tmp_path: Path, origin: Origin, gpg_keys: tuple[GpgKey, GpgKey]
) -> None:
    """With a GPG keyring, a head signed by its key is read (signer = fingerprint); another key's is refused."""
    trusted, untrusted = gpg_keys
    keyring = trusted.export(tmp_path / "trusted.asc")
    good_head = origin.commit("signed", signing=trusted.signing(), env=trusted.env)
    origin.push()
    source = signed_source(origin, tmp_path, SignaturePolicy(gpg_keyring=keyring))
    good = source.fetch()
    assert good.revision == good_head and good.signer == trusted.fingerprint

    bad_head = origin.commit("signed by someone else", signing=untrusted.signing(), env=untrusted.env)
    origin.push()
    with pytest.raises(SourceError, match=f"commit {bad_head} is not signed by a trusted key"):
        source.fetch()
    assert source.last_good is good


def test_gpg_signature_is_refused_when_only_ssh_keys_are_trusted(
    tmp_path: Path, origin: Origin, gpg_keys: tuple[GpgKey, GpgKey], ssh_keys: tuple[Path, Path, Path]
) -> None:
    """A GPG-signed head is refused under an SSH-only policy: no host keyring is ever consulted."""
    trusted, _untrusted = gpg_keys
    head = origin.commit("gpg signed", signing=trusted.signing(), env=trusted.env)
    origin.push()
    source = signed_source(origin, tmp_path, SignaturePolicy(ssh_allowed_signers=ssh_keys[2]))
    with pytest.raises(SourceError, match=f"commit {head} is not signed by a trusted key .*GPG signature"):
        source.fetch()


# --- redaction ------------------------------------------------------------------------------------


def test_redaction_strips_credentials_from_urls_and_git_messages() -> None:
    """URL user info, Authorization headers, token-shaped words and known secrets are all removed."""
    assert redact_url(f"https://x-access-token:{TOKEN}@github.com/org/repo.git") == "https://***@github.com/org/repo.git"
    assert redact_url("ssh://git@github.com/org/repo.git") == "ssh://git@github.com/org/repo.git"
    assert redact_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    text = (
        f"fatal: unable to access 'https://bot:{TOKEN}@example.com/r.git/': "
        "Authorization: Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0 and a loose ghp_AAAAAAAAAAAAAAAAAAAAAAAA "
        "and plain s3cr3t-value"
    )
    cleaned = redact(text, ["s3cr3t-value"])
    for secret in (TOKEN, "bot:", "eC1hY2Nlc3MtdG9rZW46c2VjcmV0", "ghp_AAAA", "s3cr3t-value"):
        assert secret not in cleaned
    assert "https://***@example.com/r.git/" in cleaned


def test_snapshot_is_immutable(tmp_path: Path, origin: Origin) -> None:
    """A snapshot's file map cannot be changed by a consumer."""
    snapshot: Snapshot = git_source(origin.remote, tmp_path / "cache").fetch()
    with pytest.raises(TypeError):
        snapshot.files["manifests/clusters/dev.yaml"] = b"tampered"  # type: ignore[index]
