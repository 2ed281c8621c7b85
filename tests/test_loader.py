"""The loader: positions for every node, and hostile or broken YAML turned into precise problems."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from driftwarden.manifests.discovery import Limits, discover
from driftwarden.manifests.loader import load_bytes, load_file


def only_problem(source: bytes, limits: Limits = Limits()):
    result = load_bytes(source, "m.yaml", limits)
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def test_positions_point_at_keys_and_items():
    """Every mapping entry is located at its key and every list item at its item, 1-based."""
    result = load_bytes(b"a: 1\nb:\n  - x\n  - {c: 2}\n", "m.yaml")
    (doc,) = result.documents
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}]}
    assert doc.position("/a") == (1, 1)
    assert doc.position("/b") == (2, 1)
    assert doc.position("/b/0") == (3, 5)
    assert doc.position("/b/1/c") == (4, 6)
    # A pointer that does not exist falls back to its nearest ancestor.
    assert doc.position("/b/1/missing") == (4, 5)


def test_several_documents_per_file_keep_their_own_lines():
    """Documents separated by --- are loaded in order with file-absolute lines."""
    result = load_bytes(b"a: 1\n---\nb: 2\n---\nc: 3\n", "m.yaml")
    assert [d.data for d in result.documents] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert [d.position("") for d in result.documents] == [(1, 1), (3, 1), (5, 1)]
    assert [d.index for d in result.documents] == [0, 1, 2]


def test_a_loaded_file_cannot_be_changed_afterwards():
    """What loading a file produced is frozen, with tuples of documents and problems, as the validation cache shares it."""
    result = load_bytes(b"a: 1\n---\n---\nb: 2\n", "m.yaml")
    assert (type(result.documents), type(result.problems)) == (tuple, tuple)
    assert [p.rule for p in result.problems] == ["yaml.empty-document"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.problems = ()


def test_yaml_1_2_scalars_and_raw_text_of_numbers():
    """YAML 1.2 rules apply (yes stays a string) and numbers keep the author's text."""
    (doc,) = load_bytes(b"a: yes\nb: 012345678901\nc: true\nd: 1.5\ne: ~\n", "m.yaml").documents
    assert doc.data == {"a": "yes", "b": 12345678901, "c": True, "d": 1.5, "e": None}
    assert doc.raw_scalars["/b"] == "012345678901"


def test_syntax_error_has_position():
    """An unclosed flow sequence is reported at the line and column where parsing failed."""
    problem = only_problem(b"a: 1\nb: [1, 2\nc: 3\n")
    assert problem.rule == "yaml.syntax"
    assert (problem.line, problem.column) == (3, 2)
    assert "invalid YAML" in problem.message


def test_duplicate_key_names_both_lines():
    """A key given twice is an error at the second one that names the first."""
    problem = only_problem(b"metadata:\n  name: a\n  name: b\n")
    assert problem.rule == "yaml.duplicate-key"
    assert (problem.line, problem.column) == (3, 3)
    assert "first defined at line 2" in problem.message


def test_tab_indentation_is_explained():
    """A tab where YAML expects indentation says so instead of a parser riddle."""
    problem = only_problem(b"spec:\n\tregion: us-east-1\n")
    assert problem.rule == "yaml.syntax"
    assert problem.line == 2
    assert "tab" in problem.message


def test_non_utf8_bytes_are_located():
    """Latin-1 bytes are reported with the line and column of the first bad byte."""
    problem = only_problem(b"a: ok\nb: caf\xe9\n")
    assert problem.rule == "file.encoding"
    assert (problem.line, problem.column) == (2, 7)
    assert "0xe9" in problem.message


def test_binary_file_is_refused():
    """A file with NUL bytes is not parsed as YAML at all."""
    problem = only_problem(b"\x7fELF\x02\x01\x00\x00binary")
    assert problem.rule == "file.binary"


def test_billion_laughs_stops_at_the_node_budget():
    """An alias expansion bomb is refused once it expands past the node budget, quickly."""
    lines = [b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1).encode(), chr(ord("a") + i).encode()
        lines.append(cur + b": &" + cur + b" [" + b", ".join([b"*" + prev] * 9) + b"]")
    problem = only_problem(b"\n".join(lines) + b"\n")
    assert problem.rule == "yaml.alias-bomb"


def test_deep_flow_nesting_does_not_crash_the_parser():
    """Nesting that would overflow libyaml's recursive composer is rejected before composing."""
    problem = only_problem(b"a: " + b"[" * 200_000 + b"]" * 200_000 + b"\n")
    assert problem.rule == "yaml.too-deep"
    assert problem.line == 1


def test_aliases_and_merge_keys_within_budget_work():
    """Ordinary anchors and merge keys resolve, and explicit keys win over merged ones."""
    (doc,) = load_bytes(b"base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "m.yaml").documents
    assert doc.data["m"] == {"x": 1, "y": 3}


def test_empty_documents_are_warnings_not_errors():
    """A stray --- gives a warning; the real document is still loaded."""
    result = load_bytes(b"---\n---\na: 1\n", "m.yaml")
    assert [d.data for d in result.documents] == [{"a": 1}]
    assert [(p.severity, p.rule) for p in result.problems] == [("warning", "yaml.empty-document")]


def test_custom_tags_are_refused():
    """Application-specific YAML tags are not manifest data."""
    problem = only_problem(b"a: !python/object:os.system echo\n")
    assert problem.rule == "yaml.tag"


def test_file_over_the_size_limit_is_not_read(tmp_path: Path):
    """A file larger than the limit is refused from its size alone."""
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * 5000 + b"\n")
    result = load_file(big, "big.yaml", Limits(max_file_bytes=1000))
    assert [p.rule for p in result.problems] == ["file.too-large"]


def test_discover_walks_yaml_files_and_skips_hidden_dirs(tmp_path: Path):
    """Only *.yaml/*.yml files are found, sorted, and hidden directories such as .git are skipped."""
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("a.yaml", "b/c.yml", "b/readme.md", ".git/x.yaml"):
        (tmp_path / name).write_text("a: 1\n")
    files, problems = discover([tmp_path])
    assert problems == []
    assert [Path(display).relative_to(tmp_path).as_posix() for _real, display in files] == ["a.yaml", "b/c.yml"]


def test_symlink_leaving_the_root_is_refused(tmp_path: Path):
    """A manifest symlinked to a file outside the manifest root is an error, not read."""
    root = tmp_path / "repo"
    root.mkdir()
    outside = tmp_path / "secret.yaml"
    outside.write_text("password: hunter2\n")
    os.symlink(outside, root / "evil.yaml")
    (root / "ok.yaml").write_text("a: 1\n")
    files, problems = discover([root])
    assert [Path(d).name for _r, d in files] == ["ok.yaml"]
    assert [p.rule for p in problems] == ["path.symlink-escape"]
    assert "evil.yaml" in problems[0].file


@pytest.mark.parametrize(
    "source",
    [b"", b"# only a comment\n", b"\xef\xbb\xbfa: 1\n", b"a: 'unterminated\n", b"? [a, b]\n: c\n", b"*undefined\n"],
)
def test_odd_inputs_never_raise(source: bytes):
    """Whatever the bytes, loading returns problems or documents and never raises."""
    result = load_bytes(source, "m.yaml")
    assert result.documents or result.problems
