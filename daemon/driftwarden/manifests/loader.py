"""YAML text in, plain documents with a line and column for every node out.

This is the only module that imports ruamel.yaml. It turns every YAML document in a file's
bytes (read and decoded by `discovery.py`) into a `Document`: plain Python data (dict, list,
str, int, float, bool, None) plus a map from JSON pointer to source position, so that every
later error can name file, line and column.

Hostile or broken YAML never crashes or hangs the loader; it becomes a `Problem`: YAML syntax
errors, tabs used for indentation, duplicate keys, alias expansion bombs ("billion laughs"),
nesting deep enough to exhaust the C composer's stack (block or flow, found from libyaml's
iterative event stream before anything is composed), scalars too long to be a manifest value
and integers too large to be a count. Plain scalars resolve by the YAML 1.2 core schema, whose
words, patterns and conversions live in `scalars.py`; here they become ruamel's tag objects.

What it must not do: find or read files (that is `discovery.py`), or know about manifest kinds
or schemas (that is `validation.py`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml.cyaml import CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent, DocumentEndEvent, NodeEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.tag import Tag

from driftwarden.manifests.discovery import (
    Document,
    FileResult,
    Limits,
    decode,
    escape_pointer_token,
    read_bytes,
)
from driftwarden.manifests.problems import Problem
from driftwarden.manifests.scalars import (
    BOOL_WORDS,
    FLOAT_RE,
    INT_RE,
    NON_STRING_STARTS,
    NULL_WORDS,
    SCALAR_CONVERTERS,
    excerpt,
)


def load_bytes(data: bytes, display: str, limits: Limits = Limits()) -> FileResult:
    """Parse one file's bytes into documents and problems. Never raises for bad input."""
    text, problem = decode(data, display)
    if problem is not None:
        return FileResult(display, (), (problem,))
    assert text is not None
    problem = _prescan(text, display, limits)
    if problem is not None:
        return FileResult(display, (), (problem,))
    documents: list[Document] = []
    problems: list[Problem] = []
    try:
        for index, node in enumerate(_compose_all(text)):
            if index >= limits.max_documents_per_file:
                problems.append(
                    Problem.error(
                        display,
                        "yaml.too-many-documents",
                        f"more than {limits.max_documents_per_file} documents in one file",
                    )
                )
                break
            if node is None or _is_empty(node):
                line = node.start_mark.line + 1 if node is not None else 1
                problems.append(
                    Problem.warning(display, "yaml.empty-document", f"document {index + 1} is empty", line=line)
                )
                continue
            # No scalar is longer than the text it comes from (escapes and folding only shrink).
            converter = _Converter(display, limits, check_lengths=len(text) > limits.max_scalar_chars)
            data_value = converter.convert(node, "", 0)
            problems.extend(converter.problems)
            if converter.fatal:
                continue
            documents.append(Document(display, index, data_value, converter.positions, converter.raw_scalars))
    except MarkedYAMLError as exc:
        problems.append(_syntax_problem(exc, display, text))
    except YAMLError as exc:  # unmarked parser errors are rare; still never a crash
        problems.append(Problem.error(display, "yaml.syntax", f"invalid YAML: {exc}"))
    except RecursionError:
        problems.append(
            Problem.error(display, "yaml.too-deep", f"nesting deeper than {limits.max_depth} levels")
        )
    except (ValueError, OverflowError, MemoryError) as exc:
        # libyaml reports some malformed input (an out-of-range escape, a broken marker) as a
        # plain Python error; a bad file still only costs a problem for that file.
        problems.append(Problem.error(display, "yaml.syntax", f"invalid YAML: {type(exc).__name__}: {exc}"))
    if not documents and not problems:
        problems.append(Problem.warning(display, "yaml.no-documents", "file contains no YAML documents"))
    return FileResult(display, tuple(documents), tuple(problems))


def load_file(path: Path, display: str, limits: Limits = Limits()) -> FileResult:
    """Read and parse one file."""
    data, problem = read_bytes(path, display, limits)
    if problem is not None:
        return FileResult(display, (), (problem,))
    assert data is not None
    return load_bytes(data, display, limits)



def _core_tag(name: str) -> Tag:
    return Tag(suffix=f"tag:yaml.org,2002:{name}")


# Shared tag objects: nodes compare them by identity, which is far cheaper than by text.
_TAG_STR, _TAG_INT, _TAG_FLOAT, _TAG_BOOL, _TAG_NULL, _TAG_MERGE, _TAG_SEQ, _TAG_MAP = (
    _core_tag(name) for name in ("str", "int", "float", "bool", "null", "merge", "seq", "map")
)


def _resolve_plain(value: str) -> Tag:
    if not value or value in NULL_WORDS:
        return _TAG_NULL
    if value[0] not in NON_STRING_STARTS:
        return _TAG_STR
    if value in BOOL_WORDS:
        return _TAG_BOOL
    if INT_RE.match(value):
        return _TAG_INT
    if FLOAT_RE.match(value):
        return _TAG_FLOAT
    if value == "<<":
        return _TAG_MERGE
    return _TAG_STR


class _Parser(CParser):  # type: ignore[misc]
    """libyaml's parser and composer, resolving plain scalars by the YAML 1.2 core schema.

    ruamel's own resolver is pure Python and was the largest cost of loading; manifests need
    only the core schema (strings, numbers, booleans, null and merge keys), resolved here.
    """

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)

    # The composer asks these of path-based resolvers, which manifests do not use.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Tag:
        if kind is ScalarNode:
            return _resolve_plain(value) if implicit[0] else _TAG_STR
        if kind is SequenceNode:
            return _TAG_SEQ
        return _TAG_MAP


def _compose_all(text: str) -> Iterator[Node | None]:
    parser = _Parser(text)
    while parser.check_node():
        yield parser.get_node()


# Characters that can stand before the first block collection start of a line: indentation and
# the indicators "- ", "? " and ": " (of complex keys), each followed by a space or tab.
_LEADING_RUN = re.compile(r"^[ \t?:-]*", re.MULTILINE)
# Texts longer than this are always pre-scanned: the bound below would stay small for a
# megabyte of flat entries, and the event scan also caps their node count.
_ALWAYS_PRESCAN_CHARS = 256 * 1024


def depth_bound(text: str) -> int:
    """An upper bound on the nesting depth of any YAML document in `text`, found without parsing.

    A nested block collection starts at a greater column than its parent, except a sequence
    that is a mapping's value, which may share the mapping's column: a chain of n block
    collections ends at column (n - 1) // 2 or further right. Its start is the first entry's
    key or indicator, which only indentation and "- "/"? "/": " indicators can precede on its
    line, so that column is at most the longest such leading run. Flow collections nest only
    inside brackets, and no block collection nests in a flow one: each "{" costs one level, each
    "[" at most two (an entry `a: b` or `? a` in a flow sequence is a mapping of its own).
    Ordinary manifests come out near 30, so almost none pay for the event scan.
    """
    longest = max((len(run) for run in _LEADING_RUN.findall(text)), default=0)
    return 2 * (longest + 1) + 2 * text.count("[") + text.count("{")


def may_nest_deeper(text: str, depth: int) -> bool:
    """Whether `depth_bound(text) > depth`, with one regex search instead of a pass over every line."""
    # 2 * (run + 1) + brackets > depth  <=>  run > (depth - brackets) // 2 - 1
    longest_allowed = (depth - 2 * text.count("[") - text.count("{")) // 2 - 1
    if longest_allowed < 0:
        return True
    return _longer_run(longest_allowed).search(text) is not None


@functools.cache
def _longer_run(length: int) -> re.Pattern[str]:
    return re.compile(rf"^[ \t?:-]{{{length + 1}}}", re.MULTILINE)


def _prescan(text: str, display: str, limits: Limits) -> Problem | None:
    """Reject nesting and node counts the composer must never see, from libyaml's event stream.

    libyaml's composer recurses once per nesting level and kills the process (SIGSEGV) on deep
    enough input, block or flow; its event parser is iterative. So depth and the number of
    nodes are counted from events before anything is composed, for every text whose
    `depth_bound` could exceed the limit or that is large. An alias counts as one node here;
    its expansion is bounded while converting.
    """
    if not may_nest_deeper(text, limits.max_depth) and len(text) <= _ALWAYS_PRESCAN_CHARS:
        return None
    parser = _Parser(text)
    depth = 0
    nodes = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, CollectionEndEvent):
                depth -= 1
                continue
            if isinstance(event, NodeEvent):
                nodes += 1
                if nodes > limits.max_nodes_per_document * 4:
                    return _positioned(
                        display, event, "yaml.too-many-nodes",
                        f"more than {limits.max_nodes_per_document * 4} YAML nodes in one file",
                    )
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    return _positioned(display, event, "yaml.too-deep", f"nesting deeper than {limits.max_depth} levels")
            elif isinstance(event, DocumentEndEvent):
                depth = 0
    except YAMLError:
        return None  # composing stops at the same error and reports it with its position
    return None


def _positioned(display: str, event: Any, rule: str, message: str) -> Problem:
    mark = event.start_mark
    return Problem.error(display, rule, message, line=mark.line + 1, column=mark.column + 1)


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~")


def _syntax_problem(exc: MarkedYAMLError, display: str, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    what = exc.problem or "invalid YAML"
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        what = "tab character found where YAML expects spaces; indent with spaces only"
    elif exc.context:
        what = f"{what} ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            what += f" at line {exc.context_mark.line + 1}"
        what += ")"
    return Problem.error(display, "yaml.syntax", f"invalid YAML: {what}", line=line, column=column)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    if line >= len(lines):
        return ""
    row = lines[line]
    return row[column] if column < len(row) else ""


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


class _Converter:
    """Turns one composed node tree into plain data, recording positions as it goes."""

    def __init__(self, display: str, limits: Limits, *, check_lengths: bool = True) -> None:
        self.display = display
        self.limits = limits
        self.check_lengths = check_lengths
        self.positions: dict[str, tuple[int, int]] = {}
        self.raw_scalars: dict[str, str] = {}
        self.problems: list[Problem] = []
        self.fatal = False
        self._budget = limits.max_nodes_per_document

    def _fail(self, node: Node, rule: str, message: str) -> None:
        self.fatal = True
        self.problems.append(
            Problem.error(
                self.display, rule, message, line=node.start_mark.line + 1, column=node.start_mark.column + 1
            )
        )

    def convert(self, node: Node, pointer: str, depth: int) -> Any:
        if self.fatal:
            return None
        self._budget -= 1
        if self._budget < 0:
            self._fail(
                node,
                "yaml.alias-bomb",
                f"document expands to more than {self.limits.max_nodes_per_document} nodes "
                "(alias expansion bomb?)",
            )
            return None
        if depth > self.limits.max_depth:
            self._fail(node, "yaml.too-deep", f"nesting deeper than {self.limits.max_depth} levels")
            return None
        if pointer not in self.positions:
            self.positions[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, pointer)
        if isinstance(node, SequenceNode):
            return [self.convert(item, f"{pointer}/{i}", depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, pointer, depth)
        self._fail(node, "yaml.unsupported", f"unsupported YAML node {type(node).__name__}")
        return None

    def _mapping(self, node: MappingNode, pointer: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merged: list[MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.ctag is _TAG_MERGE or key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, ScalarNode) or (
                key_node.ctag is not _TAG_STR and key_node.tag != _STR and not self._is_plain_key(key_node)
            ):
                self._fail(key_node, "yaml.key-type", "mapping keys must be plain strings")
                return result
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                self.problems.append(
                    Problem.error(
                        self.display,
                        "yaml.duplicate-key",
                        f"duplicate key '{key}' (first defined at line {first_seen[key]})",
                        line=line,
                        column=key_node.start_mark.column + 1,
                        pointer=pointer,
                    )
                )
                continue
            first_seen[key] = line
            child = f"{pointer}/{escape_pointer_token(key)}"
            self.positions[child] = (line, key_node.start_mark.column + 1)
            result[key] = self.convert(value_node, child, depth + 1)
        # Merge keys ("<<: *defaults") fill in only what the mapping does not set itself.
        for source in merged:
            for key_node, value_node in source.value:
                key = str(key_node.value)
                if key not in result:
                    child = f"{pointer}/{escape_pointer_token(key)}"
                    self.positions.setdefault(child, (key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                    result[key] = self.convert(value_node, child, depth + 1)
        return result

    @staticmethod
    def _is_plain_key(key_node: ScalarNode) -> bool:
        # Keys such as `yes` or `1` are resolved to bool/int tags; in a manifest every key
        # is a name, so the author's text is taken as the key.
        return key_node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")

    def _merge_sources(self, value_node: Node) -> list[MappingNode]:
        if isinstance(value_node, MappingNode):
            return [value_node]
        if isinstance(value_node, SequenceNode) and all(isinstance(n, MappingNode) for n in value_node.value):
            return list(value_node.value)
        self._fail(value_node, "yaml.merge", "merge key '<<' must refer to a mapping or a list of mappings")
        return []

    def _scalar(self, node: ScalarNode, pointer: str) -> Any:
        value = node.value
        if self.check_lengths and len(value) > self.limits.max_scalar_chars:
            self._fail(
                node,
                "yaml.scalar-too-long",
                f"a value of {len(value)} characters; manifest values are limited to {self.limits.max_scalar_chars}",
            )
            return None
        if node.ctag is _TAG_STR:
            return value
        # The composer resolves a tag for every scalar; "" only keeps mypy honest about None.
        tag = node.tag or ""
        if tag == _STR:
            return value
        converter = SCALAR_CONVERTERS.get(tag)
        if converter is None:
            if tag.startswith("!") or not tag.startswith("tag:yaml.org,2002:"):
                self._fail(node, "yaml.tag", f"custom YAML tag {tag} is not supported in manifests")
                return None
            return value
        try:
            result = converter(value)
        except (ValueError, ArithmeticError):
            self._fail(node, "yaml.scalar", f"cannot read {excerpt(value)!r} as {tag.rsplit(':', 1)[-1]}")
            return None
        kind = type(result)  # exact types: bool is an int, but never too large
        if kind is int and abs(result) > self.limits.max_integer:
            self._fail(
                node, "yaml.number-too-large", f"integer {excerpt(value)} is beyond {self.limits.max_integer}"
            )
            return None
        elif kind is float and math.isinf(result) and "inf" not in value.lower():
            # 1e999 reads as infinity: no manifest means that, and JSON cannot carry it.
            self._fail(node, "yaml.number-too-large", f"number {excerpt(value)} is out of range")
            return None
        self.raw_scalars[pointer] = value
        return result


