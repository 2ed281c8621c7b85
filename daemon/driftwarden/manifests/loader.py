"""YAML files in, plain documents with a line and column for every node out.

This is the only module that imports ruamel.yaml. It finds manifest files under the given
paths, reads each one defensively and turns every YAML document into a `Document`: plain
Python data (dict, list, str, int, float, bool, None) plus a map from JSON pointer to source
position, so that every later error can name file, line and column.

Hostile or broken input never crashes or hangs the loader; it becomes a `Problem`:
files over a size limit, bytes that are not UTF-8, binary files, YAML syntax errors, tabs used
for indentation, duplicate keys, alias expansion bombs ("billion laughs"), nesting deep enough
to exhaust the C parser's stack, and symlinks that leave the manifest root.

What it must not do: know about manifest kinds or schemas (that is `validation.py`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.cyaml import CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.tag import Tag

from driftwarden.manifests.problems import Problem

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile input from using unbounded time or memory."""

    max_file_bytes: int = 1024 * 1024
    # Nodes produced for one document after alias expansion: a real manifest has a few
    # hundred; a "billion laughs" document asks for billions.
    max_nodes_per_document: int = 100_000
    # Nesting deeper than this is never a manifest, and far deeper nesting overflows the
    # C parser's stack, so it is rejected before composing.
    max_depth: int = 64
    max_documents_per_file: int = 1_000


@dataclass(frozen=True)
class Document:
    """One YAML document: plain data plus where each node stands in the file."""

    file: str
    index: int
    data: Any
    # JSON pointer -> (line, column), 1-based. For a mapping entry the position of its
    # key, because "line 12: spec.region" is where a reader looks for the problem.
    positions: Mapping[str, tuple[int, int]]
    # JSON pointer -> source text of scalars that YAML did not read as strings
    # (numbers, booleans, dates), so errors can show what the author wrote.
    raw_scalars: Mapping[str, str] = field(default_factory=dict)
    # For a document converted from another layout (an Astro CLI deployment file): our
    # pointer -> the pointer of the same node in the file, so problems name what the author
    # can find. Empty for a document read as written.
    source_pointers: Mapping[str, str] = field(default_factory=dict)

    def source_pointer(self, pointer: str) -> str:
        """`pointer` as it reads in the file: the nearest converted ancestor's source pointer."""
        return source_pointer(self.source_pointers, pointer)

    def position(self, pointer: str) -> tuple[int, int]:
        """Position of `pointer`, or of its nearest ancestor that has one."""
        while True:
            found = self.positions.get(pointer)
            if found is not None:
                return found
            if not pointer:
                return (1, 1)
            pointer = pointer.rsplit("/", 1)[0]


@dataclass(frozen=True)
class FileResult:
    """What loading one file produced."""

    file: str
    documents: tuple[Document, ...]
    problems: tuple[Problem, ...]


def source_pointer(source_pointers: Mapping[str, str] | None, pointer: str) -> str:
    """Translate `pointer` of a converted document back into its file (identity if not converted).

    A pointer the conversion did not record (a field filled in by a default) becomes its
    nearest recorded ancestor: the remainder would be spelled in the other layout.
    """
    if not source_pointers:
        return pointer
    while pointer and pointer not in source_pointers:
        pointer = pointer.rsplit("/", 1)[0]
    return source_pointers.get(pointer, "")


def escape_pointer_token(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Every manifest file under `paths`, as (real path, display name), sorted and unique.

    A directory is walked for `*.yaml`/`*.yml` (hidden directories such as `.git` are
    skipped); a file is taken whatever its suffix. A symlink whose target lies outside the
    root it was found under is refused: a manifest repository must not be able to make the
    daemon read arbitrary files of its host.
    """
    found: dict[str, str] = {}
    problems: list[Problem] = []
    for given in paths:
        given_path = Path(given)
        if not given_path.exists() and not given_path.is_symlink():
            problems.append(Problem.error(str(given), "path.missing", "no such file or directory"))
            continue
        if given_path.is_file() or (given_path.is_symlink() and not given_path.is_dir()):
            real = given_path.resolve()
            if not real.is_file():
                problems.append(Problem.error(str(given), "path.dangling", "symlink target does not exist"))
                continue
            found.setdefault(str(real), str(given))
            continue
        root = given_path.resolve()
        _walk(os.path.normpath(str(given_path)), str(root), root, given_path, found, problems)
    ordered = sorted(found.items(), key=lambda item: item[1])
    return ordered, problems


def _walk(
    directory: str, real_directory: str, root: Path, given: Path, found: dict[str, str], problems: list[Problem]
) -> None:
    """Depth-first over `directory` with os.scandir: one syscall per directory, none per file.

    Directory symlinks are not followed, so a plain file's real path is its place under the
    root; only symlinked files are resolved and checked against the root.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        problems.append(Problem.error(directory, "file.unreadable", f"cannot read directory: {exc.strerror}"))
        return
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        display = entry.path if directory != "." else name
        if entry.is_dir(follow_symlinks=False):
            _walk(display, os.path.join(real_directory, name), root, given, found, problems)
            continue
        if not name.endswith(MANIFEST_SUFFIXES):
            continue
        if not entry.is_symlink():
            found.setdefault(os.path.join(real_directory, name), display)
            continue
        real = Path(display).resolve()
        if not real.is_relative_to(root):
            problems.append(
                Problem.error(
                    display,
                    "path.symlink-escape",
                    f"symlink points outside the manifest root {given} (manifests must live inside the repository)",
                )
            )
        elif not real.is_file():
            problems.append(Problem.error(display, "path.dangling", "symlink target does not exist"))
        else:
            found.setdefault(str(real), display)


def read_bytes(
    path: str | os.PathLike[str], display: str, limits: Limits
) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or a problem when it is too large to be a manifest."""
    try:
        size = os.stat(path).st_size
        if size > limits.max_file_bytes:
            return None, _too_large(display, size, limits)
        with open(path, "rb") as handle:
            # Read one byte past the limit: the file may have grown since stat().
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return None, Problem.error(display, "file.unreadable", f"cannot read file: {exc.strerror}")
    if len(data) > limits.max_file_bytes:
        return None, _too_large(display, len(data), limits)
    return data, None


def _too_large(display: str, size: int, limits: Limits) -> Problem:
    return Problem.error(
        display,
        "file.too-large",
        f"file is {size} bytes; manifests are limited to {limits.max_file_bytes} bytes",
    )


def load_bytes(data: bytes, display: str, limits: Limits = Limits()) -> FileResult:
    """Parse one file's bytes into documents and problems. Never raises for bad input."""
    text, problem = _decode(data, display)
    if problem is not None:
        return FileResult(display, (), (problem,))
    assert text is not None
    problem = _check_depth(text, display, limits)
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
            converter = _Converter(display, limits)
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


def _decode(data: bytes, display: str) -> tuple[str | None, Problem | None]:
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        return None, Problem.error(display, "file.binary", "file contains NUL bytes; it is not a YAML text file", line=line)
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Problem.error(
            display,
            "file.encoding",
            f"byte 0x{data[exc.start]:02x} is not valid UTF-8; manifests must be UTF-8 text",
            line=line,
            column=column,
        )


def _core_tag(name: str) -> Tag:
    return Tag(suffix=f"tag:yaml.org,2002:{name}")


# Shared tag objects: nodes compare them by identity, which is far cheaper than by text.
_TAG_STR, _TAG_INT, _TAG_FLOAT, _TAG_BOOL, _TAG_NULL, _TAG_MERGE, _TAG_SEQ, _TAG_MAP = (
    _core_tag(name) for name in ("str", "int", "float", "bool", "null", "merge", "seq", "map")
)
# The YAML 1.2 core schema (as ruamel reads it, minus timestamps, which manifests keep as text).
_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL_WORDS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_INT_RE = re.compile(r"[-+]?(?:[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)\Z")
_FLOAT_RE = re.compile(
    r"(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)
# Only these first characters can start a plain scalar that is not a string.
_NON_STRING_STARTS = frozenset("0123456789-+.~<nNtTfF")


def _resolve_plain(value: str) -> Tag:
    if not value or value in _NULL_WORDS:
        return _TAG_NULL
    if value[0] not in _NON_STRING_STARTS:
        return _TAG_STR
    if value in _BOOL_WORDS:
        return _TAG_BOOL
    if _INT_RE.match(value):
        return _TAG_INT
    if _FLOAT_RE.match(value):
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


def _check_depth(text: str, display: str, limits: Limits) -> Problem | None:
    """Reject flow nesting deep enough to overflow the C composer's stack.

    libyaml's composer recurses per nesting level and crashes the process on very deep
    input, while its event parser is iterative. Block nesting is bounded by the file size
    limit (each level costs indentation); only brackets can nest cheaply, so the event pass
    runs only for texts with many of them.
    """
    if text.count("[") + text.count("{") <= limits.max_depth:
        return None
    parser = _Parser(text)
    depth = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    mark = event.start_mark
                    return Problem.error(
                        display,
                        "yaml.too-deep",
                        f"nesting deeper than {limits.max_depth} levels",
                        line=mark.line + 1,
                        column=mark.column + 1,
                    )
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except YAMLError:
        return None  # the composing pass reports the syntax error with its position
    return None


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

    def __init__(self, display: str, limits: Limits) -> None:
        self.display = display
        self.limits = limits
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
        if node.ctag is _TAG_STR:
            return value
        # The composer resolves a tag for every scalar; "" only keeps mypy honest about None.
        tag = node.tag or ""
        if tag == _STR:
            return value
        converter = _SCALAR_CONVERTERS.get(tag)
        if converter is None:
            if tag.startswith("!") or not tag.startswith("tag:yaml.org,2002:"):
                self._fail(node, "yaml.tag", f"custom YAML tag {tag} is not supported in manifests")
                return None
            return value
        try:
            result = converter(value)
        except ValueError:
            self._fail(node, "yaml.scalar", f"cannot read {value!r} as {tag.rsplit(':', 1)[-1]}")
            return None
        self.raw_scalars[pointer] = value
        return result


def _to_int(text: str) -> int:
    cleaned = text.replace("_", "")
    sign = 1
    if cleaned[:1] in "+-":
        sign = -1 if cleaned[0] == "-" else 1
        cleaned = cleaned[1:]
    if cleaned.startswith("0o"):
        return sign * int(cleaned[2:], 8)
    if cleaned.startswith("0x"):
        return sign * int(cleaned[2:], 16)
    if cleaned.startswith("0b"):
        return sign * int(cleaned[2:], 2)
    return sign * int(cleaned, 10)


def _to_float(text: str) -> float:
    cleaned = text.replace("_", "").lower()
    if cleaned in (".inf", "+.inf"):
        return float("inf")
    if cleaned == "-.inf":
        return float("-inf")
    if cleaned == ".nan":
        return float("nan")
    return float(cleaned)


def _to_bool(text: str) -> bool:
    return text.lower() in ("true", "yes", "on", "y")


def _to_timestamp(text: str) -> str:
    # Manifests carry no timestamps; keep the author's text but make sure it parses.
    _dt.date.fromisoformat(text[:10])
    return text


_SCALAR_CONVERTERS: dict[str, Any] = {
    "tag:yaml.org,2002:int": _to_int,
    "tag:yaml.org,2002:float": _to_float,
    "tag:yaml.org,2002:bool": _to_bool,
    "tag:yaml.org,2002:null": lambda _text: None,
    "tag:yaml.org,2002:timestamp": _to_timestamp,
}
