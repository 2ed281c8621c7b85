"""`driftwarden validate` and `driftwarden schema` as users and CI run them: the real console script.

Exit codes, output formats and environment variables are the contract in PRODUCT.md; these
tests run the installed `driftwarden` executable in a subprocess, so the entry point,
argument parsing and output are checked end to end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from driftwarden.manifests.validation import validate_paths

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "manifests"
CORPUS = Path(__file__).parent / "corpus"

PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning): .+$")
ANNOTATION = re.compile(
    r"^::(?P<level>error|warning) file=(?P<file>[^,]*),line=(?P<line>\d+),col=(?P<col>\d+),title=(?P<title>[^:,]*)::(?P<message>.*)$"
)

CLUSTER = """\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: {name}
spec:
  account:
    id: "{account}"
    externalId: dw-{name}-2b81c4
  region: {region}
"""


def executable() -> str:
    beside = Path(sys.executable).parent / "driftwarden"
    found = str(beside) if beside.exists() else shutil.which("driftwarden")
    assert found, "the driftwarden console script is not installed"
    return found


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, cache: Path | None = None):
    """Run the console script with a private cache and no DRIFTWARDEN_* settings from outside."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWARDEN_")}
    # /dev/null/... can never be created: a run that forgot --no-cache writes no cache anywhere.
    environment["XDG_CACHE_HOME"] = str(cache) if cache else "/dev/null/driftwarden-cache"
    environment.update(env or {})
    return subprocess.run(
        [executable(), *args], cwd=cwd or ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A manifest tree with two errors in two files and one warning."""
    root = tmp_path / "manifests"
    root.mkdir()
    (root / "a.yaml").write_text(
        "apiVersion: driftwarden/v0\nkind: Cluster\nmetadata: {name: old}\nspec: {}\n"  # error at 1:1
    )
    (root / "b.yaml").write_text(CLUSTER.format(name="prod-euw9", account="742096158823", region="eu-west-9"))
    (root / "c.yaml").write_text(CLUSTER.format(name="prod-afs1", account="742096158823", region="af-south-1"))
    return root


def test_valid_examples_exit_0_with_a_summary(tmp_path):
    """The shipped examples validate through the CLI: exit 0 and a summary naming the objects."""
    done = run("validate", "manifests/", "--no-cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["valid: 6 files, 3 Clusters, 3 Deployments"]
    assert done.stderr == ""


def test_invalid_manifests_exit_1_with_one_line_per_problem_and_a_summary(broken):
    """Invalid manifests exit 1; text output is one line per problem (file:line:col) then a summary."""
    done = run("validate", str(broken), "--no-cache")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    problems = [PROBLEM_LINE.match(line) for line in lines[:-1]]
    assert all(problems), lines
    assert [(Path(m["file"]).name, m["line"], m["severity"]) for m in problems] == [
        ("a.yaml", "1", "error"),
        ("b.yaml", "9", "error"),
        ("c.yaml", "9", "warning"),
    ]
    assert lines[-1] == "invalid: 2 errors, 1 warning in 3 files (2 Clusters, 0 Deployments)"


def test_warnings_alone_keep_exit_code_0(tmp_path):
    """A revision with only warnings is valid: exit 0, the warning shown, the summary counts it."""
    (tmp_path / "c.yaml").write_text(CLUSTER.format(name="prod-afs1", account="742096158823", region="af-south-1"))
    done = run("validate", str(tmp_path), "--no-cache")
    assert done.returncode == 0
    first, summary = done.stdout.splitlines()
    assert ": warning: Cluster/prod-afs1 /spec/region: af-south-1 is an opt-in region" in first
    assert summary == "valid: 1 file, 1 Cluster, 0 Deployments, 1 warning"


@pytest.mark.parametrize("case", sorted((CORPUS / "warnings").iterdir()), ids=lambda p: p.name)
def test_every_warnings_case_exits_0(case):
    """Each warning of the corpus is printed as a warning and leaves the exit code at 0."""
    done = run("validate", str(case), "--no-cache")
    assert done.returncode == 0, done.stdout
    assert ": warning: " in done.stdout
    assert ": error: " not in done.stdout


def test_missing_path_is_a_usage_error(tmp_path):
    """A path that does not exist exits 2 and says which path, printing no report."""
    done = run("validate", str(tmp_path / "nope"), "--no-cache")
    assert done.returncode == 2
    assert str(tmp_path / "nope") in done.stderr
    assert done.stdout == ""


def test_unknown_option_is_a_usage_error():
    """An unknown option exits 2 with a usage message on stderr."""
    done = run("validate", "--frobnicate", "manifests/")
    assert done.returncode == 2
    assert "unrecognized arguments: --frobnicate" in done.stderr
    assert done.stdout == ""


def test_unknown_format_is_a_usage_error():
    """A format outside text|json|github exits 2."""
    done = run("validate", "--format", "xml", "manifests/", "--no-cache")
    assert done.returncode == 2
    assert "invalid choice: 'xml'" in done.stderr


def test_json_output_has_exactly_the_contract_shape(broken):
    """--format json prints the PRODUCT.md document: valid, files, objects, errors and warnings, lines 1-based."""
    done = run("validate", str(broken), "--format", "json", "--no-cache")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert set(report) == {"valid", "files", "objects", "errors", "warnings"}
    assert report["valid"] is False
    assert report["files"] == 3
    # A document of another apiVersion is not counted as a driftwarden object.
    assert report["objects"] == {"Cluster": 2, "Deployment": 0}
    fields = {"file", "line", "column", "pointer", "kind", "name", "message", "rule"}
    for problem in report["errors"] + report["warnings"]:
        assert set(problem) == fields
    first, second = report["errors"]
    assert (Path(first["file"]).name, first["line"], first["column"]) == ("a.yaml", 1, 1)
    assert (first["pointer"], first["kind"], first["name"], first["rule"]) == (
        "/apiVersion",
        "Cluster",
        "old",
        "manifest.api-version",
    )
    assert (Path(second["file"]).name, second["line"], second["column"]) == ("b.yaml", 9, 3)
    assert (second["pointer"], second["name"], second["rule"]) == ("/spec/region", "prod-euw9", "schema.enum")
    assert "'eu-west-9' is not allowed" in second["message"]
    (warning,) = report["warnings"]
    assert (Path(warning["file"]).name, warning["line"], warning["rule"]) == ("c.yaml", 9, "cluster.opt-in-region")


def test_json_output_of_the_examples_is_valid_and_empty():
    """The examples in JSON: valid true, every file counted, no errors and no warnings."""
    done = run("validate", "manifests/", "--format", "json", "--no-cache")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {
        "valid": True,
        "files": 6,
        "objects": {"Cluster": 3, "Deployment": 3},
        "errors": [],
        "warnings": [],
    }


def test_format_can_come_from_the_environment(broken):
    """DRIFTWARDEN_FORMAT=json selects JSON output; a --format flag still wins over it."""
    from_env = run("validate", str(broken), "--no-cache", env={"DRIFTWARDEN_FORMAT": "json"})
    assert json.loads(from_env.stdout)["valid"] is False
    flag_wins = run("validate", str(broken), "--no-cache", "--format", "text", env={"DRIFTWARDEN_FORMAT": "json"})
    assert flag_wins.stdout.splitlines()[-1].startswith("invalid: 2 errors")


def test_github_format_prints_escaped_workflow_annotations(tmp_path):
    """--format github prints one ::error/::warning line per problem with %, comma and colon escaped."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "prod,eu:1.yaml").write_text(CLUSTER.format(name="prod-euw9", account="742096158823", region="eu-west-9%"))
    (root / "afs.yaml").write_text(CLUSTER.format(name="prod-afs1", account="742096158823", region="af-south-1"))
    (root / "two\nlines.yaml").write_text("apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: half}\n")
    done = run("validate", ".", "--format", "github", "--no-cache", cwd=root)
    assert done.returncode == 1
    *annotations, summary = done.stdout.splitlines()
    matches = [ANNOTATION.match(line) for line in annotations]
    assert all(matches), annotations
    error, newline, warning = sorted(matches, key=lambda m: (m["level"], m["file"]))
    assert (newline["file"], newline["line"], newline["title"]) == ("two%0Alines.yaml", "1", "driftwarden schema.required")
    assert (error["level"], error["file"], error["line"], error["col"]) == ("error", "prod%2Ceu%3A1.yaml", "9", "3")
    assert error["title"] == "driftwarden schema.enum"
    assert error["message"].startswith("Cluster/prod-euw9 /spec/region: 'eu-west-9%25' is not allowed")
    assert "%" not in error["message"].replace("%25", "")
    assert (warning["level"], warning["file"], warning["line"]) == ("warning", "afs.yaml", "9")
    assert summary == "invalid: 2 errors, 1 warning in 3 files (3 Clusters, 0 Deployments)"


def test_schema_command_prints_the_cluster_schema():
    """`driftwarden schema cluster` prints the Cluster JSON Schema, identified by its $id."""
    done = run("schema", "cluster")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["$id"].endswith("/cluster.schema.json")
    assert schema["properties"]["kind"]["const"] == "Cluster"


def test_schema_command_refuses_an_unknown_kind():
    """`driftwarden schema` with a kind it does not ship exits 2."""
    done = run("schema", "workspace")
    assert done.returncode == 2


# --- the cache ------------------------------------------------------------------------------------


def test_cached_run_reports_the_same_result(broken, tmp_path):
    """A second CLI run over unchanged files prints exactly what the first printed."""
    cache = tmp_path / "cache"
    first = run("validate", str(broken), "--format", "json", cache=cache)
    assert list((cache / "driftwarden").glob("validate-*.pickle")), "the first run writes the cache"
    second = run("validate", str(broken), "--format", "json", cache=cache)
    assert (second.returncode, second.stdout) == (first.returncode, first.stdout)


def test_editing_one_file_invalidates_only_that_file(tmp_path):
    """Unchanged files come from the cache; an edited file is checked again and its new verdict shown."""
    root = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, root)
    cache = tmp_path / "cache"
    cold = validate_paths([root], cache_dir=cache)
    assert (cold.cached_files, cold.valid) == (0, True)
    warm = validate_paths([root], cache_dir=cache)
    assert warm.cached_files == len(warm.files) == 6
    assert (warm.problems, warm.clusters, warm.deployments) == (cold.problems, cold.clusters, cold.deployments)

    dev = root / "clusters" / "dev-use1.yaml"
    dev.write_text(dev.read_text() + "  region: eu-west-9\n")
    edited = validate_paths([root], cache_dir=cache)
    assert edited.cached_files == 5
    assert [(Path(p.file).name, p.rule) for p in edited.errors][:1] == [("dev-use1.yaml", "schema.enum")]
    assert not edited.valid


def test_pre_commit_hook_runs_the_validator_on_the_manifests():
    """The hook in .pre-commit-hooks.yaml names the real command, and that command validates manifests/."""
    import shlex

    from ruamel.yaml import YAML

    repo = Path(__file__).resolve().parent.parent
    (hook,) = YAML(typ="safe").load((repo / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "driftwarden-validate" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    entry = shlex.split(hook["entry"])
    assert entry[0] == "driftwarden"
    binary = Path(sys.executable).parent / "driftwarden"
    done = subprocess.run([str(binary), *entry[1:], *hook["args"], "--no-cache"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("valid: 6 files")
