"""`Problem`: one thing wrong (or worth a warning) in the manifests, with where it stands.

Validation never stops at the first problem; it returns all of them as values so that one
run shows a pull request every mistake. The fields are the JSON contract of
`driftwarden validate --format json` (PRODUCT.md), lines and columns 1-based.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """A located message about a manifest. `rule` is a stable identifier for tests and tools."""

    file: str
    line: int
    column: int
    severity: Severity
    rule: str
    message: str
    pointer: str = ""
    kind: str | None = None
    name: str | None = None

    @classmethod
    def error(
        cls,
        file: str,
        rule: str,
        message: str,
        *,
        line: int = 1,
        column: int = 1,
        pointer: str = "",
        kind: str | None = None,
        name: str | None = None,
    ) -> Problem:
        return cls(file, line, column, "error", rule, message, pointer, kind, name)

    @classmethod
    def warning(
        cls,
        file: str,
        rule: str,
        message: str,
        *,
        line: int = 1,
        column: int = 1,
        pointer: str = "",
        kind: str | None = None,
        name: str | None = None,
    ) -> Problem:
        return cls(file, line, column, "warning", rule, message, pointer, kind, name)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def with_object(self, kind: str | None, name: str | None) -> Problem:
        return replace(self, kind=kind, name=name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("severity")
        return data

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        subject = f"{self.kind}/{self.name}" if self.kind and self.name else ""
        context = " ".join(part for part in (subject, self.pointer) if part)
        return f"{where}: {self.severity}: {context + ': ' if context else ''}{self.message}"
