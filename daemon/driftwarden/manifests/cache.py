"""The validation cache: per-file results by content hash, and a record of the last whole run.

Owns what lets `validation.validate_paths` skip work: `ValidationCache` keeps each file's
`CheckedFile` under (path, content digest), `TreeRecord` the stats, digests and report of the
last run over a tree, both pickled next to each other and replaced atomically.

What it must not do: check anything or decide what is valid (that is `validation.py` and
`rules.py`), or fail a validation because the cache is missing, corrupt or read-only.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftwarden import __version__
from driftwarden.manifests.problems import Problem
from driftwarden.manifests.rules import CheckedFile
from driftwarden.manifests.schemas import SchemaSet


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

