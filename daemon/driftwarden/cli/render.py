"""What people and tools read: validation reports, plans and apply outcomes as text or JSON.

Text is meant to be read at a glance, like a careful `terraform plan`: one line per problem or
change, field-level `observed → desired`, a summary line last. Secret values never reach
this module (plans carry only content hashes for secrets), and hashes are masked anyway.

What it must not do: decide anything; it only formats values it is given.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from driftwarden.engine.plan import UNKNOWN, Change, Plan
from driftwarden.manifests.problems import Problem
from driftwarden.manifests.result import ValidationResult

if TYPE_CHECKING:
    from driftwarden.engine.apply import Outcome

SYMBOLS = {"create": "+", "update": "~", "replace": "±", "delete": "-", "release": "-"}
# Fields whose values are never shown, only that they changed.
SENSITIVE_FIELDS = frozenset({"ContentHash"})


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- validation --------------------------------------------------------------------------------------


def validation_json(result: ValidationResult) -> str:
    return json.dumps(result.to_json(), indent=2) + "\n"


def validation_summary(result: ValidationResult) -> str:
    objects = ", ".join(_plural(result.declared.get(kind, 0), kind) for kind in ("Cluster", "Deployment"))
    files = _plural(len(result.files), "file")
    warnings = f", {_plural(len(result.warnings), 'warning')}" if result.warnings else ""
    if result.valid:
        return f"valid: {files}, {objects}{warnings}"
    return f"invalid: {_plural(len(result.errors), 'error')}{warnings} in {files} ({objects})"


def validation_text(result: ValidationResult) -> str:
    lines = [str(problem) for problem in result.problems]
    if not result.files:
        lines.append("no manifests found (looked for *.yaml and *.yml)")
    lines.append(validation_summary(result))
    return "\n".join(lines) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(problem: Problem) -> str:
    level = "error" if problem.is_error else "warning"
    subject = f"{problem.kind}/{problem.name} " if problem.kind and problem.name else ""
    field = f"{problem.pointer}: " if problem.pointer else ""
    return (
        f"::{level} file={_escape_property(problem.file)},line={problem.line},col={problem.column},"
        f"title={_escape_property('driftwarden ' + problem.rule)}::{_escape_data(subject + field + problem.message)}"
    )


def validation_github(result: ValidationResult) -> str:
    lines = [github_annotation(problem) for problem in result.problems]
    lines.append(validation_summary(result))
    return "\n".join(lines) + "\n"


# --- plans --------------------------------------------------------------------------------------------


def _value(field: str, value: Any) -> str:
    if field.split(".")[-1] in SENSITIVE_FIELDS and value is not None:
        return "(sensitive)"
    if value is UNKNOWN:
        return "(known after apply)"
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return json.dumps(value) if len(value) <= 120 else json.dumps(value[:117] + "...")
    text = json.dumps(_plain(value), sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _plain(value: Any) -> Any:
    if value is UNKNOWN:
        return "(known after apply)"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _change_lines(change: Change, indent: str = "  ") -> list[str]:
    ident = f" ({change.id})" if change.id else ""
    head = f"{indent}{SYMBOLS[change.action]} {change.type} {change.key.removeprefix(change.owner + '/')}{ident}"
    lines = [head]
    if change.action in ("replace", "delete", "release") or change.reason not in ("does not exist", "drifted from Git"):
        lines.append(f"{indent}    # {change.reason}")
    for diff in change.diff:
        if change.action == "create":
            lines.append(f"{indent}    {diff.path}: {_value(diff.path, diff.desired)}")
        else:
            lines.append(f"{indent}    {diff.path}: {_value(diff.path, diff.observed)} → {_value(diff.path, diff.desired)}")
    return lines


def plan_text(plan: Plan, *, heading: str = "") -> str:
    lines: list[str] = []
    if heading:
        lines += [heading, ""]
    by_owner: dict[tuple[str, str, str], list[Change]] = defaultdict(list)
    for change in plan.changes:
        by_owner[(change.owner, change.account, change.region)].append(change)
    for (owner, account, region), changes in sorted(by_owner.items()):
        lines.append(f"{owner or '(unowned)'}  account {account}, {region}")
        for change in changes:
            lines += _change_lines(change)
        lines.append("")
    if plan.held:
        lines.append("Held back (not applied):")
        for change in plan.held:
            lines += _change_lines(change)
        lines.append("")
    for error in plan.errors:
        lines.append(f"error: {error.key}: {error.message}")
    for warning in plan.warnings:
        lines.append(f"warning: {warning}")
    s = plan.summary()
    if plan.has_changes:
        lines.append(
            f"Plan: {s['create']} to create, {s['update']} to update, {s['replace']} to replace, "
            f"{s['delete']} to delete; {s['unchanged']} unchanged."
        )
    else:
        lines.append(f"No changes: AWS matches Git ({s['unchanged']} resources checked).")
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan, extra_errors: Sequence[dict[str, Any]] = ()) -> str:
    data = plan.to_json()
    data["errors"] = list(extra_errors) + data["errors"]
    return json.dumps(data, indent=2, default=str) + "\n"


def outcomes_text(outcomes: Sequence[Outcome]) -> str:
    counts: dict[str, int] = defaultdict(int)
    lines = []
    for outcome in outcomes:
        counts[outcome.result] += 1
        if outcome.result != "applied":
            lines.append(f"  {outcome.result}: {outcome.change.action} {outcome.change.key}: {outcome.message}")
    summary = ", ".join(f"{counts[k]} {k}" for k in ("applied", "pending", "failed", "skipped") if counts[k])
    lines.append(f"Apply: {summary or 'nothing to do'}.")
    return "\n".join(lines) + "\n"
