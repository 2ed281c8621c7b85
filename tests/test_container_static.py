"""The container image's contract, read from Dockerfile, .dockerignore and the locks: no build.

scripts/container-smoke.sh builds the image with buildah and runs it, which takes minutes; these
checks take milliseconds and cover what can be read off the files: the base image is a build
argument, the daemon runs as a non-root user under an init process, the health check asks
/healthz on the daemon's metrics port (and fails on a 503), the cache volume is the only
writable state, every Python package is pinned, the production image (the default) leaves the
sandbox extra out, and the build context holds what the Dockerfile copies and never the venv or
Git metadata.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "deploy" / "container" / "requirements.lock"
SANDBOX_LOCK = ROOT / "deploy" / "container" / "requirements-sandbox.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INITS = {"tini", "dumb-init"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker allows
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def stages() -> list[list[Instruction]]:
    """The build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


FINAL = stages()[-1]


def stage_name(from_: Instruction) -> str:
    words = from_.args.split()
    return words[2] if len(words) == 3 and words[1].upper() == "AS" else ""


def lock_stage() -> list[Instruction]:
    """The stage that copies the lock in."""
    lock = LOCK.relative_to(ROOT).as_posix()
    (stage,) = [s for s in stages() if any(lock in i.args for i in s if i.keyword == "COPY")]
    return stage


def final(keyword: str) -> list[Instruction]:
    return [i for i in FINAL if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def key_values(keyword: str, stage: list[Instruction]) -> dict[str, str]:
    """ENV or LABEL pairs of a stage (the KEY=VALUE form), later ones winning."""
    pairs: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == keyword:
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"line {instruction.line}: {keyword} {token!r} is not KEY=VALUE"
                pairs[key] = value
    return pairs


def global_args() -> dict[str, str | None]:
    """The ARGs before the first FROM: the only ones a FROM line can use."""
    found: dict[str, str | None] = {}
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, sep, default = instruction.args.partition("=")
            found[name] = default if sep else None
    return found


def apt_installed(stage: list[Instruction]) -> set[str]:
    """Packages named by `apt-get install` in the RUN lines of a stage."""
    packages: set[str] = set()
    for instruction in stage:
        if instruction.keyword != "RUN":
            continue
        tokens = shlex.split(instruction.args)
        for index, token in enumerate(tokens[:-1]):
            if token == "apt-get" and tokens[index + 1] == "install":
                for word in tokens[index + 2 :]:
                    if word in {"&&", "||", ";", "|"}:
                        break
                    if not word.startswith("-"):
                        packages.add(word)
    return packages


def final_uid() -> int:
    (user,) = final("USER")
    name = user.args.split(":")[0]
    assert name.isdigit(), f"USER {user.args}: use a numeric uid, which runAsNonRoot can check"
    return int(name)


def test_every_stage_builds_on_the_base_image_build_argument() -> None:
    """A multi-stage build whose stages all descend from ${BASE_IMAGE}, a global ARG with a public default."""
    default = global_args().get("BASE_IMAGE")
    assert default, "ARG BASE_IMAGE=<default> must come before the first FROM"
    assert re.fullmatch(r"([\w.-]+/)*python:3\.\d+-slim-\w+", default), default
    froms = [stage[0] for stage in stages()]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    allowed = {"${BASE_IMAGE}", "$BASE_IMAGE"}
    for instruction in froms:
        # The venv is copied between stages with the base's python3 as its interpreter: every
        # stage must be the one base, or an earlier stage built on it.
        assert instruction.args.split()[0] in allowed, (
            f"line {instruction.line}: FROM {instruction.args}"
        )
        allowed.add(stage_name(instruction))
    assert froms[-1].args.split()[0] in {"${BASE_IMAGE}", "$BASE_IMAGE"}, (
        "the runtime starts from the base"
    )


def test_the_default_base_python_satisfies_requires_python() -> None:
    """The Python of the default base image is one pyproject.toml accepts."""
    default = global_args()["BASE_IMAGE"] or ""
    version = re.search(r"python:(\d+\.\d+)", default)
    assert version, default
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version.group(1))


def test_the_runtime_copies_the_venv_from_the_stage_that_installs_the_lock() -> None:
    """The runtime gets /opt/venv from the lock's stage and runs no pip: no build tools in the image."""
    copies = [shlex.split(i.args) for i in final("COPY")]
    assert [f"--from={stage_name(lock_stage()[0])}", "/opt/venv", "/opt/venv"] in copies
    assert not any("pip" in i.args for i in final("RUN")), "pip runs in the build stages only"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """USER is a numeric uid other than 0, and the image creates that user."""
    uid = final_uid()
    assert uid != 0
    assert any(f"--uid {uid}" in i.args for i in final("RUN")), f"no useradd --uid {uid}"


def test_the_entrypoint_runs_driftwarden_run_under_an_init() -> None:
    """ENTRYPOINT (exec form) is an init, then `driftwarden run`; the init is installed."""
    (entrypoint,) = final("ENTRYPOINT")
    argv = exec_form(entrypoint.args)
    init = PurePosixPath(argv[0]).name
    assert init in INITS, f"PID 1 is {argv[0]}: it must forward SIGTERM and reap git/ssh"
    assert argv[1] == "--"
    assert PurePosixPath(argv[-2]).name == "driftwarden" and argv[-1] == "run", argv
    assert init in apt_installed(FINAL)
    assert not final("CMD"), "a CMD would be appended to `driftwarden run` as arguments"


def test_git_and_ssh_are_installed_for_gitpython() -> None:
    """git and openssh-client (and CA certificates for HTTPS remotes) are in the runtime stage."""
    assert {"git", "openssh-client", "ca-certificates"} <= apt_installed(FINAL)


def test_the_healthcheck_asks_healthz_on_the_daemons_metrics_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEALTHCHECK runs Python (no curl) on /healthz at DRIFTWARDEN_METRICS_PORT, the CLI's default and EXPOSE."""
    from driftwarden.cli.main import build_parser

    (healthcheck,) = final("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    argv = exec_form(command)
    assert argv[0].startswith("/opt/venv/bin/python") and argv[1] == "-c"
    assert "/healthz" in argv[2] and "DRIFTWARDEN_METRICS_PORT" in argv[2]
    assert "--timeout=" in options

    monkeypatch.delenv("DRIFTWARDEN_METRICS_PORT", raising=False)
    cli_default = build_parser().parse_args(["run"]).metrics_port
    env = key_values("ENV", FINAL)
    assert env["DRIFTWARDEN_METRICS_PORT"] == str(cli_default)
    assert f"'{cli_default}'" in argv[2], "the healthcheck's fallback port is the CLI's default"
    assert [i.args for i in final("EXPOSE")] == [str(cli_default)]


class _Health(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, int]] = {"/healthz": 200}

    def do_GET(self) -> None:
        self.send_response(self.answers.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_command_fails_when_healthz_answers_503(
    health_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch, status: int, healthy: bool
) -> None:
    """The HEALTHCHECK's Python exits 0 on a 200 from /healthz and non-zero on a 503."""
    (healthcheck,) = final("HEALTHCHECK")
    code = exec_form(healthcheck.args.partition("CMD ")[2])[2]
    monkeypatch.setitem(_Health.answers, "/healthz", status)
    env = {**os.environ, "DRIFTWARDEN_METRICS_PORT": str(health_server.server_address[1])}
    env["DRIFTWARDEN_METRICS_HOST"] = "0.0.0.0"  # the daemon's default: the check asks loopback
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr.decode()[-500:]


def test_the_cache_volume_is_the_only_writable_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME, TMPDIR and driftwarden's cache dir are all in the VOLUME, made for the image's user."""
    from driftwarden.manifests.cache import default_cache_dir

    (volume,) = final("VOLUME")
    (cache,) = exec_form(volume.args)
    env = key_values("ENV", FINAL)
    assert env["HOME"] == cache and env["TMPDIR"] == cache
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    assert default_cache_dir() == Path(cache), (
        "XDG_CACHE_HOME must put driftwarden's cache in the volume"
    )
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "no .pyc writes on a read-only root filesystem"
    uid = final_uid()
    assert any(
        re.search(rf"install -d -o {uid} .*{re.escape(cache)}\b", i.args) for i in final("RUN")
    ), f"{cache} must exist in the image, owned by uid {uid}, before VOLUME"
    assert [i.keyword for i in FINAL].index("VOLUME") > max(
        n for n, i in enumerate(FINAL) if i.keyword == "RUN"
    ), "a RUN after VOLUME would have its changes to the volume discarded"


def test_the_bundled_manifests_and_schemas_are_in_the_image() -> None:
    """manifests/ and schemas/ are copied to /usr/share/driftwarden."""
    copies = [shlex.split(i.args) for i in final("COPY")]
    assert ["manifests", "/usr/share/driftwarden/manifests"] in copies
    assert ["schemas", "/usr/share/driftwarden/schemas"] in copies


def test_the_oci_labels_carry_the_pyproject_version() -> None:
    """The OCI labels are set, and the version label defaults to pyproject's version."""
    labels = key_values("LABEL", FINAL)
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    version_args = [i.args for i in final("ARG") if i.args.startswith("VERSION=")]
    assert version_args == [f"VERSION={PYPROJECT['project']['version']}"]


def lock_pins(lock: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(lock.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{lock.name}:{number}: {raw!r} is not NAME==VERSION"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{lock.name}:{number}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def assert_pinned(requirements: list[str], pins: dict[str, str], lock: Path) -> None:
    for requirement in (Requirement(r) for r in requirements):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock.name}: {name}=={pins[name]} vs {requirement}"
        )


def test_the_lock_pins_every_runtime_dependency_with_double_equals() -> None:
    """Each dependency of pyproject is pinned in requirements.lock, its sandbox extra in the sandbox lock, with == to a version it allows."""
    project = PYPROJECT["project"]
    assert_pinned(project["dependencies"], lock_pins(), LOCK)
    assert_pinned(PYPROJECT["build-system"]["requires"], lock_pins(), LOCK)
    assert_pinned(project["optional-dependencies"]["sandbox"], lock_pins(SANDBOX_LOCK), SANDBOX_LOCK)


def test_the_sandbox_lock_only_adds_to_the_runtime_lock() -> None:
    """No package is pinned in both locks: the sandbox image cannot install two versions of one."""
    assert sorted(set(lock_pins()) & set(lock_pins(SANDBOX_LOCK))) == []
    assert "moto" in lock_pins(SANDBOX_LOCK) and "moto" not in lock_pins()


def test_the_lock_leaves_out_the_dev_extra() -> None:
    """Test and lint tools of the dev extra stay out of the image."""
    runtime = {
        canonicalize_name(Requirement(r).name)
        for r in [
            *PYPROJECT["project"]["dependencies"],
            *PYPROJECT["project"]["optional-dependencies"]["sandbox"],
        ]
    }
    dev_only = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    assert not (dev_only - runtime) & (set(lock_pins()) | set(lock_pins(SANDBOX_LOCK)))


def sandbox_lock_argument(with_sandbox: str) -> subprocess.CompletedProcess[str]:
    """What the lock stage's RUN puts in $sandbox_lock for WITH_SANDBOX, run by the shell as the build would."""
    (run,) = [i.args for i in lock_stage() if i.keyword == "RUN" and "WITH_SANDBOX" in i.args]
    choice = run.split("&&", 1)[0]
    assert choice.lstrip().startswith("case "), choice
    return subprocess.run(
        ["sh", "-c", f'{choice}\nprintf %s "$sandbox_lock"'],
        env={"PATH": os.environ["PATH"], "WITH_SANDBOX": with_sandbox},
        capture_output=True, text=True, check=False,
    )


def test_the_production_image_is_the_default_and_leaves_the_sandbox_extra_out() -> None:
    """WITH_SANDBOX defaults to false, which installs requirements.lock alone; true adds the sandbox lock; other values fail."""
    assert global_args().get("WITH_SANDBOX") == "false"
    (install,) = [
        command for i in lock_stage() if i.keyword == "RUN"
        for command in i.args.split("&&") if re.search(r"\bpip\b.*\binstall\b", command)
    ]
    assert "--requirement /tmp/requirements.lock $sandbox_lock" in install

    production, sandbox, bogus = (sandbox_lock_argument(v) for v in ("false", "true", "yes"))

    assert (production.returncode, production.stdout) == (0, "")
    assert (sandbox.returncode, sandbox.stdout) == (0, "--requirement /tmp/requirements-sandbox.lock")
    assert bogus.returncode != 0 and "WITH_SANDBOX must be true or false" in bogus.stderr
    copied = [i.args for i in lock_stage() if i.keyword == "COPY"]
    assert any(SANDBOX_LOCK.relative_to(ROOT).as_posix() in c for c in copied)


def test_the_build_installs_python_packages_from_the_lock_alone() -> None:
    """Every pip install has --no-deps; the lock's is wheels only and followed by pip check."""
    commands = [
        command.strip()
        for i in INSTRUCTIONS
        if i.keyword == "RUN"
        for command in re.split(r"&&|;", i.args)
        if re.search(r"\bpip\b.*\binstall\b", command)
    ]
    assert commands
    for command in commands:
        assert "--no-deps" in command, f"{command}: installs what the lock does not pin"
    lock_runs = [i.args for i in lock_stage() if i.keyword == "RUN"]
    assert any(
        "--only-binary=:all:" in run and "--requirement /tmp/requirements.lock" in run
        for run in lock_runs
    )
    assert any("pip check" in run for run in lock_runs)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", body):
            if token.startswith("["):
                regex += token  # a character class, as in the pattern
            else:
                regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                    token, re.escape(token)
                )
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_out_the_venv_and_git_metadata() -> None:
    """.venv, .git, caches and tests never reach the build context."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    for path in (
        ".venv",
        ".venv/bin/python",
        ".git",
        ".git/HEAD",
        "tests/test_cli.py",
        "daemon/driftwarden/__pycache__/cli.cpython-311.pyc",
        "daemon/driftwarden.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/lastfailed",
        "benchmarks/validate.py",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the build"


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    """Every COPY source from the build context, and the files under it, is in the context."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    copies = [shlex.split(i.args) for i in INSTRUCTIONS if i.keyword == "COPY"]
    sources = {
        source
        for tokens in copies
        if not any(t.startswith("--from=") for t in tokens)
        for source in tokens[:-1]
        if not source.startswith("--")
    }
    assert {"daemon", "manifests", "schemas", "pyproject.toml"} <= sources
    for source in sorted(sources):
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file"
        files = (
            [path]
            if path.is_file()
            else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if relative.endswith(".pyc") or ".egg-info/" in relative:
                continue
            assert not ignored(relative, patterns), (
                f"{relative} (COPY {source}) is left out by .dockerignore"
            )
