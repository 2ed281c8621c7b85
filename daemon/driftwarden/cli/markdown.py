"""Markdown for the generated README sections: table cells, inline code and tables.

Shared by `reference` (commands, metrics) and `reference_schemas` (manifest fields), so that
every generated table escapes text the same way.

What this module must not do: know what it renders (schemas, options, metrics) or read files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any


def cell(text: str) -> str:
    """Prose for a table cell: no line breaks, and nothing Markdown would read as markup."""
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
    # An underscore run between two letters or digits (AIRFLOW__CORE__X) is never emphasis.
    return re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", lambda m: "\\_" * len(m.group()), text)


def code(value: Any) -> str:
    """A value as an inline code span inside a table cell."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return "`" + text.replace("|", "\\|") + "`"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

