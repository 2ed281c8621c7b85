"""The `driftwarden` command: turns flags and environment into calls; no logic of its own.

Every option can also be given as an environment variable `DRIFTWARDEN_<OPTION>` (dashes as
underscores, upper case), e.g. `DRIFTWARDEN_FORMAT=github`; a flag on the command line wins.

Exit codes follow the contract in PRODUCT.md: 0 success, 1 invalid manifests (or an error
while working), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import __version__, render
from .errors import DriftwardenError
from .schemas import ENVELOPE_FILE, SCHEMA_FILES
from .validation import default_cache_dir, default_schemas, validate_paths

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

SCHEMA_NAMES = {
    "cluster": "Cluster",
    "deployment": "Deployment",
    "astro-deployment": "AstroDeploymentFile",
    "envelope": None,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit with 2 and a hint, as the contract says."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def _env_default(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(f"DRIFTWARDEN_{name.upper().replace('-', '_')}", fallback)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="driftwarden",
        description=(
            "GitOps reconciliation for an Airflow platform on AWS: validates Cluster and "
            "Deployment manifests and keeps AWS in line with them."
        ),
        epilog="Every option also reads DRIFTWARDEN_<OPTION> from the environment. "
        "Exit codes: 0 ok, 1 invalid or failed, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"driftwarden {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    validate = commands.add_parser(
        "validate",
        help="check manifests offline and report every problem with file and line",
        description=(
            "Validate every *.yaml/*.yml manifest under PATH (default: the current directory) "
            "against the JSON Schemas and the rules across manifests. Reports all problems of "
            "all files in one run. Works offline; touches nothing."
        ),
        epilog="Exit codes: 0 valid (warnings allowed), 1 invalid, 2 usage error.",
    )
    validate.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .)")
    validate.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default=_env_default("format", "text"),
        help="text for people (default), json for tools, github for workflow annotations",
    )
    validate.add_argument(
        "--cache-dir",
        default=_env_default("cache-dir"),
        help=f"where per-file results are cached by content hash (default: {default_cache_dir()})",
    )
    validate.add_argument(
        "--no-cache", action="store_true", default=_env_default("no-cache") == "1", help="do not read or write the cache"
    )
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of a manifest kind",
        description="Print a JSON Schema (2020-12) shipped with driftwarden, e.g. for editors and CI.",
    )
    schema.add_argument("kind", metavar="KIND", type=str.lower, choices=sorted(SCHEMA_NAMES), help=", ".join(sorted(SCHEMA_NAMES)))
    schema.set_defaults(handler=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args, sys.stdout))
    except DriftwardenError as exc:
        print(f"driftwarden: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


# --- validate -------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    paths = args.paths or ["."]
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        print(f"driftwarden validate: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    result = validate_paths(paths, cache_dir=cache_dir)
    formatter = {
        "text": render.validation_text,
        "json": render.validation_json,
        "github": render.validation_github,
    }[args.format]
    out.write(formatter(result))
    return EXIT_OK if result.valid else EXIT_INVALID


# --- schema ---------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    kind = SCHEMA_NAMES[args.kind]
    files = default_schemas().files
    name = SCHEMA_FILES[kind] if kind else ENVELOPE_FILE
    out.write(json.dumps(files[name], indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
