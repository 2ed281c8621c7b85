"""What a git process is given to reach the remote and check signatures, and nothing more.

Owns: splitting `user:token@` out of a URL (`split_credentials`), the secrets of one fetch
(`git_secrets`: a token file is re-read every fetch so that rotated tokens just work),
the SSH command with the given key and known-hosts file, the private GnuPG home holding
only the trusted keys (`gnupg_home`), and the environment of one git process
(`process_environment`).

Credentials never reach the cache repository's config, the command line, logs, errors or
snapshots. An HTTPS token is handed to git by a credential helper given through
`GIT_CONFIG_*` environment variables of the git process only; the helper prints the token
from that process's environment. SSH uses `GIT_SSH_COMMAND` with strict host key checking.
The host's own `~/.gnupg` is never consulted.

What this module must not do: run git or import gitpython (`git_source` does), or log.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from driftwarden.errors import SourceError
from driftwarden.runtime.signatures import dearmor
from driftwarden.runtime.source_types import GitCredentials

# Environment variables of the git subprocess that carry HTTPS credentials to the helper.
_USERNAME_VARIABLE = "DRIFTWARDEN_GIT_USERNAME"
_PASSWORD_VARIABLE = "DRIFTWARDEN_GIT_PASSWORD"
# A credential helper that answers `get` from the git process's own environment. Run by the
# shell because it starts with "!"; it contains variable names only, never a secret.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf "username=%s\\npassword=%s\\n" "${_USERNAME_VARIABLE}" "${_PASSWORD_VARIABLE}"; }}; f'
)


@dataclass
class GitSecrets:
    """Values that must never be shown, and the environment that hands them to git."""

    values: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    config: list[tuple[str, str]] = field(default_factory=list)


def is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
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


def git_secrets(
    url: str, url_username: str | None, url_password: str | None, credentials: GitCredentials, where: str
) -> GitSecrets:
    """The credentials of one fetch from `url` (already split); `where` names the source in errors."""
    secrets = GitSecrets()
    if url_password:
        secrets.values += [url_password, quote(url_password, safe="")]
    if url_username and is_http(url):
        secrets.values += [url_username, quote(url_username, safe="")]
    if not is_http(url):
        secrets.environment.update(ssh_environment(credentials))
        return secrets
    token = read_token(credentials, where)
    if token:
        secrets.values.append(token)
    password = token or url_password
    if password or url_username:
        # The empty value first resets helpers from the host's config: none of them may
        # answer for us, nor store the token on disk after a successful fetch.
        secrets.config += [("credential.helper", ""), ("credential.helper", _CREDENTIAL_HELPER)]
        secrets.environment[_USERNAME_VARIABLE] = url_username or credentials.https_username
        secrets.environment[_PASSWORD_VARIABLE] = password or ""
    return secrets


def read_token(credentials: GitCredentials, where: str) -> str | None:
    """The HTTPS token as it is now (file or variable), None when none is configured."""
    if credentials.https_token_file is not None:
        try:
            return credentials.https_token_file.expanduser().read_text().strip() or None
        except OSError as exc:
            raise SourceError(
                f"{where}: cannot read the Git token file {credentials.https_token_file}: {exc.strerror}"
            ) from None
    if credentials.https_token_env is not None:
        token = os.environ.get(credentials.https_token_env, "").strip()
        if not token:
            raise SourceError(f"{where}: the Git token variable {credentials.https_token_env} is not set")
        return token
    return None


def ssh_environment(credentials: GitCredentials) -> dict[str, str]:
    """`GIT_SSH_COMMAND` for the configured key and known-hosts file (nothing when neither is given)."""
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


def gnupg_home(cache_dir: Path, keyring: Path) -> Path:
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
    packets = dearmor(data)
    if not packets:
        raise SourceError(f"the GPG keyring {keyring} holds no public key")
    home = cache_dir / "gnupg" / hashlib.sha256(packets).hexdigest()[:16]
    if not (home / "pubring.gpg").is_file():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        home.chmod(0o700)  # gpg warns about (and may refuse) a home others can read
        partial = home / "pubring.gpg.partial"
        partial.write_bytes(packets)
        partial.replace(home / "pubring.gpg")
    return home


def process_environment(
    secrets: GitSecrets,
    *,
    network: bool,
    config: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables added to one git process: credentials only for commands that reach the remote."""
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
    return env
