"""Validation: every rule has a corpus case with its exact file, line, pointer and rule.

The corpus lives in `tests/corpus/`:

* `invalid/` one case per rule that makes a revision invalid,
* `warnings/` one case per rule that only warns (the revision stays valid),
* `valid/` cases that look suspicious but must not be flagged.

A case is one YAML file or a directory of them. What it must report is written next to the
offending line as a comment, so that the expected line is the line the comment stands on:

    region: eu-west-9  # expect: schema.enum /spec/region | is not allowed

`# expect-warning:` marks a warning; a pointer of `-` means the empty pointer (the whole
document); after `|` comes a fragment the message must contain.
A case reports exactly the problems its markers name, no more and no fewer.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftwarden.manifests.problems import Problem
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.validation import validate_documents, validate_paths

CORPUS = Path(__file__).parent / "corpus"
PACKAGE = Path(__file__).parent.parent / "daemon" / "driftwarden"
EXAMPLES = Path(__file__).parent.parent / "manifests"

MARKER = re.compile(
    r"#\s*expect(?P<warning>-warning)?:\s*(?P<rule>\S+)\s+(?P<pointer>\S+)(?:\s*\|\s*(?P<message>.*?))?\s*$"
)
# Rules that validation.py or rules.py defines but the shipped schemas make unreachable: the schema
# rejects the document first (nodePools has maxItems 11), so the cross-manifest check
# never sees it. Listed so that a new unreachable rule is a deliberate decision.
UNREACHABLE_RULES = {"cluster.node-pool-count"}


@dataclass(frozen=True)
class Expected:
    file: str
    line: int
    pointer: str
    rule: str
    severity: str
    message: str

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        return (self.file, self.line, self.pointer, self.rule, self.severity)


def case_files(case: Path) -> list[Path]:
    if case.is_file():
        return [case]
    return sorted(p for p in case.rglob("*") if p.suffix in (".yaml", ".yml"))


def expectations(case: Path) -> list[Expected]:
    base = case.parent if case.is_file() else case
    found = []
    for path in case_files(case):
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = MARKER.search(text)
            if match is None:
                continue
            pointer = "" if match["pointer"] == "-" else match["pointer"]
            severity = "warning" if match["warning"] else "error"
            found.append(
                Expected(
                    str(path.relative_to(base)), number, pointer, match["rule"], severity, match["message"] or ""
                )
            )
    return found


def validate_case(case: Path, monkeypatch: pytest.MonkeyPatch):
    """Validate a case from inside its folder, so file names in messages are short and stable."""
    if case.is_file():
        monkeypatch.chdir(case.parent)
        return validate_paths([case.name])
    monkeypatch.chdir(case)
    return validate_paths(["."])


def corpus_cases():
    for group in ("invalid", "warnings", "valid"):
        for case in sorted((CORPUS / group).iterdir()):
            yield pytest.param(group, case, id=f"{group}/{case.name}")


@pytest.mark.parametrize(("group", "case"), list(corpus_cases()))
def test_corpus_case_reports_exactly_its_expected_problems(group, case, monkeypatch):
    """Each corpus case reports exactly the problems its markers name, at their file, line and pointer."""
    expected = expectations(case)
    result = validate_case(case, monkeypatch)
    got = sorted((p.file, p.line, p.pointer, p.rule, p.severity) for p in result.problems)
    assert got == sorted(e.key for e in expected), "\n".join(str(p) for p in result.problems)
    by_key = {(p.file, p.line, p.pointer, p.rule, p.severity): p for p in result.problems}
    for item in expected:
        assert item.message in by_key[item.key].message
    if group == "invalid":
        assert any(e.severity == "error" for e in expected), "an invalid case must expect an error"
        assert not result.valid
    else:
        assert result.valid
        assert all(e.severity == "warning" for e in expected)
        if group == "warnings":
            assert expected, "a warnings case must expect a warning"
        # Nothing flagged means every declared object was built.
        assert len(result.clusters) == result.declared.get("Cluster", 0)
        assert len(result.deployments) == result.declared.get("Deployment", 0)


def test_every_problem_carries_kind_and_name_of_its_object(monkeypatch):
    """Problems found in a manifest name the kind and metadata.name of the object they concern."""
    result = validate_case(CORPUS / "invalid" / "schema-region-enum.yaml", monkeypatch)
    (problem,) = result.problems
    assert (problem.kind, problem.name, problem.column) == ("Cluster", "prod-euc1", 3)


def test_every_rule_of_the_validator_has_a_corpus_case():
    """Each rule id that validation.py, rules.py or astro.py can report appears in some corpus marker."""
    source = "".join((PACKAGE / "manifests" / name).read_text() for name in ("validation.py", "rules.py", "astro.py"))
    rules = set(re.findall(r'"((?:cluster|deployment|manifest|secret)\.[a-z-]+)"', source))
    assert len(rules) > 10  # the scan itself works
    covered = {e.rule for group in ("invalid", "warnings") for case in (CORPUS / group).iterdir() for e in expectations(case)}
    assert rules - UNREACHABLE_RULES - covered == set()
    assert rules >= UNREACHABLE_RULES


# --- all of it at once, and hostile input --------------------------------------------------------


def test_every_error_of_every_file_is_reported_in_one_run(tmp_path):
    """A directory with three broken files yields errors from all three files in one run."""
    (tmp_path / "a.yaml").write_bytes((CORPUS / "invalid" / "schema-region-enum.yaml").read_bytes())
    (tmp_path / "b.yaml").write_bytes((CORPUS / "invalid" / "cluster-cidr-public.yaml").read_bytes())
    (tmp_path / "c.yaml").write_bytes(
        (CORPUS / "invalid" / "schema-account-id-unquoted.yaml").read_bytes().replace(b"dev-use1", b"dev-use2")
    )
    result = validate_paths([tmp_path])
    assert len(result.errors) >= 3
    assert {Path(p.file).name for p in result.errors} == {"a.yaml", "b.yaml", "c.yaml"}
    assert result.files == tuple(str(tmp_path / n) for n in ("a.yaml", "b.yaml", "c.yaml"))


VALID_CLUSTER = b"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: dev-use1
spec:
  account:
    id: "111111111111"
    externalId: dw-dev-use1-2b81c4
"""


def test_hostile_files_each_get_one_error_and_the_rest_still_validates(tmp_path):
    """An alias bomb, a 2 MiB file, a binary file and an escaping symlink each give one error; a good file still loads."""
    root = tmp_path / "manifests"
    root.mkdir()
    (root / "good.yaml").write_bytes(VALID_CLUSTER)
    bomb = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (root / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    (root / "huge.yaml").write_bytes(b"# padding\n" * (2 * 1024 * 1024 // 10 + 1))
    (root / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(64))
    secret = tmp_path / "outside.yaml"
    secret.write_bytes(VALID_CLUSTER.replace(b"dev-use1", b"stolen"))
    (root / "escape.yaml").symlink_to(secret)

    result = validate_paths([root])

    rules = {Path(p.file).name: p.rule for p in result.problems}
    assert rules == {
        "bomb.yaml": "yaml.alias-bomb",
        "huge.yaml": "file.too-large",
        "binary.yaml": "file.binary",
        "escape.yaml": "path.symlink-escape",
    }
    assert len(result.problems) == 4
    assert [c.name for c in result.clusters] == ["dev-use1"]


# --- Astro CLI deployment files -----------------------------------------------------------------

ASTRO_FILE = """\
deployment:
  configuration:
    name: Reporting Dev
    description: Daily business reports.
    cluster_name: dev-use1
    workspace_name: analytics
    runtime_version: 12.1.0
    executor: CeleryExecutor
    scheduler_au: 10
    scheduler_count: 2
    dag_deploy_enabled: false
    ci_cd_enforcement: true
    scheduler_size: small
  worker_queues:
    - name: default
      worker_type: m5.xlarge
      min_worker_count: 1
      max_worker_count: 8
      worker_concurrency: 12
  environment_variables:
    - key: REPORT_BUCKET
      value: acme-dev-reports
      is_secret: false
    - key: EMPTY
      value:
    - key: SMTP_PASSWORD
      is_secret: true
      value: ""
      value_from:
        ssmParameter: /dev/reporting/smtp-password
  alert_emails:
    - reporting-dev@example.com
  metadata:
    deployment_id: clx0abc
"""


def test_astro_deployment_file_becomes_the_same_deployment_model(tmp_path):
    """An Astro CLI deployment file is read as a Deployment with every setting carried over."""
    (tmp_path / "cluster.yaml").write_bytes(VALID_CLUSTER)
    (tmp_path / "reporting.yaml").write_text(ASTRO_FILE)
    result = validate_paths([tmp_path])
    assert result.problems == ()
    assert result.declared == {"Cluster": 1, "Deployment": 1}
    (deployment,) = result.deployments
    assert deployment.name == "reporting-dev"
    assert (deployment.cluster, deployment.workspace, deployment.description) == (
        "dev-use1",
        "analytics",
        "Daily business reports.",
    )
    assert (deployment.runtime_version, deployment.executor) == ("12.1.0", "CELERY")
    assert (deployment.scheduler.au, deployment.scheduler.replicas) == (10, 2)
    assert (deployment.dag_deploy_enabled, deployment.ci_cd_enforced) == (False, True)
    (queue,) = deployment.worker_queues
    assert (queue.name, queue.worker_type, queue.min_worker_count, queue.max_worker_count, queue.worker_concurrency) == (
        "default",
        "m5.xlarge",
        1,
        8,
        12,
    )
    plain, empty, secret = deployment.environment_variables
    assert (plain.key, plain.value, plain.is_secret) == ("REPORT_BUCKET", "acme-dev-reports", False)
    assert (empty.key, empty.value) == ("EMPTY", "")
    assert (secret.key, secret.value, secret.is_secret) == ("SMTP_PASSWORD", None, True)
    assert (secret.secret.kind, secret.secret.ref) == ("ssmParameter", "/dev/reporting/smtp-password")
    assert deployment.alert_emails == ("reporting-dev@example.com",)
    assert deployment.origin is not None and deployment.origin.file == str(tmp_path / "reporting.yaml")


def test_astro_file_with_schema_errors_is_reported_in_its_own_terms(tmp_path):
    """A schema error in an Astro file names the Astro field, its line and the derived Deployment name."""
    (tmp_path / "cluster.yaml").write_bytes(VALID_CLUSTER)
    (tmp_path / "reporting.yaml").write_text(ASTRO_FILE.replace("scheduler_au: 10", "scheduler_au: 40"))
    result = validate_paths([tmp_path])
    (problem,) = result.problems
    assert (problem.line, problem.pointer, problem.rule) == (9, "/deployment/configuration/scheduler_au", "schema.maximum")
    assert (problem.kind, problem.name) == ("Deployment", "reporting-dev")


# --- the examples shipped in manifests/ ---------------------------------------------------------


def test_every_example_manifest_is_valid():
    """Every example under manifests/ validates without errors or warnings and builds every object."""
    result = validate_paths([EXAMPLES])
    assert result.problems == (), "\n".join(str(p) for p in result.problems)
    assert len(result.files) == len(list(EXAMPLES.rglob("*.yaml"))) + len(list(EXAMPLES.rglob("*.yml")))
    assert result.declared == {"Cluster": 3, "Deployment": 3}
    assert len(result.clusters) == 3
    assert len(result.deployments) == 3
    assert "reporting" in {d.name for d in result.deployments}  # the Astro CLI file


# --- the result is one value, built once ---------------------------------------------------------


def test_a_validation_result_cannot_be_changed_once_built(tmp_path):
    """Assigning to a result's field fails and its sequences are tuples, so no reader can change what another sees."""
    (tmp_path / "cluster.yaml").write_bytes(VALID_CLUSTER)
    result = validate_paths([tmp_path])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.problems = ()
    assert [type(v) for v in (result.files, result.clusters, result.deployments, result.problems)] == [tuple] * 4
    assert len(result.clusters) == 1


def test_a_result_keeps_its_own_copy_of_what_it_was_built_from():
    """Changing the list and the counts a result was built from afterwards leaves the result as it was."""
    broken = Problem.error("a.yaml", "manifest.kind", "kind missing")
    problems, declared = [broken], {"Cluster": 1}
    result = ValidationResult(["a.yaml"], [], [], problems, declared, 0)
    problems.append(Problem.warning("b.yaml", "yaml.no-documents", "file contains no YAML documents"))
    declared["Cluster"] = 5
    assert (result.problems, result.declared, result.valid) == ((broken,), {"Cluster": 1}, False)


def test_problems_the_source_found_count_like_validations_own():
    """Problems a source hands in join the result sorted among validation's own, and an error among them makes it invalid."""
    symlink = Problem.error("manifests/link.yaml", "path.symlink", "symlinks are not followed in Git sources")
    good = validate_documents([("manifests/cluster.yaml", VALID_CLUSTER)])
    assert good.valid and good.problems == ()
    result = validate_documents(
        [("manifests/cluster.yaml", VALID_CLUSTER), ("manifests/a.yaml", b"kind: Cluster\n")], problems=[symlink]
    )
    assert [(p.file, p.rule) for p in result.problems] == [
        ("manifests/a.yaml", "manifest.api-version"),
        ("manifests/link.yaml", "path.symlink"),
    ]
    assert not result.valid
    assert result.files == ("manifests/cluster.yaml", "manifests/a.yaml")
    assert [c.name for c in result.clusters] == ["dev-use1"]
