"""README.md stays true: its generated sections match their sources, its manifest examples
validate, and every command of its ```sh blocks is run here or named with the test that runs it.

Generated sections (manifest fields, command options, metrics) come from
`driftwarden.cli.reference`; when one differs, regenerate with ``python -m driftwarden.cli.reference``.

Commands: every line of a ```sh (or bash, shell, console) block must be a key of `COVERAGE`,
either `RunHere` (run as a user would, from the repository's root, asserting the exit code and
a piece of the output) or `CoveredBy` (a test or CI script that runs it, checked to exist).
Examples that cannot run here (a real Git remote, real AWS) belong in ```text blocks.
"""

from __future__ import annotations

import difflib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from driftwarden.cli import reference
from driftwarden.manifests.validation import validate_paths
from driftwarden.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DRIFTWARDEN = shutil.which("driftwarden", path=str(Path(sys.executable).parent)) or "driftwarden"
SHELL_FENCES = {"sh", "bash", "shell", "console", "zsh"}


@dataclass(frozen=True)
class RunHere:
    """Run by `test_readme_command_runs`: it must exit with `code` and print `output` (a regex)."""

    code: int
    output: str
    timeout: float = 120.0


@dataclass(frozen=True)
class CoveredBy:
    """Run elsewhere: `where` is ``tests/FILE.py::test_name`` or a CI script that contains the command."""

    where: str
    why: str


COVERAGE: dict[str, RunHere | CoveredBy] = {
    "make run": CoveredBy(
        "tests/test_readme.py::test_make_run_starts_the_daemon_over_the_example_platform",
        "runs the Makefile's `run` recipe (on a free port) until every example object is created",
    ),
    "make test": CoveredBy(".ci/run", "CI's entry point runs exactly this command"),
    "make image-smoke": CoveredBy(".ci/run", "CI builds and checks the image before the tests"),
    "driftwarden validate manifests/": RunHere(0, r"^valid: 6 files, 3 Clusters, 3 Deployments$"),
    "driftwarden validate --format github manifests/": RunHere(0, r"^valid: 6 files"),
    "driftwarden plan --source manifests --sandbox": RunHere(0, r"^Plan: \d+ to create, 0 to update"),
    # 15 s here; its two halves are run elsewhere: the same command over manifests/ without the
    # static-placement cluster, and make run's test, which applies all of manifests/ in a sandbox.
    "driftwarden apply --source manifests --sandbox": CoveredBy(
        "tests/test_cli_engine.py::test_apply_in_the_sandbox_reports_progress_and_verifies_no_changes_remain",
        "apply --sandbox over a copy of manifests/, ending with a verifying plan that finds no changes",
    ),
    "driftwarden trust-policy --account 742096158823 --control 123456789012 --source manifests": RunHere(
        0, r'"sts:ExternalId": "dw-prod-euw1-7f3a9c"'
    ),
    "driftwarden iam-policy": RunHere(0, r'"Resource": "arn:aws:iam::\*:role/driftwarden-\*"'),
    "driftwarden schema cluster": RunHere(0, r'"\$id": "https://driftwarden.dev/schemas/v1/cluster.schema.json"'),
    "python -m driftwarden.cli.reference --check": RunHere(0, r"generated sections are up to date"),
}


# --- reading the README ----------------------------------------------------------------------


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (info string, body)."""
    blocks: list[tuple[str, str]] = []
    info: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        fence = re.match(r"^(```+)\s*(\S*)", line)
        if info is None and fence:
            info, body = fence.group(2).lower(), []
        elif info is not None and line.startswith("```"):
            blocks.append((info, "\n".join(body)))
            info = None
        elif info is not None:
            body.append(line)
    assert info is None, "README.md: a code fence is never closed"
    return blocks


def readme_commands(text: str) -> list[str]:
    """Every command line of the shell blocks, continuation lines joined, comments dropped."""
    commands: list[str] = []
    for info, body in fenced_blocks(text):
        if info not in SHELL_FENCES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_every_command_in_the_readme_is_run_or_named():
    """A command added to a ```sh block fails here until COVERAGE runs it or names its test."""
    missing = [c for c in readme_commands(README.read_text()) if c not in COVERAGE]
    assert not missing, (
        f"README.md commands without coverage: {missing}. Add each to COVERAGE in {Path(__file__).name}: "
        "RunHere(exit code, output regex) to run it here, or CoveredBy('tests/x.py::test_y', why); "
        "an example that cannot run here belongs in a ```text block."
    )


def test_coverage_names_no_command_the_readme_dropped():
    """COVERAGE has no entry for a command that is no longer in the README."""
    commands = set(readme_commands(README.read_text()))
    assert sorted(set(COVERAGE) - commands) == []


def test_commands_covered_elsewhere_name_something_that_runs_them():
    """Each CoveredBy names a test function that exists, or a CI script containing the command."""
    for command, coverage in COVERAGE.items():
        if not isinstance(coverage, CoveredBy):
            continue
        path, _, test = coverage.where.partition("::")
        source = (REPO / path).read_text()
        if test:
            assert re.search(rf"^def {re.escape(test)}\(", source, re.M), f"{command!r}: no {coverage.where}"
        else:
            assert command in [line.strip() for line in source.splitlines()], f"{command!r}: not run by {path}"


def _environment(tmp_path: Path) -> dict[str, str]:
    # A user's shell, not the test session's: no fake AWS settings, no DRIFTWARDEN_* options.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DRIFTWARDEN_", "MOTO_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("command", [c for c, how in COVERAGE.items() if isinstance(how, RunHere)])
def test_readme_command_runs(command, tmp_path):
    """The command exits as documented and prints what the README leads a reader to expect."""
    expected = COVERAGE[command]
    assert isinstance(expected, RunHere)
    words = shlex.split(command)
    words[0] = {"driftwarden": DRIFTWARDEN, "python": sys.executable}.get(words[0], words[0])
    done = subprocess.run(words, cwd=REPO, env=_environment(tmp_path), capture_output=True, text=True,
                          timeout=expected.timeout)
    output = done.stdout + done.stderr
    assert done.returncode == expected.code, f"{command}: exit {done.returncode}\n{output[-3000:]}"
    assert re.search(expected.output, output, re.M), f"{command}: no {expected.output!r} in\n{output[-3000:]}"


# --- make run ----------------------------------------------------------------------------------


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}\s*:", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _get(base: str, path: str) -> tuple[int, bytes]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_make_run_starts_the_daemon_over_the_example_platform(tmp_path):
    """`make run`'s daemon prints where /status is, creates every example object, and stops cleanly on Ctrl-C."""
    (recipe,) = make_recipe("run")
    words = shlex.split(recipe)
    assert words[0] == "$(BIN)/driftwarden" and words[1] == "run", recipe
    # The recipe as written, but on a free loopback port: the README's 9108 may be taken here.
    argv = [DRIFTWARDEN, *words[1:], "--metrics-host", "127.0.0.1", "--metrics-port", "0"]
    expected = validate_paths([REPO / "manifests"], cache_dir=None).declared
    out = tmp_path / "stdout"
    with out.open("w") as stdout, (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(argv, cwd=REPO, env=_environment(tmp_path), stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        base = None
        while base is None:
            assert process.poll() is None, f"make run's daemon exited {process.returncode}:\n{(tmp_path / 'stderr').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no /status hint on stdout:\n{out.read_text()}"
            hint = re.search(r"status at (http://\S+)/status", out.read_text())
            base = hint.group(1) if hint else None
            time.sleep(0.2)
        settled: dict[str, str] = {}
        while True:
            code, body = _get(base, "/status")
            assert code == 200
            settled = {f"{o['kind']}/{o['name']}": o["status"] for o in json.loads(body)["objects"]}
            counts = {kind: sum(1 for key in settled if key.startswith(f"{kind}/")) for kind in expected}
            done = counts == dict(expected) and set(settled.values()) <= {"CREATED", "HEALTHY"}
            if done:
                break
            assert process.poll() is None, f"exited {process.returncode}:\n{(tmp_path / 'stderr').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"objects did not settle: {settled}\n{(tmp_path / 'stderr').read_text()[-3000:]}"
            time.sleep(0.5)
        assert _get(base, "/readyz")[0] == 200
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# --- generated sections ------------------------------------------------------------------------


def test_generated_sections_match_the_schemas_the_cli_and_the_metrics():
    """README.md's reference sections are exactly what `python -m driftwarden.cli.reference` writes."""
    text = README.read_text()
    rendered, missing = reference.render(text)
    assert not missing, (
        f"README.md has no place for the generated section(s) {missing}: add "
        "'<!-- reference:NAME:begin -->' and '<!-- reference:NAME:end -->' lines where they belong, "
        "then run `python -m driftwarden.cli.reference`"
    )
    if rendered != text:
        diff = "".join(difflib.unified_diff(text.splitlines(True), rendered.splitlines(True), "README.md", "generated", n=1))
        pytest.fail(
            "README.md's generated reference is out of date (a schema, a command's options or a metric "
            f"changed): run `python -m driftwarden.cli.reference` and commit README.md.\n{diff[:6000]}"
        )


def test_the_metrics_reference_lists_every_registered_metric():
    """Every metric family on the registry has a row, with the name users query and its type."""
    registered = {family.name: family.type for family in Metrics().registry.collect()}
    documented = {d.name.removesuffix("_total") if d.type == "counter" else d.name: d.type for d in reference.metric_docs()}
    assert documented == registered


def test_metric_labels_are_those_the_exposition_carries():
    """The documented labels are the label names of the samples each metric produces."""
    docs = {d.name: d.labels for d in reference.metric_docs()}
    assert docs["driftwarden_resource_info"] == ("kind", "name", "cluster", "account", "region", "status", "drift")
    assert docs["driftwarden_reconcile_total"] == ("result",)
    assert docs["driftwarden_reconcile_duration_seconds"] == ("trigger",)
    assert docs["driftwarden_last_successful_reconcile_timestamp_seconds"] == ()


def test_environment_variables_are_listed_only_for_options_that_read_them():
    """An option's DRIFTWARDEN_* variable is listed because the parser reads it, not by convention."""
    trust = reference.environment_variables("trust-policy")
    assert "DRIFTWARDEN_CONTROL" in trust and "DRIFTWARDEN_ACCOUNT" not in trust
    run = reference.environment_variables("run")
    assert run["DRIFTWARDEN_METRICS_PORT"] == "--metrics-port" and run["DRIFTWARDEN_APPLY_WINDOW"] == "--apply-window"


def test_the_reference_does_not_depend_on_the_callers_environment(monkeypatch):
    """DRIFTWARDEN_* settings and the caller's home directory do not leak into the generated text."""
    before = reference.cli_reference("validate") + reference.cli_reference("run")
    monkeypatch.setenv("DRIFTWARDEN_FORMAT", "json")
    monkeypatch.setenv("DRIFTWARDEN_METRICS_PORT", "1234")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/else")
    assert reference.cli_reference("validate") + reference.cli_reference("run") == before
    assert "~/.cache/driftwarden" in before


def test_yaml_manifest_examples_in_the_readme_are_valid(tmp_path):
    """The Cluster and Deployment examples validate together, as a user would copy them."""
    examples = [body for info, body in fenced_blocks(README.read_text())
                if info in ("yaml", "yml") and "apiVersion: driftwarden/v1" in body]
    assert len(examples) >= 2
    for number, body in enumerate(examples):
        (tmp_path / f"example-{number}.yaml").write_text(body + "\n")
    result = validate_paths([tmp_path], cache_dir=None)
    assert result.valid, [str(e) for e in result.errors]
    assert dict(result.declared) == {"Cluster": 1, "Deployment": 1}
