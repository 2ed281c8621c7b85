"""Credentials out of text: the one place that decides what a secret looks like in a message.

Messages reach logs, `/status`, CLI output and exceptions; any of them may quote a Git URL with
a token in it, a Git or HTTP error echoing an ``Authorization`` header, an AWS validation error
repeating the value it rejected (possibly a secret), or a credential assignment from a config
file. `redact` removes all of those; `redact_url` only the user info of one URL, for showing
where a source lives; `scrub_secret_references` also removes where secrets live (Secrets
Manager and SSM parameter ARNs, the source a `valueFrom` names), for text shown on `/status`.

URL user info is found by parsing each URL, not by one pattern: a password may hold an
unencoded ``@``, ``:`` or ``/`` (``https://user:p@ss:w/rd@host/r.git``), so the user info runs
to the last ``@`` that is followed by a well-formed host. When that is ambiguous (an ``@`` in
a path of a URL that also carries credentials) more is removed, never less.

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

# Where a URL starts, and how far it can run: to whitespace, a quote or an angle bracket.
_URL_START: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://")
_URL_END: Final = re.compile(r"[\s'\"<>`]")
# A host as a URL's authority spells it (name, IPv4 or bracketed IPv6), with an optional port.
_HOST: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
                          r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")
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


# Secrets Manager ARNs (any partition), SSM parameter ARNs, and the source named in
# "cannot read secret source <kind> <ref>" (the resolver's message) name where a secret lives.
_SECRET_ARN: Final = re.compile(r"\barn:aws[a-z-]*:(?:secretsmanager|ssm):[^\s'\"<>`,;)\]]*")
_SECRET_SOURCE: Final = re.compile(r"\b(secret source (?:secretsManagerArn|ssmParameter|env)) [^\s:'\"]+(?::(?!\s)[^\s:'\"]*)*")
SECRET_PLACEHOLDER: Final = "<secret reference>"


def _userinfo_end(url: str) -> int:
    """Where the user info of `url` (the text after ``scheme://``) ends: its last ``@``, or -1 for none.

    The authority normally ends at the first ``/``, ``?`` or ``#``; but when that prefix is
    not a well-formed host it must be user info holding one of those characters, so the user
    info runs to the last ``@`` followed by a well-formed host and then the end of the
    authority.
    """
    first_end = len(url)
    for stop in "/?#":
        index = url.find(stop)
        if index != -1:
            first_end = min(first_end, index)
    authority = url[:first_end]
    if "@" not in authority and _HOST.fullmatch(authority):
        return -1
    for at in (i for i in range(len(url) - 1, -1, -1) if url[i] == "@"):
        host = _HOST.match(url, at + 1)
        if host is not None and (host.end() == len(url) or url[host.end()] in "/?#"):
            return at
    return -1


def _redact_urls(text: str, limit: int | None = None) -> str:
    out: list[str] = []
    position = done = 0
    while limit is None or done < limit:
        start = _URL_START.search(text, position)
        if start is None:
            break
        body_start = start.end()
        end_match = _URL_END.search(text, body_start)
        body_end = end_match.start() if end_match else len(text)
        at = _userinfo_end(text[body_start:body_end])
        if at >= 0:
            userinfo = text[body_start:body_start + at]
            # An SSH user name ("git@") is not a secret and tells the operator which account is used.
            if not (start.group(1).lower() in _SSH_SCHEMES and ":" not in userinfo):
                out.append(text[position:body_start] + REDACTED)
                position = body_start + at
                done += 1
                continue
        out.append(text[position:body_end])
        position = body_end
        done += 1
    out.append(text[position:])
    return "".join(out)


def redact_url(url: str) -> str:
    """A URL without the credentials it may carry (`https://token@host/...` -> `https://***@host/...`)."""
    return _redact_urls(url, limit=1)


def scrub_secret_references(text: str, secrets: Iterable[str] = ()) -> str:
    """`redact(text)`, and no word of where secrets live: for error text shown on `/status`.

    Secrets Manager and SSM parameter ARNs, and the source a `valueFrom` names in a resolver
    error, become ``<secret reference>``: a reader of `/status` learns that a secret source
    failed, not which one (the operator finds it in the manifest).
    """
    text = redact(text, secrets)
    text = _SECRET_SOURCE.sub(rf"\1 {SECRET_PLACEHOLDER}", text)
    return _SECRET_ARN.sub(SECRET_PLACEHOLDER, text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential removed.

    In order: the known secret values given (longest first, so a secret containing another is
    removed whole), user info of every URL, ``Authorization`` header values, Git host token
    shapes, values quoted by AWS validation errors, and AWS secret keys or session tokens
    written as assignments.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _redact_urls(text)
    text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _AWS_QUOTED_VALUE.sub("Value (redacted) at '", text)
    return _AWS_CREDENTIAL.sub(rf"\1{REDACTED}", text)
