"""The JSON Schemas shipped with driftwarden, and what is derived from them.

The schemas in `schemas/` are the single source of truth for the manifest format: validation
checks documents against them, and the defaults written in them (`default` keywords) are the
defaults applied to every object, so documentation and behaviour cannot disagree.

This is the only module that imports jsonschema and referencing.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_FILES = {
    "Cluster": "cluster.schema.json",
    "Deployment": "deployment.schema.json",
    "AstroDeploymentFile": "astro-deployment.schema.json",
}
ENVELOPE_FILE = "envelope.schema.json"


def _read_schema_files() -> dict[str, dict[str, Any]]:
    folder = resources.files("driftwarden.manifests") / "schemas"
    loaded: dict[str, dict[str, Any]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".schema.json"):
            loaded[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
    return loaded


@dataclass(frozen=True)
class SchemaError:
    """One schema violation, before it is given a file position."""

    pointer: str
    message: str
    rule: str


class SchemaSet:
    """Compiled validators for every manifest kind, built once per process."""

    def __init__(self, files: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.files = dict(files) if files is not None else _read_schema_files()
        resources_ = [
            (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012))
            for schema in self.files.values()
        ]
        self.registry: Registry[Any] = Registry().with_resources(resources_)
        self._format_checker = FormatChecker()
        # Every $ref is resolved once, here, into a self-contained schema per kind: following
        # references during validation cost more than a third of all validation time.
        self._inlined = {
            kind: self._inline_root(self.files[name]) for kind, name in SCHEMA_FILES.items() if name in self.files
        }
        self._validators = {
            kind: Draft202012Validator(schema, format_checker=self._format_checker)
            for kind, schema in self._inlined.items()
        }

    def inlined(self, kind: str) -> Mapping[str, Any]:
        """The self-contained schema of `kind` (every `$ref` resolved); read it, do not change it."""
        return self._inlined[kind]

    def _inline_root(self, schema: dict[str, Any]) -> dict[str, Any]:
        inlined: dict[str, Any] = self._inline(schema, schema["$id"], 0)
        inlined.pop("$defs", None)
        inlined["$id"] = schema["$id"]
        return inlined

    def _inline(self, node: Any, base_uri: str, depth: int) -> Any:
        if depth > 64:
            raise ValueError("schema references nest too deeply (a reference cycle?)")
        if isinstance(node, list):
            return [self._inline(item, base_uri, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            resolved = self.registry.resolver(base_uri=base_uri).lookup(node["$ref"])
            target_base = resolved.resolver._base_uri or base_uri
            target = self._inline(resolved.contents, target_base, depth + 1)
            target = {k: v for k, v in target.items() if k not in ("$id", "$schema", "$defs")}
            siblings = {k: self._inline(v, base_uri, depth + 1) for k, v in node.items() if k != "$ref"}
            if (set(target) & set(siblings)) - _ANNOTATIONS:
                # Both constrain the same keyword: keep both, as $ref semantics do.
                return {**siblings, "allOf": [*siblings.get("allOf", []), target]}
            return {**target, **siblings}
        inlined: dict[str, Any] = {}
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                # Keys here are names (a property may be called "description"), values schemas.
                inlined[key] = {name: self._inline(sub, base_uri, depth + 1) for name, sub in value.items()}
            elif key in _LITERAL_KEYWORDS:
                inlined[key] = value
            else:
                inlined[key] = self._inline(value, base_uri, depth + 1)
        return inlined

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever any schema changes; part of the validation cache key."""
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode())
            digest.update(json.dumps(self.files[name], sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def schema(self, kind: str) -> dict[str, Any]:
        return self.files[SCHEMA_FILES[kind]]

    def check(self, kind: str, document: Any, raw_scalars: Mapping[str, str] | None = None) -> list[SchemaError]:
        """Every schema violation of `document`, each with a message a person understands."""
        found: list[SchemaError] = []
        for error in self._validators[kind].iter_errors(document):
            found.extend(_describe(error, raw_scalars or {}))
        return found

    def apply_defaults(self, kind: str, document: Any) -> Any:
        """A copy of `document` with every schema default filled in where the author wrote nothing."""
        result = copy.deepcopy(document)
        _fill(self._inlined[kind], result, depth=0)
        return result


# Keywords whose values are data, not schemas: never inlined into.
_LITERAL_KEYWORDS = frozenset({"const", "enum", "default", "examples", "required", "title", "description"})
# Keywords whose value maps names to schemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
# Keywords that only annotate; a $ref and its siblings may both carry them.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`properties` of a schema, including those of its allOf members (from inlined $refs)."""
    found: dict[str, Any] = {}
    for member in schema.get("allOf", []):
        if isinstance(member, dict):
            found.update(_properties(member))
    found.update(schema.get("properties", {}))
    return found


def _fill(schema: Mapping[str, Any], instance: Any, depth: int) -> None:
    if depth > 32:
        return
    if isinstance(instance, dict):
        for key, sub in _properties(schema).items():
            if not isinstance(sub, dict):
                continue
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill(sub, instance[key], depth + 1)
    elif isinstance(instance, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in instance:
                _fill(items, item, depth + 1)


def pointer_of(path: Any) -> str:
    """JSON pointer of a jsonschema error path (deque of keys and indexes)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


# --- turning jsonschema errors into sentences -------------------------------------------------

_JSON_TYPES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing (null)",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _expected_list(values: Iterable[Any]) -> str:
    shown = [str(v) for v in values]
    if len(shown) > 24:
        shown = [*shown[:24], "..."]
    return ", ".join(shown)


def _describe(error: ValidationError, raw_scalars: Mapping[str, str]) -> list[SchemaError]:
    pointer = pointer_of(error.absolute_path)
    validator = error.validator
    # The instance and the keyword's value are whatever JSON the document and schema hold.
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.relative_schema_path:
        key_pointer = f"{pointer}/{str(value).replace('~', '~0').replace('/', '~1')}"
        detail = _describe_value(error, raw_scalars, key_pointer)
        return [SchemaError(key_pointer, f"key {value!r} is not allowed: {detail}", "schema.key")]
    if validator == "required":
        missing = [name for name in expected if isinstance(value, dict) and name not in value]
        return [
            SchemaError(f"{pointer}/{name}", f"missing required field {name!r}", "schema.required")
            for name in missing
        ] or [SchemaError(pointer, error.message, "schema.required")]
    if validator == "additionalProperties" and isinstance(value, dict):
        known = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extras = [k for k in value if k not in known and not any(re.search(p, k) for p in patterns)]
        return [
            SchemaError(
                f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}",
                f"unknown field {key!r}{_suggest(key, known) or _known_fields(known)}",
                "schema.unknown-field",
            )
            for key in extras
        ] or [SchemaError(pointer, error.message, "schema.unknown-field")]
    if validator in ("oneOf", "anyOf"):
        return [SchemaError(pointer, _describe_alternatives(error, raw_scalars), f"schema.{validator}")]
    return [SchemaError(pointer, _describe_value(error, raw_scalars, pointer), f"schema.{validator}")]


def _known_fields(known: Iterable[str]) -> str:
    names = sorted(known)
    return f"; expected one of: {', '.join(names)}" if names else ""


def _describe_value(error: ValidationError, raw_scalars: Mapping[str, str], pointer: str) -> str:
    validator = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "enum":
        hint = _suggest(value, [str(v) for v in expected]) if isinstance(value, str) else ""
        return f"{_show(value)} is not allowed; expected one of: {_expected_list(expected)}{hint}"
    if validator == "const":
        return f"must be {_show(expected)}, not {_show(value)}"
    if validator == "type":
        wanted: list[str] = expected if isinstance(expected, list) else [expected]
        message = f"expected {' or '.join(_JSON_TYPES.get(t, t) for t in wanted)}, got {_type_of(value)}"
        raw = raw_scalars.get(pointer)
        # Only for a scalar read as a number or boolean: an empty value (null) has no text to quote.
        if "string" in wanted and raw and value is not None:
            message += f'; YAML read {raw} as {_type_of(value).split(" ", 2)[1]}, write it in quotes: "{raw}"'
        return message
    if validator == "pattern":
        example = schema.get("examples")
        if isinstance(example, list) and example:
            # An example says more to a person than the regular expression does.
            return f"{_show(value)} is not in the expected form, for example {_show(example[0])}"
        return f"{_show(value)} is not in the expected form (pattern {expected})"
    if validator == "format":
        name = {"email": "email address"}.get(expected, expected)
        return f"{_show(value)} is not a valid {name}"
    if validator in ("minimum", "exclusiveMinimum"):
        return f"{value} is below the minimum of {expected}"
    if validator in ("maximum", "exclusiveMaximum"):
        return f"{value} is above the maximum of {expected}"
    if validator == "minItems":
        return f"has {len(value)} item(s); at least {expected} required"
    if validator == "maxItems":
        return f"has {len(value)} items; at most {expected} allowed"
    if validator == "uniqueItems":
        return "items must be unique"
    if validator == "minLength":
        return f"{_show(value)} is too short (at least {expected} characters)"
    if validator == "maxLength":
        return f"is {len(value)} characters long; at most {expected} allowed"
    if validator == "maxProperties":
        return f"has {len(value)} entries; at most {expected} allowed"
    if validator == "minProperties":
        return f"must have at least {expected} entr{'y' if expected == 1 else 'ies'}"
    if validator == "not":
        return f"{_show(value)} is not allowed here"
    return error.message


def _branch_label(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "?"
    if "title" in schema:
        return str(schema["title"])
    if "required" in schema:
        return "{" + ", ".join(schema["required"]) + "}"
    if "type" in schema:
        return str(schema["type"])
    return "?"


def _describe_alternatives(error: ValidationError, raw_scalars: Mapping[str, str]) -> str:
    value = error.instance
    # Secret values must never be written into Git; say so plainly rather than as a
    # schema puzzle, because this is the mistake the oneOf exists to catch.
    if isinstance(value, dict) and value.get("isSecret") is True and "value" in value:
        return (
            "a secret variable must not carry its value in Git: remove 'value' and read it at "
            "apply time with valueFrom (secretsManagerArn, ssmParameter or env)"
        )
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    forms = " | ".join(_branch_label(b) for b in branches)
    closest = _closest_branch_error(error, branches)
    detail = ""
    if closest is not None:
        detail = "; closest: " + _describe(closest, raw_scalars)[0].message
    return f"matches none of the allowed forms ({forms}){detail}"


def _closest_branch_error(error: ValidationError, branches: list[Any]) -> ValidationError | None:
    """The first error of the branch the author most likely meant.

    jsonschema's best_match prefers shallow errors, which often describes the wrong branch
    ("missing isSecret" for a plain variable with a numeric value). The branch whose known
    properties cover most of the keys the author wrote is the one they meant.
    """
    context = list(error.context or [])
    if not context:
        return None
    value: Any = error.instance
    if not isinstance(value, dict) or not branches:
        return _best_match(context)

    def score(index: int) -> tuple[int, int, int, int]:
        branch = branches[index] if isinstance(branches[index], dict) else {}
        known = set(branch.get("properties", {})) | set(branch.get("required", []))
        covered = len(set(value) & known)
        # Errors about the value itself (a missing or unknown key) mean the author did not
        # write this form; errors only inside one of its fields mean they did and got a
        # detail wrong. Unlike `known`, this also works for a branch that is only a $ref.
        shallow = sum(1 for sub in by_branch[index] if not sub.relative_path)
        return (-shallow, -len(by_branch[index]), covered, -len(set(value) - known))

    by_branch: dict[int, list[ValidationError]] = {}
    for sub in context:
        if sub.relative_schema_path:
            by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    if not by_branch:
        return _best_match(context)
    chosen = max(by_branch, key=score)
    return _best_match(by_branch[chosen])


def _best_match(errors: Iterable[ValidationError]) -> ValidationError | None:
    # jsonschema's stubs type best_match's answer as Any; it is one of `errors`, or None.
    match: ValidationError | None = best_match(errors)
    return match
