"""The manifest field reference: every field of the Cluster and Deployment schemas as a table.

Reads the schemas as validation uses them (`schemas.SchemaSet`, every ``$ref`` inlined) and
writes one row per dotted field path: type, default, allowed values and description. Fields
of alternative forms (``oneOf``) are merged into one row per path that says which form has
them. `reference` places the result in README.md.

What this module must not do: read or write README.md, or depend on the machine it runs on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from driftwarden.cli.markdown import cell as _cell
from driftwarden.cli.markdown import code as _code
from driftwarden.cli.markdown import table as _table
from driftwarden.manifests.schemas import SCHEMA_FILES, SchemaSet

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
            values: list[tuple[str, str]] = [(title, str(getattr(row, attribute))) for title, row in variants]
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

