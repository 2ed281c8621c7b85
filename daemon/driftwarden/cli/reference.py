"""The reference sections of README.md, generated from what defines them, so they cannot drift.

Three kinds of section, each rendered as Markdown from its single source of truth:

* ``cluster`` and ``deployment``: every field of the manifest schemas (`schemas.SchemaSet`,
  with every ``$ref`` inlined) — dotted path, type, default, allowed values and description,
  rendered by `reference_schemas`;
* ``cli-<command>``: the options of each ``driftwarden`` command, read from the argparse parser
  that `cli.options` builds from its option table, with the ``DRIFTWARDEN_*`` variable each
  option reads (from the same table, which is also what the parser reads variables by);
* ``metrics``: every metric family registered by `metrics.Metrics`, with its type and labels.

This module renders the command and metric sections itself and places all of them; the
Markdown escaping every table shares is `cli.markdown`.

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
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from driftwarden.cli import options
from driftwarden.cli.main import build_parser
from driftwarden.cli.markdown import cell as _cell
from driftwarden.cli.markdown import code as _code
from driftwarden.cli.markdown import table as _table
from driftwarden.cli.reference_schemas import manifest_reference
from driftwarden.manifests.schemas import SchemaSet

BEGIN = re.compile(r"<!-- reference:(?P<name>[a-z0-9-]+):begin\b[^>]*-->\n")
END = "<!-- reference:{name}:end -->"
REGENERATE = "python -m driftwarden.cli.reference"
_SCHEMA_SECTIONS = {"cluster": "Cluster", "deployment": "Deployment"}


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
    for exclusive in command._mutually_exclusive_groups:
        for action in exclusive._group_actions:
            grouped[id(action)] = exclusive
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
        name: functools.partial(manifest_reference, kind, schemas) for name, kind in _SCHEMA_SECTIONS.items()
    }
    with _neutral_environment():
        commands = list(_commands(_build_parser()))
    for command in commands:
        found[f"cli-{command}"] = functools.partial(cli_reference, command)
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
