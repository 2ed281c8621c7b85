"""Credentials out of text: the one place that decides what a secret looks like in a message.

Messages reach logs, `/status`, CLI output and exceptions; any of them may quote a Git URL with
a token in it, a Git or HTTP error echoing an ``Authorization`` header, an AWS validation error
repeating the value it rejected (possibly a secret), or a credential assignment from a config
file. `redact` removes all of those; `redact_url` only the user info of one URL, for showing
where a source lives.

What it owns: the patterns and the replacement (``***``). What it must not do: import anything
from driftwarden or a third-party library (every layer uses it, the pure core included), or
redact what is not a credential — an SSH user name (``ssh://git@host``) and commit hashes stay,
because operators need them to tell which account and revision an error is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

REDACTED: Final = "***"

# scheme://userinfo@ — userinfo is everything up to "@" that cannot be part of a path or a quote.
_URL_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://([^/?#\s@'\"]+)@")
# Token formats of the Git hosts driftwarden is pointed at (GitHub classic and fine-grained, GitLab).
_TOKEN_SHAPES: Final = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}|glpat-[A-Za-z0-9_-]{16,})"
)
_AUTH_HEADER: Final = re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)\S+")
# AWS validation messages quote the offending input ("Value 'x' at 'secretString' failed to
# satisfy constraint"); that input may be a secret.
_AWS_QUOTED_VALUE: Final = re.compile(r"Value '.*?' at '", re.DOTALL)
# An AWS secret key or session token written as an assignment: shared credentials files
# (aws_secret_access_key = ...), environment dumps (AWS_SESSION_TOKEN=...) and STS responses
# ("SecretAccessKey": "..."). A bare 40-character word is not matched: commit hashes look alike.
_AWS_CREDENTIAL: Final = re.compile(
    r"""(?ix)
    (\b(?:aws_secret_access_key|aws_session_token|secret_?access_?key|session_?token)
     ["']?\s*[:=]\s*["']?)
    [A-Za-z0-9/+=]{16,}
    """
)
_SSH_SCHEMES: Final = frozenset({"ssh", "git+ssh", "ssh+git"})


def _userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    # An SSH user name ("git@") is not a secret and tells the operator which account is used.
    if scheme.lower() in _SSH_SCHEMES and ":" not in userinfo:
        return match.group(0)
    return f"{scheme}://{REDACTED}@"


def redact_url(url: str) -> str:
    """A URL without the credentials it may carry (`https://token@host/...` -> `https://***@host/...`)."""
    return _URL_USERINFO.sub(_userinfo, url, count=1)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential removed.

    In order: the known secret values given (longest first, so a secret containing another is
    removed whole), user info of every URL, ``Authorization`` header values, Git host token
    shapes, values quoted by AWS validation errors, and AWS secret keys or session tokens
    written as assignments.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _AWS_QUOTED_VALUE.sub("Value (redacted) at '", text)
    return _AWS_CREDENTIAL.sub(rf"\1{REDACTED}", text)
