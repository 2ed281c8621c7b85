"""The pure parts of the Git source: ref naming, credentials hand-over, signature verdicts.

No git process and no repository: these pin the rules `GitSource` applies; tests/test_source.py
proves them end to end against real repositories and servers.
"""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest

import driftwarden
from driftwarden.errors import SourceError
from driftwarden.runtime.git_auth import (
    GitSecrets,
    git_secrets,
    process_environment,
    split_credentials,
)
from driftwarden.runtime.git_refs import (
    DETACHED_HEAD,
    branch,
    commit,
    tag,
    target_by_form,
    target_from_listing,
)
from driftwarden.runtime.signatures import (
    dearmor,
    git_reason,
    good_signer,
    signature_failure,
    trusted_kind,
)
from driftwarden.runtime.source import GitCredentials, SignaturePolicy

TOKEN = "ghp_T0kenThatMustNeverBeShown0123456789"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


# --- refs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/heads/release/1", branch("release/1")),
        ("refs/tags/v1.2.0", tag("v1.2.0")),
        (SHA, commit(SHA)),
        ("main", None),
        (SHA[:12], None),
        (None, None),
    ],
)
def test_full_ref_names_and_full_shas_need_no_remote(ref: str | None, expected: object) -> None:
    """Only a full ref name or a full sha is resolved without listing the remote's refs."""
    assert target_by_form(ref) == expected


def test_a_name_that_is_both_branch_and_tag_follows_the_branch() -> None:
    """When `--ref` names a branch and a tag alike, the branch (the thing meant to move) wins."""
    listing = f"{SHA}\trefs/tags/prod\n{'1' * 40}\trefs/heads/prod\n"
    assert target_from_listing("prod", listing) == branch("prod")
    assert target_from_listing("prod", f"{SHA}\trefs/tags/prod\n") == tag("prod")
    assert target_from_listing("staging", listing) is None


def test_without_ref_the_remote_head_branch_is_followed_by_name() -> None:
    """No `--ref`: HEAD's symbolic branch is followed; a detached HEAD is followed as HEAD; none is None."""
    assert target_from_listing(None, f"ref: refs/heads/trunk\tHEAD\n{SHA}\tHEAD\n") == branch("trunk")
    assert target_from_listing(None, f"{SHA}\tHEAD\n") == DETACHED_HEAD
    assert target_from_listing(None, "") is None


# --- credentials ------------------------------------------------------------------------------


def test_url_credentials_are_split_out_but_an_ssh_user_stays() -> None:
    """An HTTPS `user:token@` leaves the URL for the helper; an SSH login name is part of the address."""
    assert split_credentials(f"https://bot:{TOKEN}@git.example.com/org/repo.git") == (
        "https://git.example.com/org/repo.git",
        "bot",
        TOKEN,
    )
    assert split_credentials("ssh://git@git.example.com:2222/org/repo.git") == (
        "ssh://git@git.example.com:2222/org/repo.git",
        None,
        None,
    )
    assert split_credentials("git@git.example.com:org/repo.git") == ("git@git.example.com:org/repo.git", None, None)


def test_a_token_file_is_read_at_fetch_time_and_reaches_git_only_through_the_environment(tmp_path: Path) -> None:
    """The token is re-read for each fetch, marked secret, and given to git as a variable, never as config."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    credentials = GitCredentials(https_token_file=token_file)
    secrets = git_secrets("https://git.example.com/r.git", None, None, credentials, "here")
    assert TOKEN in secrets.values
    assert TOKEN in secrets.environment.values()
    assert all(TOKEN not in value for _key, value in secrets.config)

    token_file.write_text("rotated-token\n")
    rotated = git_secrets("https://git.example.com/r.git", None, None, credentials, "here")
    assert "rotated-token" in rotated.environment.values()


def test_an_unset_token_variable_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token variable that is configured but empty fails the fetch instead of trying anonymously."""
    monkeypatch.delenv("DW_PARTS_TOKEN", raising=False)
    credentials = GitCredentials(https_token_env="DW_PARTS_TOKEN")
    with pytest.raises(SourceError, match="DW_PARTS_TOKEN is not set"):
        git_secrets("https://git.example.com/r.git", None, None, credentials, "here")


def test_credentials_reach_only_git_commands_that_use_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local git commands get no credential; networked ones get them after the operator's own GIT_CONFIG_*."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "2")
    secrets = GitSecrets(
        values=[TOKEN], environment={"DRIFTWARDEN_GIT_PASSWORD": TOKEN}, config=[("credential.helper", "")]
    )
    local = process_environment(secrets, network=False)
    assert TOKEN not in local.values()
    assert local["GIT_TERMINAL_PROMPT"] == "0"

    remote = process_environment(secrets, network=True, config={"gpg.ssh.allowedSignersFile": "/a"})
    assert remote["DRIFTWARDEN_GIT_PASSWORD"] == TOKEN
    assert remote["GIT_CONFIG_COUNT"] == "5"
    assert [remote[f"GIT_CONFIG_KEY_{i}"] for i in (2, 3, 4)] == [
        "gc.autoDetach",
        "credential.helper",
        "gpg.ssh.allowedSignersFile",
    ]


# --- signatures -------------------------------------------------------------------------------


def test_a_signature_is_checked_only_by_keys_of_its_own_kind(tmp_path: Path) -> None:
    """An SSH signature needs allowed signers, a GPG one a keyring; no signature is refused with a reason."""
    ssh_only = SignaturePolicy(ssh_allowed_signers=tmp_path / "allowed")
    ssh_signature = "-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----"
    gpg_signature = "-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----"
    assert trusted_kind(ssh_signature, ssh_only) == ("ssh", "")
    assert trusted_kind(gpg_signature, SignaturePolicy(gpg_keyring=tmp_path / "keys")) == ("gpg", "")
    assert trusted_kind(gpg_signature, ssh_only) == (
        None,
        "it carries a GPG signature and no keys of that kind are trusted",
    )
    assert trusted_kind("", ssh_only) == (None, "it carries no signature")


def test_the_signer_is_the_primary_key_of_gpg_or_the_principal_of_ssh() -> None:
    """`git verify-commit --raw` output names the primary key fingerprint (GPG) or principal and key (SSH)."""
    subkey, primary = "A" * 40, "B" * 40
    gpg = f"[GNUPG:] GOODSIG X\n[GNUPG:] VALIDSIG {subkey} 2026-01-01 1 0 4 0 1 10 00 {primary}\n"
    assert good_signer(gpg) == primary
    ssh = 'Good "git" signature for ops@example.com with ED25519 key SHA256:abc\n'
    assert good_signer(ssh) == "ops@example.com SHA256:abc"
    assert good_signer("[GNUPG:] BADSIG X\n") is None


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("[GNUPG:] NO_PUBKEY 0123\n", "signed by a key that is not in the trusted keyring"),
        ("[GNUPG:] BADSIG 0123 x\n", "the signature does not match the commit"),
        ("[GNUPG:] EXPKEYSIG 0123 x\n", "gpg says EXPKEYSIG"),
        ("No principal matched.\n", "signed by a key that is not in the allowed signers file"),
        ("fatal: something else\n", "something else"),
    ],
)
def test_verification_failures_are_told_in_an_operators_words(output: str, reason: str) -> None:
    """Each way gpg or ssh-keygen refuses a signature maps to one plain reason."""
    assert signature_failure(output) == reason


def test_git_complaints_lose_prefixes_boilerplate_and_repeats() -> None:
    """Only the useful lines of git's stderr are kept, once each."""
    stderr = (
        "fatal: repository not found\nerror: repository not found\n"
        "Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert git_reason(stderr) == "repository not found"
    assert git_reason("") == "git gave no reason"


def test_an_armored_key_file_is_decoded_to_its_packets() -> None:
    """Armor headers and the checksum line are dropped; binary key files pass through as they are."""
    packets = b"\x99\x01\x0dkey-packet-bytes"
    encoded = base64.b64encode(packets)
    armored = (
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n"
        + encoded
        + b"\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    assert dearmor(armored) == packets
    assert dearmor(packets) == packets


# --- the adapter boundary ---------------------------------------------------------------------


def test_only_the_git_source_module_imports_gitpython() -> None:
    """`git` and `gitdb` are imported by runtime/git_source.py and by no other module of the package."""
    package = Path(driftwarden.__file__).parent
    importers = set()
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(name.split(".")[0] in ("git", "gitdb") for name in names):
                importers.add(module.relative_to(package).as_posix())
    assert importers == {"runtime/git_source.py"}
