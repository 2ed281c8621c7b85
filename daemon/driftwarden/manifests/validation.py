"""Manifests in, every problem out: schema checks per document, then checks across manifests.

One call, `validate_paths`, reads every manifest under the given paths and returns a
`ValidationResult` with the typed objects (`model.Cluster`, `model.Deployment`) of the
documents that are valid and *all* problems of *all* files, each with file, line, column,
JSON pointer, kind and name. It never stops at the first error: a pull request gets every
mistake in one run.

Owns the pipeline: per-file work (parse, schema, defaults, normalisation), the limits per
file and per revision, spreading that work over processes when there are many files, and
`validate_checked`, which runs the rules of `rules.py` on the whole set (they are about
relations between files) and builds the result. Per-file results are cached by content hash
in `cache.py`.

What it must not do: hold rules beyond the per-document envelope (those live in `rules.py`),
read or write the cache's files itself (that is `cache.py`), talk to AWS or Git, or raise for
bad input.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import hashlib
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from driftwarden.manifests import astro
from driftwarden.manifests.cache import TreeRecord, ValidationCache
from driftwarden.manifests.discovery import (
    Document,
    Limits,
    discover,
    read_bytes,
    too_large,
    too_many_bytes,
    too_many_files,
)
from driftwarden.manifests.loader import load_bytes
from driftwarden.manifests.model import (
    API_VERSION,
    KINDS,
    Cluster,
    Deployment,
    Origin,
    cluster_from_spec,
    deployment_from_spec,
    normalize_metadata,
    normalize_spec,
    prepare_defaults,
)
from driftwarden.manifests.problems import Problem
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.rules import (
    CheckedDocument,
    CheckedFile,
    check_cluster,
    check_cluster_overlaps,
    check_deployment,
    check_pool_capacity,
    check_shared_external_ids,
    unique,
)
from driftwarden.manifests.schemas import SchemaSet

# Below this many files to check, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 400


# --- per file ---------------------------------------------------------------------------------


@cache
def default_schemas() -> SchemaSet:
    """The shipped schemas, compiled once per process."""
    return SchemaSet()


def check_bytes(data: bytes, display: str, schemas: SchemaSet, limits: Limits = Limits()) -> CheckedFile:
    """Parse one file and check each of its documents on its own.

    Never raises: should a check meet input nobody foresaw and fail, that is an error of this
    file (named, with the exception), not a crash of the whole run or of the daemon.
    """
    try:
        return _check_bytes(data, display, schemas, limits)
    except Exception as exc:
        return CheckedFile(display, (), (internal_error(display, exc),))


def internal_error(display: str, exc: BaseException) -> Problem:
    """The error for a file (or a whole revision) whose checking failed unexpectedly."""
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return Problem.error(
        display,
        "file.check-failed",
        f"checking failed unexpectedly ({type(exc).__name__}: {text}); the revision is treated as invalid",
    )


def _check_bytes(data: bytes, display: str, schemas: SchemaSet, limits: Limits) -> CheckedFile:
    loaded = load_bytes(data, display, limits)
    problems = list(loaded.problems)
    documents = []
    for document in loaded.documents:
        checked, found = check_document(document, schemas)
        problems.extend(found)
        if checked is not None:
            documents.append(checked)
    return CheckedFile(display, tuple(documents), tuple(problems))


def check_document(document: Document, schemas: SchemaSet) -> tuple[CheckedDocument | None, list[Problem]]:
    data = document.data
    if astro.is_astro_file(data):
        astro_errors = schemas.check("AstroDeploymentFile", data, document.raw_scalars)
        if astro_errors:
            name = _astro_name(data)
            return None, [_schema_problem(document, e, "Deployment", name) for e in astro_errors]
        converted, problems = astro.convert(document)
        if converted is None:
            return None, problems
        document = converted
        data = converted.data
    if not isinstance(data, dict):
        line, column = document.position("")
        return None, [
            Problem.error(
                document.file,
                "manifest.not-a-mapping",
                "a manifest must be a mapping with apiVersion, kind, metadata and spec",
                line=line,
                column=column,
            )
        ]
    kind = data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) and isinstance(metadata.get("name"), str) else None
    start_line = document.position("")[0]
    checked = CheckedDocument(
        document.file,
        document.index,
        kind if kind in KINDS else None,
        name,
        start_line,
        document.positions,
        source_pointers=document.source_pointers or None,
    )
    if data.get("apiVersion") != API_VERSION:
        what = "missing" if "apiVersion" not in data else f"{data.get('apiVersion')!r} is not supported"
        return None, [
            checked.problem(
                "manifest.api-version",
                f"apiVersion {what}; expected {API_VERSION!r} (every YAML file under the manifest path must be a driftwarden manifest)",
                "/apiVersion",
            )
        ]
    if kind not in KINDS:
        what = "missing" if kind is None else f"{kind!r} is not a driftwarden kind"
        return None, [checked.problem("manifest.kind", f"kind {what}; expected one of: {', '.join(KINDS)}", "/kind")]
    errors = schemas.check(kind, data, document.raw_scalars)
    if errors:
        return checked, [_schema_problem(document, e, kind, name) for e in errors]
    filled = schemas.apply_defaults(kind, prepare_defaults(kind, data))
    valid = replace(
        checked,
        metadata=normalize_metadata(filled["metadata"]),
        spec=normalize_spec(kind, filled["spec"]),
        authored_keys=frozenset(data.get("spec", {})),
    )
    return valid, []


def _astro_name(data: Mapping[str, Any]) -> str | None:
    config = (data.get("deployment") or {}).get("configuration") if isinstance(data.get("deployment"), dict) else None
    name = config.get("name") if isinstance(config, dict) else None
    return astro.slug(name) if isinstance(name, str) else None


def _schema_problem(document: Document, error: Any, kind: str | None, name: str | None) -> Problem:
    line, column = document.position(error.pointer)
    pointer = document.source_pointer(error.pointer)
    return Problem.error(
        document.file, error.rule, error.message, line=line, column=column, pointer=pointer, kind=kind, name=name
    )



def _check_chunk(items: Sequence[tuple[bytes, str]]) -> list[CheckedFile]:
    schemas = default_schemas()
    with _gc_paused():
        return [check_bytes(data, display, schemas) for data, display in items]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Validation builds many small objects that all stay alive until the end; the cyclic
    collector would walk them again and again (a third of a warm run's time) for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- whole runs ---------------------------------------------------------------------------------


def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: Path | None = None,
    schemas: SchemaSet | None = None,
    limits: Limits = Limits(),
    workers: int | None = None,
    report_only: bool = False,
) -> ValidationResult:
    """Validate every manifest under `paths`; see the module docstring.

    With `report_only` the result may come without objects (clusters and deployments empty)
    when nothing changed since the cached run: enough for `driftwarden validate`.
    """
    with _gc_paused():
        return _validate_paths(
            paths, cache_dir=cache_dir, schemas=schemas, limits=limits, workers=workers, report_only=report_only
        )


def _validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    cache_dir: Path | None,
    schemas: SchemaSet | None,
    limits: Limits,
    workers: int | None,
    report_only: bool = False,
) -> ValidationResult:
    schemas = schemas or default_schemas()
    files, problems = discover(paths, limits)
    cache = ValidationCache(cache_dir, schemas)
    previous = cache.tree
    now_ns = time.time_ns()
    tree = TreeRecord(written_ns=now_ns)
    contents: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    total_bytes = 0
    for real, display in files:
        try:
            stat = os.stat(real)
        except OSError:
            stat = None
        total_bytes += stat.st_size if stat is not None else 0
        if total_bytes > limits.max_revision_bytes:
            problems.append(too_many_bytes(display, limits))
            break
        known = previous.stats.get(display)
        # A file unchanged since the last run (same mtime, size and inode) keeps its digest
        # without being read. Files written just before that run are re-read ("racy" files,
        # as git calls them): their mtime cannot tell a later same-size edit apart.
        if (
            stat is not None
            and known is not None
            and known[:3] == (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            and stat.st_mtime_ns < previous.written_ns - 2_000_000_000
        ):
            digests[display] = known[3]
        else:
            data, problem = read_bytes(real, display, limits)
            if problem is not None:
                problems.append(problem)
                continue
            assert data is not None
            contents[display] = data
            digests[display] = hashlib.blake2b(data, digest_size=16).hexdigest()
        if stat is not None:
            tree.stats[display] = (stat.st_mtime_ns, stat.st_size, stat.st_ino, digests[display])
    tree.key = hashlib.blake2b(
        repr((sorted(digests.items()), sorted(problems))).encode(), digest_size=16
    ).hexdigest()
    tree.files = [display for _real, display in files]
    if report_only and previous.key == tree.key and previous.files == tree.files:
        tree.problems, tree.declared = previous.problems, previous.declared
        cache.save(digests.items(), tree)
        return ValidationResult(
            files=tree.files, clusters=(), deployments=(), problems=tree.problems,
            declared=tree.declared, cached_files=len(digests),
        )
    checked: dict[str, CheckedFile] = {}
    pending: list[tuple[bytes, str, str]] = []
    cached = 0
    for display, digest in digests.items():
        hit = cache.get(display, digest)
        if hit is not None:
            checked[display] = hit
            cached += 1
            continue
        data = contents.get(display)
        if data is None:  # known by its stat, but its entry is gone: read it after all
            real = next(r for r, d in files if d == display)
            data, problem = read_bytes(real, display, limits)
            if problem is not None or data is None:
                problems.extend([problem] if problem else [])
                continue
        pending.append((data, display, digest))
    fresh = _check_all(pending, schemas, limits, workers)
    for (_data, display, digest), checked_file in zip(pending, fresh, strict=True):
        checked[display] = checked_file
        cache.put(display, digest, checked_file)
    ordered = [checked[display] for _real, display in files if display in checked]
    result = validate_checked(ordered, names=tree.files, problems=problems, cached_files=cached)
    tree.problems, tree.declared = list(result.problems), dict(result.declared)
    cache.save(digests.items(), tree)
    return result


def _check_all(
    pending: Sequence[tuple[bytes, str, str]], schemas: SchemaSet, limits: Limits, workers: int | None
) -> list[CheckedFile]:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1 or len(pending) < PARALLEL_THRESHOLD or schemas is not default_schemas():
        return [check_bytes(data, display, schemas, limits) for data, display, _digest in pending]
    items = [(data, display) for data, display, _digest in pending]
    size = max(1, len(items) // (count * 4))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # fork shares the already-imported modules and compiled schemas with the workers.
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with concurrent.futures.ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        return [result for chunk in pool.map(_check_chunk, chunks) for result in chunk]


def validate_documents(
    named: Iterable[tuple[str, bytes]],
    schemas: SchemaSet | None = None,
    *,
    problems: Iterable[Problem] = (),
    limits: Limits = Limits(),
) -> ValidationResult:
    """Validate in-memory files (name, bytes): for sources that are not a directory.

    `problems` the source itself found (a Git tree's symlinks, unreadable blobs) join the
    result as if validation had found them. The limits per file and per revision apply as
    they do to a directory: past them, files are refused with an error, not checked.
    """
    schemas = schemas or default_schemas()
    found = list(problems)
    checked = []
    total_bytes = 0
    for count, (name, data) in enumerate(named, start=1):
        if count > limits.max_files_per_revision:
            found.append(too_many_files(name, limits))
            break
        total_bytes += len(data)
        if total_bytes > limits.max_revision_bytes:
            found.append(too_many_bytes(name, limits))
            break
        if len(data) > limits.max_file_bytes:
            found.append(too_large(name, len(data), limits))
            continue
        checked.append(check_bytes(data, name, schemas, limits))
    return validate_checked(checked, problems=found)


def validate_checked(
    files: Sequence[CheckedFile],
    *,
    names: Iterable[str] | None = None,
    problems: Iterable[Problem] = (),
    cached_files: int = 0,
) -> ValidationResult:
    """Build the objects of valid documents and run the checks across manifests.

    The result lists `names` as its files (by default the checked files' names) and counts
    `problems` found before the per-file checks (unreadable files, a source's own) with its
    own; it is complete when returned and never changed afterwards.
    """
    problems = [*problems, *(p for f in files for p in f.problems)]
    documents = [d for f in files for d in f.documents]
    declared: dict[str, int] = defaultdict(int)
    for doc in documents:
        if doc.kind:
            declared[doc.kind] += 1
    cluster_docs = unique(documents, "Cluster", problems)
    deployment_docs = unique(documents, "Deployment", problems)
    clusters: dict[str, Cluster] = {}
    for doc in cluster_docs:
        assert doc.spec is not None and doc.metadata is not None
        found = check_cluster(doc)
        problems.extend(found)
        if not any(p.is_error for p in found):
            clusters[doc.name or ""] = cluster_from_spec(doc.metadata, doc.spec, Origin(doc.file, doc.line, doc.index))
    problems.extend(check_cluster_overlaps(cluster_docs))
    problems.extend(check_shared_external_ids(cluster_docs))
    deployments: list[Deployment] = []
    declared_clusters = {d.name for d in documents if d.kind == "Cluster"}
    for doc in deployment_docs:
        assert doc.spec is not None and doc.metadata is not None
        cluster = clusters.get(doc.spec["cluster"])
        found = check_deployment(doc, cluster, doc.spec["cluster"] in declared_clusters)
        problems.extend(found)
        if cluster is not None and not any(p.is_error for p in found):
            deployments.append(
                deployment_from_spec(doc.metadata, doc.spec, cluster, Origin(doc.file, doc.line, doc.index))
            )
    problems.extend(check_pool_capacity(deployments, clusters, {d.name or "": d for d in deployment_docs}))
    return ValidationResult(
        files=[f.file for f in files] if names is None else names,
        clusters=sorted(clusters.values(), key=lambda c: c.name),
        deployments=sorted(deployments, key=lambda d: d.name),
        problems=sorted(problems),
        declared=declared,
        cached_files=cached_files,
    )
