"""Manifest files in: finding them, reading them defensively, and the records a file becomes.

Owns `Limits` (the bounds on hostile input; the per-file and per-revision ones are applied
here, the rest by `loader.py`), `discover` (an iterative walk of directory trees of any depth
that skips hidden directories and refuses symlinks leaving the manifest root), `read_bytes` (a
size-capped read), `decode` (UTF-8 text, or a problem for binary or mis-encoded bytes), the
problems for files and revisions over their limits, and the records loading produces:
`Document` (plain data plus a source position for every JSON pointer) and `FileResult`, kept
here so that modules which only handle documents need not import the YAML parser.

What it must not do: import ruamel.yaml or parse YAML (that is `loader.py`), or know about
manifest kinds or schemas (that is `validation.py`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # One scalar longer than this is no manifest value (the longest real ones are secrets,
    # policies and certificates of a few KiB).
    max_scalar_chars: int = 64 * 1024
    # Integers beyond a signed 64-bit range are no count, size or port; far larger ones also
    # break str() (Python's 4,300-digit limit) wherever a message quotes them.
    max_integer: int = 2**63 - 1
    # Per revision: a repository of manifests has hundreds of files, not a million.
    max_files_per_revision: int = 5_000
    max_revision_bytes: int = 64 * 1024 * 1024


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



def discover(
    paths: Iterable[str | os.PathLike[str]], limits: Limits = Limits()
) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Every manifest file under `paths`, as (real path, display name), sorted and unique.

    A directory is walked for `*.yaml`/`*.yml` (hidden directories such as `.git` are
    skipped); a file is taken whatever its suffix. A symlink whose target lies outside the
    root it was found under is refused: a manifest repository must not be able to make the
    daemon read arbitrary files of its host. Finding more than `limits.max_files_per_revision`
    files is an error and stops the walk, so a hostile tree costs bounded time.
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
        else:
            root = given_path.resolve()
            _walk(os.path.normpath(str(given_path)), str(root), root, given_path, found, problems, limits)
        if len(found) > limits.max_files_per_revision:
            problems.append(too_many_files(str(given), limits))
            break
    ordered = sorted(found.items(), key=lambda item: item[1])
    return ordered, problems


def too_many_files(display: str, limits: Limits) -> Problem:
    """The error for a revision with more manifest files than `limits` allow."""
    return Problem.error(
        display,
        "revision.too-many-files",
        f"more than {limits.max_files_per_revision} manifest files; a revision is limited to "
        f"{limits.max_files_per_revision} files",
    )


def too_many_bytes(display: str, limits: Limits) -> Problem:
    """The error for a revision whose manifest files together exceed `limits` (at `display`)."""
    return Problem.error(
        display,
        "revision.too-large",
        f"manifest files up to this one total more than {limits.max_revision_bytes} bytes, "
        "the limit for one revision; the rest were not read",
    )


def _walk(
    top: str,
    real_top: str,
    root: Path,
    given: Path,
    found: dict[str, str],
    problems: list[Problem],
    limits: Limits,
) -> None:
    """Depth-first over `top` with os.scandir: one syscall per directory, none per file.

    An explicit stack, not recursion: a tree nested thousands of levels deep is walked like
    any other. Directory symlinks are not followed, so a plain file's real path is its place
    under the root; only symlinked files are resolved and checked against the root. The walk
    stops once more files than the limit allows were found.
    """
    stack = [(top, real_top)]
    while stack:
        directory, real_directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            problems.append(Problem.error(directory, "file.unreadable", f"cannot read directory: {exc.strerror}"))
            continue
        subdirectories = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            display = entry.path if directory != "." else name
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append((display, os.path.join(real_directory, name)))
                continue
            if not name.endswith(MANIFEST_SUFFIXES):
                continue
            if not entry.is_symlink():
                found.setdefault(os.path.join(real_directory, name), display)
            else:
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
            if len(found) > limits.max_files_per_revision:
                return
        # Reversed onto the stack, so directories are still visited in name order.
        stack.extend(reversed(subdirectories))


def read_bytes(
    path: str | os.PathLike[str], display: str, limits: Limits
) -> tuple[bytes | None, Problem | None]:
    """The file's bytes, or a problem when it is too large to be a manifest."""
    try:
        size = os.stat(path).st_size
        if size > limits.max_file_bytes:
            return None, too_large(display, size, limits)
        with open(path, "rb") as handle:
            # Read one byte past the limit: the file may have grown since stat().
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return None, Problem.error(display, "file.unreadable", f"cannot read file: {exc.strerror}")
    if len(data) > limits.max_file_bytes:
        return None, too_large(display, len(data), limits)
    return data, None


def too_large(display: str, size: int, limits: Limits) -> Problem:
    """The error for a file larger than `limits` allow."""
    return Problem.error(
        display,
        "file.too-large",
        f"file is {size} bytes; manifests are limited to {limits.max_file_bytes} bytes",
    )


def decode(data: bytes, display: str) -> tuple[str | None, Problem | None]:
    """The text of a manifest file's bytes, or a problem when they are binary or not UTF-8."""
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

