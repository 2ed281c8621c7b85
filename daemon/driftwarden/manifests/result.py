"""`ValidationResult`: what validating one revision of manifests found, as one frozen value.

It holds the typed objects of the valid documents (`model.Cluster`, `model.Deployment`), every
problem of every file, the files read and how many objects of each kind were declared. It is
built once, by `validation.py`, and never changed afterwards: the daemon keeps the last good
one while newer revisions come and go, and status, metrics and the CLI all read the same value.

It lives apart from `validation.py` so that readers of a result (status, rendering) depend on
the model and problems only, not on the YAML parser and JSON Schema library that produce it.

What it must not do: import an I/O library, or offer a way to change a result in place
(`dataclasses.replace` makes a new one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from driftwarden.manifests.model import KINDS, Cluster, Deployment
from driftwarden.manifests.problems import Problem


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one validation run; sequences are stored as tuples, whatever was passed."""

    files: tuple[str, ...]
    clusters: tuple[Cluster, ...]
    deployments: tuple[Deployment, ...]
    problems: tuple[Problem, ...]
    # How many objects of each kind were declared (valid or not).
    declared: Mapping[str, int]
    # How many files were answered from the validation cache without being checked again.
    cached_files: int

    def __init__(
        self,
        files: Iterable[str],
        clusters: Iterable[Cluster],
        deployments: Iterable[Deployment],
        problems: Iterable[Problem],
        declared: Mapping[str, int] | None = None,
        cached_files: int = 0,
    ) -> None:
        # Any iterable in, tuples and a private copy of `declared` stored: nothing a caller
        # still holds can change the result afterwards.
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "clusters", tuple(clusters))
        object.__setattr__(self, "deployments", tuple(deployments))
        object.__setattr__(self, "problems", tuple(problems))
        object.__setattr__(self, "declared", dict(declared or {}))
        object.__setattr__(self, "cached_files", cached_files)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)

    @property
    def valid(self) -> bool:
        return not any(p.is_error for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "files": len(self.files),
            "objects": {kind: self.declared.get(kind, 0) for kind in KINDS},
            "errors": [p.to_json() for p in self.errors],
            "warnings": [p.to_json() for p in self.warnings],
        }
