"""Hostile manifests: every file that used to crash or overrun is a positioned error for that file.

Each crashing case runs `driftwarden validate` in a child process, so a segfault of the C
parser fails the test instead of killing pytest. The cases were found by trying the loader as
an attacker would: deep block nesting killed the process (SIGSEGV), huge numbers raised from
inside jsonschema, a deep directory tree raised RecursionError, a control character in a tag
passed validation and broke apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftwarden.manifests.discovery import Limits, discover
from driftwarden.manifests.loader import depth_bound, load_bytes
from driftwarden.manifests.validation import validate_documents, validate_paths

CLUSTER = """\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: prod-use1
spec:
  account:
    id: "742096158823"
    externalId: dw-prod-use1-91d0e2
"""


def validate_in_child(tmp_path: Path, name: str, text: str) -> tuple[int, dict]:
    """`driftwarden validate --format json` on one file, in its own process."""
    (tmp_path / name).write_text(text)
    run = subprocess.run(
        [sys.executable, "-m", "driftwarden.cli.main", "validate", "--format", "json", "--cache-dir", str(tmp_path / ".cache"), name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, f"exit {run.returncode}: {run.stderr[-2000:]}"
    return run.returncode, json.loads(run.stdout)


# (text, rule, line). Before the pre-scan, "crashed" cases killed the process (SIGSEGV), the
# hex integer raised ValueError from inside jsonschema, the decimal one quoted all its digits
# in a yaml.scalar error, the float and long scalar reached the schema; the rest were caught
# after composing (one line later for indented mappings) and keep every construct covered.
HOSTILE = {
    "block-sequences": ("- " * 30000 + "x\n", "yaml.too-deep", 1),  # crashed
    "explicit-keys": ("? " * 30000 + "x\n", "yaml.too-deep", 1),  # crashed
    "sequences-of-mappings": ("- ? " * 15000 + "x\n", "yaml.too-deep", 1),  # crashed
    "block-then-flow": ("- " * 29000 + "[[x]]\n", "yaml.too-deep", 1),  # crashed
    "alias-under-deep-block": ("a: &x y\nb:\n" + "- " * 29000 + "*x\n", "yaml.too-deep", 3),  # crashed
    "indented-mappings": ("".join(" " * i + "a:\n" for i in range(1400)) + " " * 1400 + "a: 1\n", "yaml.too-deep", 65),
    "indented-compact-mappings": ("\n".join("  " * i + "- a:" for i in range(100)) + " 1\n", "yaml.too-deep", 33),
    "flow": ("[" * 100000 + "]" * 100000 + "\n", "yaml.too-deep", 1),
    "flow-in-block": ("- " * 5000 + "[{a: " * 1000 + "x" + "}]" * 1000 + "\n", "yaml.too-deep", 1),
    "anchored-flow": ("a: &x " + "[" * 70 + "]" * 70 + "\nb: *x\n", "yaml.too-deep", 1),
    "hex-integer": (CLUSTER + "  nodePools:\n    - name: default\n      minNodeCount: 0x" + "f" * 20000 + "\n",
                    "yaml.number-too-large", 11),
    "decimal-integer": (CLUSTER + "  nodePools:\n    - name: default\n      minNodeCount: " + "9" * 5000 + "\n",
                        "yaml.number-too-large", 11),
    "float-exponent": (CLUSTER + "  nodePools:\n    - name: default\n      minNodeCount: 1e99999\n",
                       "yaml.number-too-large", 11),
    "long-scalar": (CLUSTER + "  region: " + "x" * 200_000 + "\n", "yaml.scalar-too-long", 9),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_a_positioned_error_not_a_crash(tmp_path, case):
    """Deep nesting of every construct, huge numbers and long scalars give one positioned error; validate exits 1."""
    text, rule, line = HOSTILE[case]
    _code, report = validate_in_child(tmp_path, "zz.yaml", text)
    assert report["valid"] is False
    (error,) = report["errors"]
    assert (error["file"], error["rule"], error["line"]) == ("zz.yaml", rule, line), error
    assert len(error["message"]) < 300  # a hostile value is not echoed whole


def test_nesting_within_the_limit_still_loads():
    """Nesting up to the depth limit, block and flow, still loads as data."""
    limits = Limits()
    block = "".join("  " * i + "a:\n" for i in range(limits.max_depth - 1)) + "  " * (limits.max_depth - 1) + "a: 1\n"
    flow = "a: " + "[" * (limits.max_depth - 1) + "]" * (limits.max_depth - 1) + "\n"
    for text in (block, flow):
        result = load_bytes(text.encode(), "m.yaml")
        assert result.problems == () and len(result.documents) == 1


def test_integers_up_to_64_bits_still_load():
    """The largest signed 64-bit integer, in any base, loads; one more is refused."""
    result = load_bytes(b"a: 9223372036854775807\nb: -0x7fffffffffffffff\nc: 0x" + b"0" * 200 + b"1\n", "m.yaml")
    assert result.problems == ()
    assert result.documents[0].data == {"a": 2**63 - 1, "b": -(2**63 - 1), "c": 1}
    (problem,) = load_bytes(b"a: 9223372036854775808\n", "m.yaml").problems
    assert problem.rule == "yaml.number-too-large"


def test_depth_bound_is_small_for_ordinary_manifests():
    """Ordinary manifests (the shipped examples) stay under the bound that triggers the event scan."""
    examples = sorted((Path(__file__).parent.parent / "manifests").rglob("*.yaml"))
    assert examples
    for path in examples:
        assert depth_bound(path.read_text()) <= Limits().max_depth, path


def test_deep_directory_tree_is_walked_without_recursion(tmp_path):
    """A directory nested 1,100 deep is walked (no RecursionError) and its manifest found."""
    # Built with relative paths one level at a time: the absolute path exceeds PATH_MAX.
    script = (
        "import os\n"
        "for _ in range(1100):\n"
        "    os.mkdir('d'); os.chdir('d')\n"
        "open('m.yaml', 'w').write('a: 1\\n')\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    # Removed by hand as well: the recursive clean-up of tmp_path would hit the same limit.
    remove = (
        "import os\n"
        "for _ in range(1100):\n"
        "    os.chdir('d')\n"
        "os.remove('m.yaml')\n"
        "for _ in range(1100):\n"
        "    os.chdir('..'); os.rmdir('d')\n"
    )
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        files, problems = discover(["d"])
    finally:
        os.chdir(previous)
        subprocess.run([sys.executable, "-c", remove], cwd=tmp_path, check=True)
    assert problems == []
    assert [display.count("/") for _real, display in files] == [1100]


def test_too_many_files_make_the_revision_invalid(tmp_path):
    """More files than the per-revision limit is an error naming the limit, and the walk stops."""
    for i in range(12):
        (tmp_path / f"m{i:02}.yaml").write_text("a: 1\n")
    limits = Limits(max_files_per_revision=10)
    files, problems = discover([tmp_path], limits)
    assert len(files) == 11
    (problem,) = problems
    assert problem.rule == "revision.too-many-files" and "10" in problem.message
    result = validate_paths([tmp_path], limits=limits, cache_dir=tmp_path / ".cache")
    assert not result.valid and "revision.too-many-files" in {p.rule for p in result.errors}
    in_memory = validate_documents([(f"m{i}.yaml", b"a: 1\n") for i in range(12)], limits=limits)
    assert [p.rule for p in in_memory.errors if p.rule.startswith("revision.")] == ["revision.too-many-files"]
    assert {p.file for p in in_memory.errors if p.rule.startswith("manifest.")} == {f"m{i}.yaml" for i in range(10)}


def test_too_many_bytes_make_the_revision_invalid(tmp_path):
    """Files that together exceed the per-revision byte limit make the revision invalid at the file that crosses it."""
    for i in range(4):
        (tmp_path / f"m{i}.yaml").write_text(f"a{i}: 1\n" + "# padding\n" * 100)
    limits = Limits(max_revision_bytes=2500)
    result = validate_paths([tmp_path], limits=limits, cache_dir=tmp_path / ".cache")
    (problem,) = [p for p in result.errors if p.rule == "revision.too-large"]
    assert problem.file.endswith("m2.yaml") and "2500" in problem.message
    in_memory = validate_documents([(f"m{i}.yaml", b"# padding\n" * 100) for i in range(4)], limits=limits)
    assert [(p.file, p.rule) for p in in_memory.errors] == [("m2.yaml", "revision.too-large")]


def test_in_memory_files_over_the_size_limit_are_refused():
    """A source's in-memory file over the per-file limit is refused like one read from disk."""
    result = validate_documents([("big.yaml", b"a: 1\n" * 100)], limits=Limits(max_file_bytes=100))
    assert [(p.file, p.rule) for p in result.errors] == [("big.yaml", "file.too-large")]


def test_control_characters_in_tag_keys_are_refused():
    """A tag key holding a control character is a schema error on that key (AWS refuses it)."""
    text = CLUSTER + '  tags:\n    "team\\u0007": data\n'
    result = validate_documents([("c.yaml", text.encode())])
    (problem,) = result.errors
    assert (problem.line, problem.rule, problem.pointer) == (10, "schema.key", "/spec/tags/team\x07")


def test_a_check_that_fails_unexpectedly_is_an_error_of_its_file(monkeypatch):
    """An exception inside the per-file checks becomes an error naming the file and the exception."""
    from driftwarden.manifests import validation

    def broken(*_args, **_kwargs):
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    monkeypatch.setattr(validation, "check_document", broken)
    result = validate_documents([("c.yaml", CLUSTER.encode())])
    (problem,) = result.errors
    assert (problem.file, problem.line, problem.rule) == ("c.yaml", 1, "file.check-failed")
    assert "ValueError" in problem.message


def test_an_explicitly_tagged_empty_integer_is_a_scalar_error():
    """`!!int` on an empty value (found by the fuzzer: IndexError) is a positioned scalar error."""
    (problem,) = load_bytes(b"a: !!int\nb: 1\n", "m.yaml").problems
    assert (problem.rule, problem.line, problem.column) == ("yaml.scalar", 1, 4)


def test_an_empty_value_where_text_is_expected_is_a_schema_error():
    """An empty label value (found by the fuzzer: IndexError while wording the message) is a type error at its line."""
    text = CLUSTER.replace("  name: prod-use1\n", "  name: prod-use1\n  labels:\n    team:\n")
    result = validate_documents([("c.yaml", text.encode())])
    (problem,) = result.errors
    assert (problem.line, problem.rule, problem.pointer) == (6, "schema.type", "/metadata/labels/team")
    assert "got null" in problem.message


def test_flow_sequences_of_single_pairs_are_counted_twice_by_the_depth_bound():
    """`[? [? ...` nests a mapping inside every flow sequence (found by the fuzzer), so the bound allows two levels per "["."""
    text = "? [? [? [? [? [? [? [x\n"
    assert depth_bound(text) >= 14
    deep_pairs = "[a: " * 40 + "x" + "]" * 40 + "\n"
    (problem,) = load_bytes(deep_pairs.encode(), "m.yaml").problems
    assert problem.rule == "yaml.too-deep"
