"""The reference sections of README.md, generated from what defines them, so they cannot drift.

Three kinds of section, each rendered as Markdown from its single source of truth:

* ``cluster`` and ``deployment``: every field of the manifest schemas (`schemas.SchemaSet`,
  with every ``$ref`` inlined) — dotted path, type, default, allowed values and description;
* ``cli-<command>``: the options of each ``driftwarden`` command, read from the argparse parser
  that `cli.options` builds from its option table, with the ``DRIFTWARDEN_*`` variable each
  option reads (from the same table, which is also what the parser reads variables by);
* ``metrics``: every metric family registered by `metrics.Metrics`, with its type and labels.

README.md carries each section between ``<!-- reference:NAME:begin ... -->`` and
``<!-- reference:NAME:end -->``. ``python -m driftwarden.cli.reference [README.md]`` rewrites them
in place; ``--check`` only reports sections that differ (exit 1) and changes nothing.
tests/test_readme.py runs the same comparison.

What it must not do: depend on the machine it runs on. Help texts that mention the user's cache
directory are rendered with ``~/.cache``, and ``DRIFTWARDEN_*`` variables of the calling
environment are ignored, so the output is the same everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftwarden.cli import options
from driftwarden.cli.main import build_parser
from driftwarden.manifests.schemas import SCHEMA_FILES, SchemaSet

BEGIN = re.compile(r"<!-- reference:(?P<name>[a-z0-9-]+):begin\b[^>]*-->\n")
END = "<!-- reference:{name}:end -->"
REGENERATE = "python -m driftwarden.cli.reference"
_SCHEMA_SECTIONS = {"cluster": "Cluster", "deployment": "Deployment"}


# --- Markdown helpers -------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Prose for a table cell: no line breaks, and nothing Markdown would read as markup."""
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
    # An underscore run between two letters or digits (AIRFLOW__CORE__X) is never emphasis.
    return re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", lambda m: "\\_" * len(m.group()), text)


def _code(value: Any) -> str:
    """A value as an inline code span inside a table cell."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return "`" + text.replace("|", "\\|") + "`"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- manifest fields --------------------------------------------------------------------------

_TIGHTEST = {"maxLength": min, "maximum": min, "maxItems": min, "maxProperties": min,
             "minLength": max, "minimum": max, "minItems": max, "minProperties": max}


def _flat(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One schema's keywords with those of its allOf members (inlined $refs) folded in.

    Annotations of the outer schema win; of two bounds on the same value the tighter one holds,
    as it does when both are validated.
    """
    merged: dict[str, Any] = {}
    for member in schema.get("allOf", []):
        if isinstance(member, dict):
            for key, value in _flat(member).items():
                merged[key] = _TIGHTEST[key](merged[key], value) if key in _TIGHTEST and key in merged else value
    for key, value in schema.items():
        if key == "allOf":
            continue
        merged[key] = _TIGHTEST[key](merged[key], value) if key in _TIGHTEST and key in merged else value
    return merged


@dataclass(frozen=True)
class FieldDoc:
    """One row of a manifest reference table."""

    path: str
    type: str
    default: str
    allowed: str
    description: str


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "array":
        items = _flat(schema.get("items", {}))
        inner = _type_of(items)
        return f"list of {inner}s" if inner in ("object", "string") else f"list of {inner}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
        return f"map of string to {_type_of(_flat(schema['additionalProperties']))}"
    if kind:
        return str(kind)
    if "oneOf" in schema:
        kinds = {_flat(b).get("type") for b in schema["oneOf"] if isinstance(b, dict)}
        return str(kinds.pop()) if len(kinds) == 1 and None not in kinds else "one of"
    return "any"


def _scalar_rules(schema: Mapping[str, Any]) -> list[str]:
    """Constraints on one value: allowed values, pattern, format, range, length."""
    rules: list[str] = []
    if "const" in schema:
        rules.append(f"always {_code(schema['const'])}")
    if "enum" in schema:
        rules.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    if "pattern" in schema:
        rules.append(f"pattern {_code(schema['pattern'])}")
    if "not" in schema and isinstance(schema["not"], dict) and "pattern" in schema["not"]:
        rules.append(f"must not match {_code(schema['not']['pattern'])}")
    if "format" in schema:
        rules.append(f"format {_code(schema['format'])}")
    for rule in (_bounds(schema.get("minimum"), schema.get("maximum"), lambda n: ""),
                 _bounds(schema.get("minLength"), schema.get("maxLength"),
                         lambda n: " character" if n == 1 else " characters")):
        if rule:
            rules.append(rule)
    return rules


def _bounds(low: Any, high: Any, unit: Callable[[Any], str]) -> str | None:
    """`low to high`, `at least low` or `at most high`, each number followed by its `unit`."""
    if low is not None and high is not None:
        return f"{low} to {high}{unit(high)}"
    if low is not None:
        return f"at least {low}{unit(low)}"
    if high is not None:
        return f"at most {high}{unit(high)}"
    return None


def _rules(schema: Mapping[str, Any]) -> str:
    rules = _scalar_rules(schema)
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and high is not None:
        rules.append(f"{low} to {high} items" if low != high else f"exactly {low} items")
    elif high is not None:
        rules.append(f"at most {high} items")
    elif low is not None:
        rules.append(f"at least {low} item{'s' if low != 1 else ''}")
    if schema.get("uniqueItems"):
        rules.append("unique")
    if schema.get("type") == "array":
        items = _flat(schema.get("items", {}))
        if items.get("type") != "object":
            each = _scalar_rules(items)
            if each:
                rules.append("each: " + ", ".join(each))
    if "maxProperties" in schema:
        rules.append(f"at most {schema['maxProperties']} entries")
    names = schema.get("propertyNames")
    if isinstance(names, dict):
        names = _flat(names)
        keys = _scalar_rules(names)
        condition, then = names.get("if"), names.get("then")
        if isinstance(condition, dict) and isinstance(then, dict) and "pattern" in condition and "enum" in then:
            keys.append(f"keys matching {_code(condition['pattern'])} must be one of "
                        + ", ".join(_code(v) for v in then["enum"]))
        if keys:
            rules.append("keys: " + ", ".join(keys))
    values = schema.get("additionalProperties")
    if isinstance(values, dict) and schema.get("type") == "object":
        each = _scalar_rules(_flat(values))
        if each:
            rules.append("values: " + ", ".join(each))
    if "oneOf" in schema:
        titles = [str(b.get("title")) for b in schema["oneOf"] if isinstance(b, dict) and b.get("title")]
        if titles:
            rules.append("one of the forms: " + "; ".join(_cell(t) for t in titles))
    examples = schema.get("examples")
    if "pattern" in schema and isinstance(examples, list) and examples and isinstance(examples[0], str):
        rules.append(f"e.g. {_code(examples[0])}")
    return "; ".join(rules)


def _child_path(parent: str, name: str) -> str:
    key = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f'["{name}"]'
    if not parent:
        return key
    return parent + key if key.startswith("[") else f"{parent}.{key}"


def _walk(schema: Mapping[str, Any], path: str, required: bool, rows: list[FieldDoc]) -> None:
    node = _flat(schema)
    if path:
        kind = _type_of(node)
        rows.append(FieldDoc(
            path=path,
            type=f"{kind}, **required**" if required else kind,
            default=_code(node["default"]) if "default" in node else "",
            allowed=_rules(node),
            description=_cell(str(node.get("description", ""))),
        ))
    if node.get("type") == "array":
        items = _flat(node.get("items", {}))
        if items.get("type") == "object" or "oneOf" in items:
            _children(items, f"{path}[]", rows)
        return
    _children(node, path, rows)


def _children(node: Mapping[str, Any], path: str, rows: list[FieldDoc]) -> None:
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        if isinstance(sub, dict):
            _walk(sub, _child_path(path, name), name in required, rows)
    branches = [_flat(b) for b in node.get("oneOf", []) if isinstance(b, dict)]
    if branches:
        _merge_branches(branches, path, rows)


def _merge_branches(branches: list[dict[str, Any]], path: str, rows: list[FieldDoc]) -> None:
    """Fields of alternative forms (oneOf), one row per path.

    A field of only some forms says which (on its top-most row); a field all forms share but
    describe differently gives each form's text.
    """
    order: list[str] = []
    by_path: dict[str, list[tuple[str, FieldDoc]]] = {}
    for branch in branches:
        found: list[FieldDoc] = []
        _children(branch, path, found)
        for row in found:
            if row.path not in by_path:
                order.append(row.path)
            by_path.setdefault(row.path, []).append((str(branch.get("title", "")), row))
    partial = {p for p, variants in by_path.items() if len(variants) < len(branches)}
    for field_path in order:
        variants = by_path[field_path]
        first = variants[0][1]
        if len(variants) == 1 and len(branches) > 1:
            nested = any(field_path.startswith((f"{other}.", f"{other}[")) for other in partial if other != field_path)
            if not nested:
                first = FieldDoc(first.path, first.type, first.default, first.allowed,
                                 f"*{_cell(variants[0][0])}* only. {first.description}")
            rows.append(first)
            continue

        def joined(attribute: str, variants: list[tuple[str, FieldDoc]] = variants) -> str:
            values = [(title, getattr(row, attribute)) for title, row in variants]
            if len({value for _title, value in values}) == 1:
                return values[0][1]
            separator = " " if attribute == "description" else "; "  # descriptions end in a full stop
            return separator.join(f"*{_cell(title)}*: {value or '—'}" for title, value in values)

        rows.append(FieldDoc(field_path, joined("type"), joined("default"), joined("allowed"), joined("description")))


def manifest_fields(kind: str, schemas: SchemaSet | None = None) -> list[FieldDoc]:
    """Every field of a manifest kind ("Cluster", "Deployment"), depth first, in schema order."""
    schemas = schemas or SchemaSet()
    # The inlined form (every $ref resolved), exactly what validation checks documents against;
    # SchemaSet keeps it to itself, this module is its only other reader.
    rows: list[FieldDoc] = []
    _children(_flat(schemas.inlined(kind)), "", rows)
    return rows


def manifest_reference(kind: str, schemas: SchemaSet | None = None) -> str:
    schemas = schemas or SchemaSet()
    root = schemas.files[SCHEMA_FILES[kind]]
    file = f"schemas/{SCHEMA_FILES[kind]}"
    rows = [(f"`{r.path}`", r.type, r.default, r.allowed, r.description) for r in manifest_fields(kind, schemas)]
    intro = (
        f"**{kind}** ([`{file}`]({file})): {_cell(root.get('description', ''))}\n\n"
    )
    return intro + _table(("Field", "Type", "Default", "Allowed values", "Description"), rows)


# --- command line -----------------------------------------------------------------------------


@contextlib.contextmanager
def _neutral_environment() -> Iterator[None]:
    """No DRIFTWARDEN_* of the caller, and a cache directory written as ~/.cache."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("DRIFTWARDEN_")]:
            del os.environ[name]
        os.environ["XDG_CACHE_HOME"] = "~/.cache"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _build_parser() -> argparse.ArgumentParser:
    return build_parser()


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if not isinstance(a, argparse._HelpAction)]


def _long_flag(action: argparse.Action) -> str | None:
    return next((s for s in action.option_strings if s.startswith("--")), None)


def environment_variables(command: str) -> dict[str, str]:
    """Each option of `command` that reads a DRIFTWARDEN_* variable: {variable: option}.

    From the option table, the same rows the parser reads variables by (tests/test_cli_options.py
    checks that setting each one really changes what the parser gives).
    """
    return options.environment_variables(command)


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and action.metavar is None:
        return "|".join(str(c) for c in action.choices)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.nargs in ("*", "+"):
        return f"{metavar} ..."
    return metavar


def _synopsis(command: argparse.ArgumentParser, width: int = 96) -> str:
    """A usage line like argparse's, but the same on every Python and terminal."""
    grouped: dict[int, argparse._MutuallyExclusiveGroup] = {}
    for group in command._mutually_exclusive_groups:
        for action in group._group_actions:
            grouped[id(action)] = group
    parts: list[str] = []
    done: set[int] = set()
    for action in _options(command):
        if id(action) in done:
            continue
        group = grouped.get(id(action))
        members = list(group._group_actions) if group is not None else [action]
        done.update(id(a) for a in members)
        if not action.option_strings:
            metavar = _metavar(action)
            parts.append(f"[{metavar}]" if action.nargs in ("*", "?") else metavar)
            continue
        text = " | ".join(f"{_long_flag(m)} {_metavar(m)}".rstrip() for m in members)
        parts.append(text if action.required else f"[{text}]")
    # Wrapped between parts, never inside one.
    indent = " " * (len(command.prog) + 1)
    lines = [command.prog]
    for part in parts:
        if len(lines[-1]) + 1 + len(part) > width and lines[-1].strip():
            lines.append(indent + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


def cli_reference(name: str) -> str:
    """One command's synopsis, description and options table."""
    with _neutral_environment():
        command = _commands(_build_parser())[name]
        variables = {flag: variable for variable, flag in environment_variables(name).items()}
        notes = {o.flag: o.environment_note for o in options.options_of(name) if o.environment_note}
        rows = []
        for action in _options(command):
            flag = _long_flag(action)
            metavar = _metavar(action)
            label = f"{flag} {metavar}".rstrip() if flag else metavar
            if action.option_strings and action.required:
                label += " (required)"
            if isinstance(action, argparse._AppendAction):
                label += " (repeatable)"
            variable = variables.get(flag or "")
            note = notes.get(flag or "")
            environment = (_code(variable) + (f" ({note})" if note else "")) if variable else "—"
            rows.append((_code(label), environment, _cell(action.help or "")))
        synopsis = _synopsis(command)
        text = f"```text\n{synopsis}\n```\n\n"
        if command.description:
            text += _cell(command.description).replace("\\|", "|") + "\n\n"
        if rows:
            text += _table(("Option", "Environment variable", "Meaning"), rows)
        if command.epilog:
            text += "\n" + _cell(command.epilog).replace("\\|", "|") + "\n"
        return text


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDoc:
    name: str
    type: str
    labels: tuple[str, ...]
    description: str


def metric_docs() -> list[MetricDoc]:
    """Every metric family `Metrics` registers, in the order it defines them, as users query them."""
    from driftwarden.runtime.metrics import Metrics, SnapshotGauge

    metrics = Metrics(version="0")
    found: list[MetricDoc] = []
    for collector in vars(metrics).values():
        if isinstance(collector, SnapshotGauge):
            found.append(MetricDoc(collector.name, "gauge", tuple(collector.labels), collector.documentation))
        elif hasattr(collector, "describe") and hasattr(collector, "_labelnames"):
            # A prometheus_client Counter, Gauge or Histogram (metrics.py is the only module that
            # imports the library). Label names are only held by the wrapper: no public accessor.
            (family,) = collector.describe()
            name = f"{family.name}_total" if family.type == "counter" else family.name
            found.append(MetricDoc(name, family.type, tuple(collector._labelnames), family.documentation))
    return found


def metrics_reference() -> str:
    rows = []
    for doc in metric_docs():
        name = _code(doc.name)
        if doc.type == "histogram":
            name += " (`_bucket`, `_sum`, `_count`)"
        labels = ", ".join(_code(label) for label in doc.labels) or "—"
        rows.append((name, doc.type, labels, _cell(doc.description)))
    return _table(("Metric", "Type", "Labels", "Meaning"), rows)


# --- README sections --------------------------------------------------------------------------


def sections() -> dict[str, Callable[[], str]]:
    """Every generated section by marker name; README.md must carry each of them."""
    schemas = SchemaSet()
    found: dict[str, Callable[[], str]] = {
        name: (lambda kind=kind: manifest_reference(kind, schemas)) for name, kind in _SCHEMA_SECTIONS.items()
    }
    with _neutral_environment():
        commands = list(_commands(_build_parser()))
    for command in commands:
        found[f"cli-{command}"] = lambda command=command: cli_reference(command)
    found["metrics"] = metrics_reference
    return found


@dataclass(frozen=True)
class Section:
    name: str
    start: int  # offset of the first character after the begin marker line
    end: int  # offset of the end marker


def find_sections(text: str) -> dict[str, Section]:
    found: dict[str, Section] = {}
    for match in BEGIN.finditer(text):
        name = match.group("name")
        end = text.find(END.format(name=name), match.end())
        if end < 0:
            raise ValueError(f"README: <!-- reference:{name}:begin --> has no matching {END.format(name=name)}")
        if name in found:
            raise ValueError(f"README: section {name!r} appears twice")
        found[name] = Section(name, match.end(), end)
    return found


def render(text: str) -> tuple[str, list[str]]:
    """`text` with every generated section brought up to date, and the names of missing sections."""
    generators = sections()
    present = find_sections(text)
    missing = [name for name in generators if name not in present]
    unknown = [name for name in present if name not in generators]
    if unknown:
        raise ValueError(f"README: unknown generated section(s): {', '.join(unknown)}")
    result, last = [], 0
    for section in sorted(present.values(), key=lambda s: s.start):
        result.append(text[last:section.start])
        result.append(generators[section.name]())
        last = section.end
    result.append(text[last:])
    return "".join(result), missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE,
        description="Regenerate the reference sections of README.md (manifest fields, commands, metrics).",
    )
    parser.add_argument("readme", nargs="?", default="README.md", type=Path, help="default: ./README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section is out of date")
    args = parser.parse_args(argv)
    old = args.readme.read_text(encoding="utf-8")
    new, missing = render(old)
    if missing:
        print(f"{args.readme}: no place for generated section(s) {', '.join(missing)}: add "
              f"<!-- reference:NAME:begin --> and <!-- reference:NAME:end --> lines", file=sys.stderr)
        return 1
    if new == old:
        print(f"{args.readme}: generated sections are up to date")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"{args.readme}", f"{args.readme} (generated)"))
        print(f"{args.readme}: generated sections are out of date; run `{REGENERATE}`", file=sys.stderr)
        return 1
    args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: generated sections rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
