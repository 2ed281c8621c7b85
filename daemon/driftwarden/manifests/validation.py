"""Manifests in, every problem out: schema checks per document, then checks across manifests.

One call, `validate_paths`, reads every manifest under the given paths and returns a
`ValidationResult` with the typed objects (`model.Cluster`, `model.Deployment`) of the
documents that are valid and *all* problems of *all* files, each with file, line, column,
JSON pointer, kind and name. It never stops at the first error: a pull request gets every
mistake in one run.

Per-file work (parse, schema, defaults, normalisation) is cached by content hash, and spread
over processes when there are many files; the cross-manifest checks always run on the whole
set because they are about relations between files.

What it must not do: talk to AWS or Git, or raise for bad input.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import hashlib
import ipaddress
import multiprocessing
import os
import pickle
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from driftwarden import __version__
from driftwarden.manifests import astro
from driftwarden.manifests.discovery import (
    Document,
    Limits,
    discover,
    read_bytes,
    source_pointer,
    too_large,
    too_many_bytes,
    too_many_files,
)
from driftwarden.manifests.loader import load_bytes
from driftwarden.manifests.model import (
    API_VERSION,
    KINDS,
    OPT_IN_REGIONS,
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
from driftwarden.manifests.result import ValidationResult as ValidationResult
from driftwarden.manifests.schemas import SchemaSet

MAX_NODE_POOLS = 11
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# Below this many files to check, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 400


@dataclass(frozen=True)
class CheckedDocument:
    """One document after the per-file checks; `spec` is None when it is not valid."""

    file: str
    index: int
    kind: str | None
    name: str | None
    line: int
    positions: Mapping[str, tuple[int, int]]
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    # What the author wrote themselves (before defaults), for checks that care.
    authored_keys: frozenset[str] = frozenset()
    # Set for a document converted from an Astro CLI file (see `Document.source_pointers`).
    source_pointers: Mapping[str, str] | None = None

    def position(self, pointer: str) -> tuple[int, int]:
        return Document(self.file, self.index, None, self.positions).position(pointer)

    def problem(self, rule: str, message: str, pointer: str, *, warning: bool = False) -> Problem:
        line, column = self.position(pointer)
        make = Problem.warning if warning else Problem.error
        return make(
            self.file,
            rule,
            message,
            line=line,
            column=column,
            pointer=source_pointer(self.source_pointers, pointer),
            kind=self.kind,
            name=self.name,
        )


@dataclass(frozen=True)
class CheckedFile:
    """One file after the per-file checks: what the validation cache keeps per content hash."""

    file: str
    documents: tuple[CheckedDocument, ...]
    problems: tuple[Problem, ...]


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


# --- the cache ----------------------------------------------------------------------------------


@dataclass
class TreeRecord:
    """What the last run over a tree saw: file stats and digests, and its whole report.

    Small next to the per-file entries, so an unchanged tree is answered without them.
    """

    # display name -> (mtime_ns, size, inode, content digest)
    stats: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)
    key: str = ""
    written_ns: int = 0
    files: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    declared: dict[str, int] = field(default_factory=dict)


class ValidationCache:
    """Per-file results keyed by (path, content hash), for fast re-validation.

    The key includes the schemas' fingerprint and driftwarden's version, so an upgrade or a
    schema change never serves a stale verdict. Two files: the per-file entries (loaded only
    when some file changed) and a small record of the whole tree (see `TreeRecord`).
    """

    def __init__(self, directory: Path | None, schemas: SchemaSet) -> None:
        stem = f"validate-{__version__}-{schemas.fingerprint}"
        self.path = directory / f"{stem}.pickle" if directory else None
        self.tree_path = directory / f"{stem}.tree.pickle" if directory else None
        self._entries: dict[tuple[str, str], CheckedFile] | None = None
        self.dirty = False
        self.tree = self._load(self.tree_path, TreeRecord) or TreeRecord()

    @staticmethod
    def _load(path: Path | None, kind: type) -> Any:
        if path is None or not path.exists():
            return None
        try:
            with path.open("rb") as handle:
                loaded = pickle.load(handle)
        except Exception:  # a corrupt or foreign cache is only a cache: start afresh
            return None
        return loaded if isinstance(loaded, kind) else None

    @property
    def entries(self) -> dict[tuple[str, str], CheckedFile]:
        if self._entries is None:
            self._entries = self._load(self.path, dict) or {}
        return self._entries

    def get(self, display: str, digest: str) -> CheckedFile | None:
        return self.entries.get((display, digest))

    def put(self, display: str, digest: str, checked: CheckedFile) -> None:
        self.entries[(display, digest)] = checked
        self.dirty = True

    def save(self, keep: Iterable[tuple[str, str]], tree: TreeRecord) -> None:
        if self.path is None or self.tree_path is None:
            return
        keep = set(keep)
        with contextlib.suppress(OSError):  # a read-only cache location must not fail validation
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._entries is not None and (self.dirty or keep != set(self._entries)):
                _write_atomically(self.path, {k: v for k, v in self._entries.items() if k in keep})
            _write_atomically(self.tree_path, tree)


def _write_atomically(path: Path, value: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".validate-")
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftwarden"


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
    cluster_docs = _unique(documents, "Cluster", problems)
    deployment_docs = _unique(documents, "Deployment", problems)
    clusters: dict[str, Cluster] = {}
    for doc in cluster_docs:
        assert doc.spec is not None and doc.metadata is not None
        found = _check_cluster(doc)
        problems.extend(found)
        if not any(p.is_error for p in found):
            clusters[doc.name or ""] = cluster_from_spec(doc.metadata, doc.spec, Origin(doc.file, doc.line, doc.index))
    problems.extend(_check_cluster_overlaps(cluster_docs))
    problems.extend(_check_shared_external_ids(cluster_docs))
    deployments: list[Deployment] = []
    declared_clusters = {d.name for d in documents if d.kind == "Cluster"}
    for doc in deployment_docs:
        assert doc.spec is not None and doc.metadata is not None
        cluster = clusters.get(doc.spec["cluster"])
        found = _check_deployment(doc, cluster, doc.spec["cluster"] in declared_clusters)
        problems.extend(found)
        if cluster is not None and not any(p.is_error for p in found):
            deployments.append(
                deployment_from_spec(doc.metadata, doc.spec, cluster, Origin(doc.file, doc.line, doc.index))
            )
    problems.extend(_check_pool_capacity(deployments, clusters, {d.name or "": d for d in deployment_docs}))
    return ValidationResult(
        files=[f.file for f in files] if names is None else names,
        clusters=sorted(clusters.values(), key=lambda c: c.name),
        deployments=sorted(deployments, key=lambda d: d.name),
        problems=sorted(problems),
        declared=declared,
        cached_files=cached_files,
    )


def _unique(documents: Sequence[CheckedDocument], kind: str, problems: list[Problem]) -> list[CheckedDocument]:
    """Documents of `kind`, the first of each name only; later ones are duplicate-name errors."""
    first: dict[str, CheckedDocument] = {}
    unique = []
    for doc in documents:
        if doc.kind != kind or doc.spec is None:
            continue
        name = doc.name or ""
        if name in first:
            other = first[name]
            problems.append(
                doc.problem(
                    "manifest.duplicate-name",
                    f"{kind} {name!r} is already declared in {other.file}:{other.position('/metadata/name')[0]}; names are unique per kind",
                    "/metadata/name",
                )
            )
            continue
        first[name] = doc
        unique.append(doc)
    return unique


# --- Cluster checks -----------------------------------------------------------------------------


def _check_cluster(doc: CheckedDocument) -> list[Problem]:
    spec = doc.spec
    assert spec is not None
    found: list[Problem] = []
    pools = spec["nodePools"]
    if len(pools) > MAX_NODE_POOLS:
        found.append(
            doc.problem(
                "cluster.node-pool-count",
                f"{len(pools)} node pools; at most {MAX_NODE_POOLS} (one default and 10 more)",
                "/spec/nodePools",
            )
        )
    defaults = [i for i, pool in enumerate(pools) if pool.get("isDefault")]
    if len(defaults) != 1:
        pointer = f"/spec/nodePools/{defaults[1]}/isDefault" if len(defaults) > 1 else "/spec/nodePools"
        found.append(
            doc.problem(
                "cluster.default-pool",
                f"exactly one node pool must have isDefault: true; found {len(defaults)}",
                pointer,
            )
        )
    names: dict[str, int] = {}
    for i, pool in enumerate(pools):
        if pool["name"] in names:
            found.append(
                doc.problem(
                    "cluster.pool-name",
                    f"node pool name {pool['name']!r} is used twice (also item {names[pool['name']]})",
                    f"/spec/nodePools/{i}/name",
                )
            )
        names.setdefault(pool["name"], i)
        if pool["minNodeCount"] > pool["maxNodeCount"]:
            found.append(
                doc.problem(
                    "cluster.pool-size",
                    f"minNodeCount {pool['minNodeCount']} is greater than maxNodeCount {pool['maxNodeCount']}",
                    f"/spec/nodePools/{i}/minNodeCount",
                )
            )
    region = spec["region"]
    for i, zone in enumerate(spec["availabilityZones"]):
        if not zone.startswith(region) or len(zone) != len(region) + 1:
            found.append(
                doc.problem(
                    "cluster.availability-zone",
                    f"availability zone {zone!r} is not in region {region}",
                    f"/spec/availabilityZones/{i}",
                )
            )
    if region in OPT_IN_REGIONS:
        found.append(
            doc.problem(
                "cluster.opt-in-region",
                f"{region} is an opt-in region: it must be enabled in account {spec['account']['id']} before the cluster can be created",
                "/spec/region",
                warning=True,
            )
        )
    if "network" not in spec:
        found.extend(_check_cidr(doc, spec["vpcSubnetRange"]))
    return found


def _check_cidr(doc: CheckedDocument, text: str) -> list[Problem]:
    pointer = "/spec/vpcSubnetRange"
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        return [doc.problem("cluster.cidr", f"{text!r} is not a valid network: {exc}", pointer)]
    problems = []
    private = isinstance(network, ipaddress.IPv4Network) and any(network.subnet_of(block) for block in RFC1918)
    if not private:
        problems.append(
            doc.problem(
                "cluster.cidr",
                f"{text} is not private address space; use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918)",
                pointer,
            )
        )
    if not 16 <= network.prefixlen <= 20:
        problems.append(
            doc.problem("cluster.cidr", f"prefix /{network.prefixlen} is outside /16 to /20", pointer)
        )
    return problems


def _check_cluster_overlaps(docs: Sequence[CheckedDocument]) -> list[Problem]:
    by_place: dict[tuple[str, str], list[tuple[CheckedDocument, Any]]] = defaultdict(list)
    problems = []
    for doc in docs:
        spec = doc.spec
        assert spec is not None
        if "network" in spec:
            continue
        try:
            network = ipaddress.ip_network(spec["vpcSubnetRange"])
        except ValueError:
            continue
        place = (spec["account"]["id"], spec["region"])
        for other, other_network in by_place[place]:
            if network.overlaps(other_network):
                problems.append(
                    doc.problem(
                        "cluster.cidr-overlap",
                        f"vpcSubnetRange {network} overlaps {other_network} of Cluster {other.name!r} "
                        f"({other.file}:{other.position('/spec/vpcSubnetRange')[0]}) in the same account and region",
                        "/spec/vpcSubnetRange",
                    )
                )
        by_place[place].append((doc, network))
    return problems


def _check_shared_external_ids(docs: Sequence[CheckedDocument]) -> list[Problem]:
    first: dict[str, CheckedDocument] = {}
    problems = []
    for doc in docs:
        assert doc.spec is not None
        external_id = doc.spec["account"]["externalId"]
        if external_id in first:
            problems.append(
                doc.problem(
                    "cluster.shared-external-id",
                    f"ExternalId is also used by Cluster {first[external_id].name!r}; give each cluster its own",
                    "/spec/account/externalId",
                    warning=True,
                )
            )
        first.setdefault(external_id, doc)
    return problems


# --- Deployment checks --------------------------------------------------------------------------


def _check_deployment(doc: CheckedDocument, cluster: Cluster | None, cluster_declared: bool) -> list[Problem]:
    spec = doc.spec
    assert spec is not None
    found: list[Problem] = []
    executor = spec["executor"]
    queues = spec.get("workerQueues", [])
    if executor == "KUBERNETES" and "workerQueues" in doc.authored_keys and queues:
        found.append(
            doc.problem(
                "deployment.queues-with-kubernetes",
                "workerQueues are only for the CELERY executor; the KUBERNETES executor runs each task in its own pod (use taskPodNodePool)",
                "/spec/workerQueues",
            )
        )
    if executor == "CELERY" and "taskPodNodePool" in doc.authored_keys:
        found.append(
            doc.problem(
                "deployment.task-pool-with-celery",
                "taskPodNodePool is only for the KUBERNETES executor; CELERY workers run on their queue's workerType",
                "/spec/taskPodNodePool",
            )
        )
    if executor == "CELERY" and queues:
        names: dict[str, int] = {}
        for i, queue in enumerate(queues):
            if queue["name"] in names:
                found.append(
                    doc.problem("deployment.queue-name", f"queue name {queue['name']!r} is used twice", f"/spec/workerQueues/{i}/name")
                )
            names.setdefault(queue["name"], i)
            if queue.get("minWorkerCount", 0) > queue.get("maxWorkerCount", 10):
                found.append(
                    doc.problem(
                        "deployment.queue-size",
                        f"minWorkerCount {queue['minWorkerCount']} is greater than maxWorkerCount {queue['maxWorkerCount']}",
                        f"/spec/workerQueues/{i}/minWorkerCount",
                    )
                )
        if "default" not in names:
            found.append(
                doc.problem(
                    "deployment.default-queue",
                    "when workerQueues are given, one of them must be named 'default'",
                    "/spec/workerQueues",
                )
            )
    seen_keys: dict[str, int] = {}
    for i, variable in enumerate(spec.get("environmentVariables", [])):
        if variable["key"] in seen_keys:
            found.append(
                doc.problem(
                    "deployment.variable-key",
                    f"environment variable {variable['key']!r} is set twice (also item {seen_keys[variable['key']]})",
                    f"/spec/environmentVariables/{i}/key",
                )
            )
        seen_keys.setdefault(variable["key"], i)
    cluster_name = spec["cluster"]
    if cluster is None:
        if cluster_declared:
            found.append(
                doc.problem(
                    "deployment.cluster-invalid",
                    f"Cluster {cluster_name!r} is invalid; fix it first (this Deployment is checked against it)",
                    "/spec/cluster",
                )
            )
        else:
            found.append(
                doc.problem("deployment.cluster-missing", f"no Cluster named {cluster_name!r} is declared", "/spec/cluster")
            )
        return found
    if cluster.workspaces and spec["workspace"] not in cluster.workspaces:
        found.append(
            doc.problem(
                "deployment.workspace",
                f"workspace {spec['workspace']!r} may not place deployments on Cluster {cluster.name!r}; allowed: {', '.join(cluster.workspaces)}",
                "/spec/workspace",
            )
        )
    pool_types = sorted({pool.node_instance_type for pool in cluster.node_pools})
    if executor == "CELERY":
        for i, queue in enumerate(queues):
            worker_type = queue.get("workerType")
            if worker_type and worker_type not in pool_types:
                found.append(
                    doc.problem(
                        "deployment.worker-type",
                        f"workerType {worker_type!r} is not the instance type of any node pool of Cluster {cluster.name!r}; available: {', '.join(pool_types)}",
                        f"/spec/workerQueues/{i}/workerType",
                    )
                )
    task_pool = spec.get("taskPodNodePool")
    if executor == "KUBERNETES" and task_pool and cluster.pool(task_pool) is None:
        found.append(
            doc.problem(
                "deployment.task-pod-pool",
                f"Cluster {cluster.name!r} has no node pool {task_pool!r}; pools: {', '.join(p.name for p in cluster.node_pools)}",
                "/spec/taskPodNodePool",
            )
        )
    return found


def _check_pool_capacity(
    deployments: Sequence[Deployment], clusters: Mapping[str, Cluster], docs: Mapping[str, CheckedDocument]
) -> list[Problem]:
    """Warn when the queues placed on a pool could ask for more nodes than it may have."""
    demand: dict[tuple[str, str], list[tuple[Deployment, int]]] = defaultdict(list)
    for deployment in deployments:
        for i, queue in enumerate(deployment.worker_queues):
            demand[(deployment.cluster, queue.worker_type)].append((deployment, i))
    problems = []
    for (cluster_name, worker_type), users in sorted(demand.items()):
        cluster = clusters[cluster_name]
        pools = [p for p in cluster.node_pools if p.node_instance_type == worker_type]
        capacity = sum(p.max_node_count for p in pools)
        wanted = sum(d.worker_queues[i].max_worker_count for d, i in users)
        if wanted > capacity:
            deployment, index = users[-1]
            doc = docs[deployment.name]
            problems.append(
                doc.problem(
                    "deployment.pool-capacity",
                    f"queues on {worker_type} in Cluster {cluster_name!r} may use up to {wanted} workers, "
                    f"but its node pool(s) {', '.join(p.name for p in pools)} allow at most {capacity} nodes",
                    f"/spec/workerQueues/{index}/maxWorkerCount",
                    warning=True,
                )
            )
    return problems
