"""Reading commit signatures and what git says about them: pure text in, values out.

Owns: which kind of trusted key can check a commit's signature (`trusted_kind`), the OpenPGP
packets of an exported key file (`dearmor`), the signer named by `git verify-commit --raw`
(`good_signer`), why a verification failed (`signature_failure`), and the useful part of any git
complaint (`git_reason`, used for fetch errors too).

What this module must not do: run git or gpg, read files or import gitpython (`git_source`
runs the commands and hands their output here).
"""

from __future__ import annotations

import base64
import re
from typing import Literal

from driftwarden.runtime.source_types import SignaturePolicy

SignatureKind = Literal["ssh", "gpg"]

_ARMORED_KEYS = re.compile(
    rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL
)
_BOILERPLATE = ("please make sure you have the correct access rights", "and the repository exists.")
_GPG_VALIDSIG = re.compile(r"^\[GNUPG:\] VALIDSIG (?:\S+ ){9}(?P<primary>[0-9A-F]{16,})", re.MULTILINE)
_GPG_VALIDSIG_SHORT = re.compile(r"^\[GNUPG:\] VALIDSIG (?P<fpr>[0-9A-F]{16,})", re.MULTILINE)
_SSH_GOOD = re.compile(r'Good "git" signature for (?P<principal>\S+) with \S+ key (?P<fpr>\S+)')


def trusted_kind(signature: str, policy: SignaturePolicy) -> tuple[SignatureKind | None, str]:
    """Which trusted keys of `policy` can check `signature` (a commit's `gpgsig`), or None and why none can."""
    if "BEGIN SSH SIGNATURE" in signature and policy.ssh_allowed_signers is not None:
        return "ssh", ""
    if "BEGIN PGP SIGNATURE" in signature and policy.gpg_keyring is not None:
        return "gpg", ""
    if not signature:
        return None, "it carries no signature"
    kind = "an SSH" if "SSH SIGNATURE" in signature else "a GPG" if "PGP" in signature else "an X.509"
    return None, f"it carries {kind} signature and no keys of that kind are trusted"


def dearmor(data: bytes) -> bytes:
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


def git_reason(stderr: str) -> str:
    """The useful part of git's complaint: its lines without prefixes and boilerplate."""
    reasons: list[str] = []
    for line in stderr.splitlines():
        text = re.sub(r"^(fatal|error):\s*", "", line.strip(), flags=re.IGNORECASE)
        if text.startswith("From ") or text.lower() in _BOILERPLATE:
            continue
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons)[:500] or "git gave no reason"


def signature_failure(output: str) -> str:
    """Why `git verify-commit --raw` refused a signature, in an operator's words."""
    if "NO_PUBKEY" in output or "ERRSIG" in output:
        return "signed by a key that is not in the trusted keyring"
    if "BADSIG" in output:
        return "the signature does not match the commit"
    for marker in ("EXPKEYSIG", "EXPSIG", "REVKEYSIG"):
        if marker in output:
            return f"gpg says {marker}"
    if "No principal matched" in output or "is not in allowed signers" in output.lower():
        return "signed by a key that is not in the allowed signers file"
    return git_reason(output)


def good_signer(output: str) -> str | None:
    """The identity of a good signature in `git verify-commit --raw` output."""
    found = _GPG_VALIDSIG.search(output) or _GPG_VALIDSIG_SHORT.search(output)
    if found is not None:
        return found.group(found.lastgroup or 1)
    good = _SSH_GOOD.search(output)
    if good is not None:
        return f"{good.group('principal')} {good.group('fpr')}"
    return None
