"""Real Git repositories and servers for tests: no fakes of Git anywhere.

* `Origin`: a bare "remote" repository plus a working clone that writes, commits and pushes.
* `GitDaemon`: `git daemon` serving a directory over git:// on a free loopback port.
* `SmartHttpServer`: Git's smart HTTP protocol (`git http-backend` as CGI) behind HTTP Basic
  authentication, so that token handling is tested against a server that checks the token.
* `ssh_signing_key`, `GpgKey`: real signing keys made with ssh-keygen and gpg.

Every git command here runs with `HERMETIC_GIT_ENV`: the developer's own Git configuration
(signing by default, hooks, identities) never leaks into a test.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERMETIC_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Platform Team",
    "GIT_AUTHOR_EMAIL": "platform@example.com",
    "GIT_COMMITTER_NAME": "Platform Team",
    "GIT_COMMITTER_EMAIL": "platform@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def run_git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run git hermetically; its stdout, stripped. Fails the test on a non-zero exit."""
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **HERMETIC_GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {completed.stderr}")
    return completed.stdout.strip()


class Origin:
    """A bare remote at `root/remote.git` and a clone at `root/work` that pushes to it."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.branch = branch
        root.mkdir(parents=True, exist_ok=True)
        run_git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.remote), cwd=root)
        run_git("init", "--quiet", f"--initial-branch={branch}", str(self.work), cwd=root)
        run_git("remote", "add", "origin", str(self.remote), cwd=self.work)

    def write(self, path: str, text: str | bytes) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    def symlink(self, path: str, points_to: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(points_to)

    def remove(self, path: str) -> None:
        run_git("rm", "--quiet", path, cwd=self.work)

    def commit(
        self, message: str, *, signing: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """Commit everything in the work tree (signed when `signing` config is given); the sha."""
        run_git("add", "--all", cwd=self.work)
        config: list[str] = []
        for key, value in (signing or {}).items():
            config += ["-c", f"{key}={value}"]
        sign = ["-S"] if signing else []
        run_git(*config, "commit", "--quiet", "--allow-empty", *sign, "-m", message, cwd=self.work, env=env)
        return self.head()

    def push(self, *, force: bool = False, branch: str | None = None) -> None:
        flags = ["--force"] if force else []
        run_git("push", "--quiet", *flags, "origin", f"HEAD:refs/heads/{branch or self.branch}", cwd=self.work)

    def commit_and_push(self, files: Mapping[str, str], message: str = "change") -> str:
        for path, text in files.items():
            self.write(path, text)
        sha = self.commit(message)
        self.push()
        return sha

    def head(self) -> str:
        return run_git("rev-parse", "HEAD", cwd=self.work)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    # Readiness polling, not a timing assertion: gives up after a generous bound.
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(f"server exited early with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.025)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def git_daemon_available() -> bool:
    if shutil.which("git") is None:
        return False
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=False).stdout.strip()
    return Path(exec_path, "git-daemon").is_file()


@contextmanager
def git_daemon(base_path: Path) -> Iterator[str]:
    """`git daemon` exporting every repository under `base_path`; yields `git://127.0.0.1:PORT`."""
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={base_path}",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base_path),
        ],
        env={**os.environ, **HERMETIC_GIT_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class SmartHttpServer:
    """Git over smart HTTP for repositories under `project_root`, behind HTTP Basic auth."""

    def __init__(self, project_root: Path, username: str, password: str) -> None:
        self.project_root = project_root
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.authorized_requests = 0
        self.refused_requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

            def do_POST(self) -> None:
                server._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, repository: str, *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{repository}"

    def __enter__(self) -> SmartHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("Authorization") != self.expected:
            self.refused_requests += 1
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        self.authorized_requests += 1
        path, _sep, query = request.path.partition("?")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        env = {
            **os.environ,
            **HERMETIC_GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            value = request.headers.get(header)
            if value:
                env["HTTP_" + header.upper().replace("-", "_")] = value
        completed = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _sep, payload = completed.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _colon, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        request.send_response(status)
        for key, value in headers:
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def ssh_signing_key(directory: Path, principal: str) -> tuple[Path, str]:
    """A new ed25519 key: (private key path, allowed-signers line for `principal`)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    public = key.with_suffix(".pub").read_text().strip()
    return key, f"{principal} {public}"


def ssh_signing(key: Path) -> dict[str, str]:
    """Git config that signs commits with an SSH key."""
    return {"gpg.format": "ssh", "user.signingkey": str(key)}


class GpgKey:
    """A new GPG signing key in its own GnuPG home (a short path: gpg-agent's socket lives there)."""

    def __init__(self, uid: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="dwgpg", dir="/tmp"))
        self.env = {**os.environ, "GNUPGHOME": str(self.home)}
        self._gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self._gpg("--list-keys", "--with-colons")
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def _gpg(self, *args: str) -> str:
        return subprocess.run(
            ["gpg", "--batch", "--quiet", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def export(self, path: Path) -> Path:
        path.write_text(self._gpg("--armor", "--export", self.fingerprint))
        return path

    def signing(self) -> dict[str, str]:
        """Git config that signs commits with this key (GNUPGHOME is passed to git via `env`)."""
        return {"gpg.format": "openpgp", "user.signingkey": self.fingerprint}

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)
