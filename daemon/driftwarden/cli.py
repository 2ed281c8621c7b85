"""The `driftwarden` command: turns flags and environment into calls; no logic of its own.

Every option can also be given as an environment variable `DRIFTWARDEN_<OPTION>` (dashes as
underscores, upper case), e.g. `DRIFTWARDEN_FORMAT=github`; a flag on the command line wins.

Exit codes follow the contract in PRODUCT.md: 0 success, 1 invalid manifests (or an error
while working), 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import boto3

from . import __version__, policies, render
from .apply import ApplySettings
from .errors import DriftwardenError, UsageError
from .graph import DEFAULT_INSTANCE
from .providers.aws import AwsSessions
from .providers.registry import load_providers
from .reconcile import (
    ReconcileSettings,
    SecretResolver,
    apply_once,
    control_secret_resolver,
    plan_once,
    sandbox_secret_resolver,
)
from .sandbox import Sandbox, seed_existing
from .schemas import ENVELOPE_FILE, SCHEMA_FILES
from .source import redact_url
from .validation import ValidationResult, default_cache_dir, default_schemas, validate_paths

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CHANGES = 2

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

    plan = commands.add_parser(
        "plan",
        help="show what apply would change in AWS; changes nothing",
        description=(
            "Validate the manifests, read every managed resource in every account and region "
            "they name, and show the changes that would make AWS match Git: + create, ~ update, "
            "± replace, - delete, with field-level observed → desired values. Secret values are "
            "never shown."
        ),
        epilog="Exit codes: 0 no changes (or changes without --detailed-exitcode), 1 error, "
        "2 changes present (with --detailed-exitcode) or usage error.",
    )
    _source_options(plan)
    plan.add_argument(
        "--format", choices=("text", "json"), default=_env_default("format", "text"), help="text (default) or json"
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        default=_env_default("detailed-exitcode") == "1",
        help="exit 2 when there are changes (for CI)",
    )
    plan.set_defaults(handler=cmd_plan)

    apply = commands.add_parser(
        "apply",
        help="make AWS match Git once, showing progress",
        description=(
            "One reconcile: plan, then carry the plan out in dependency order, independent work "
            "in parallel, long AWS operations awaited with progress. A failure stops only what "
            "depends on it; every change is reported."
        ),
        epilog="Exit codes: 0 everything applied, 1 something failed or was invalid, 2 usage error.",
    )
    _source_options(apply)
    apply.add_argument(
        "--prune",
        action="store_true",
        default=_env_default("prune") == "1",
        help="delete resources of objects no longer in Git (off by default; never when a manifest is invalid)",
    )
    apply.add_argument(
        "--prune-limit", type=int, default=int(_env_default("prune-limit", "20") or 20),
        help="at most this many deletions per run (default 20)",
    )
    apply.add_argument(
        "--no-wait",
        action="store_true",
        default=_env_default("no-wait") == "1",
        help="start long AWS operations and return; the next run continues where AWS is",
    )
    apply.add_argument(
        "--timeout", type=float, default=float(_env_default("timeout", "2700") or 2700),
        help="seconds to wait for one long AWS operation (default 2700)",
    )
    apply.add_argument(
        "--apply-immediately",
        action="store_true",
        default=_env_default("apply-immediately") == "1",
        help="RDS: modify the database now instead of in its next maintenance window",
    )
    apply.set_defaults(handler=cmd_apply)

    trust = commands.add_parser(
        "trust-policy",
        help="print the trust policy the role in a target account needs",
        description=(
            "Print the trust policy for driftwarden's role in one target account: the control "
            "account may assume it only with the ExternalIds of that account's clusters (read "
            "from the manifests). Warns past IAM's 2,048-character default limit."
        ),
    )
    trust.add_argument("--account", required=True, help="the target account id (12 digits)")
    trust.add_argument(
        "--control",
        default=_env_default("control"),
        help="control account id or principal ARN allowed to assume the role (default: the caller's account, via STS)",
    )
    trust.add_argument("--source", default=_env_default("source", "."), help="directory of manifests (default: .)")
    trust.add_argument("--path", default=_env_default("path"), help="subdirectory of the source to read")
    trust.set_defaults(handler=cmd_trust_policy)

    iam = commands.add_parser(
        "iam-policy",
        help="print the least-privilege permissions policy for the target-account role",
        description=(
            "Print the permissions policy for driftwarden's role in target accounts, generated "
            "from the IAM actions every resource provider declares it calls."
        ),
    )
    iam.set_defaults(handler=cmd_iam_policy)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of a manifest kind",
        description="Print a JSON Schema (2020-12) shipped with driftwarden, e.g. for editors and CI.",
    )
    schema.add_argument("kind", metavar="KIND", type=str.lower, choices=sorted(SCHEMA_NAMES), help=", ".join(sorted(SCHEMA_NAMES)))
    schema.set_defaults(handler=cmd_schema)
    return parser


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        default=_env_default("source", "."),
        help="directory of manifests (default: .)",
    )
    parser.add_argument("--path", default=_env_default("path"), help="subdirectory of the source to read")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        default=_env_default("sandbox") == "1",
        help="run against an embedded simulated AWS on 127.0.0.1 (needs driftwarden[sandbox]); starts empty",
    )
    parser.add_argument(
        "--instance",
        default=_env_default("instance", DEFAULT_INSTANCE),
        help="this installation's name in the driftwarden:managed-by tag (default: driftwarden)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args, sys.stdout))
    except UsageError as exc:
        print(f"driftwarden: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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


# --- plan and apply -------------------------------------------------------------------------------


def _manifest_root(args: argparse.Namespace) -> Path:
    source = str(args.source)
    if "://" in source or source.startswith("git@"):
        raise UsageError(f"--source {redact_url(source)}: Git sources are read by `driftwarden run`; "
                         "for plan/apply, clone the repository and pass its directory")
    root = Path(source) / args.path if args.path else Path(source)
    if not root.is_dir():
        raise UsageError(f"--source {root}: not a directory")
    return root


def directory_revision(files: Sequence[str]) -> str:
    """A content hash standing in for a Git revision when the source is a plain directory."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(Path(name).read_bytes())
    return "dir:" + digest.hexdigest()[:12]


@contextlib.contextmanager
def _aws(args: argparse.Namespace, validation: ValidationResult) -> Iterator[tuple[AwsSessions, SecretResolver]]:
    if args.sandbox:
        with Sandbox() as sandbox:
            sandbox.apply(os.environ)
            print(f"sandbox: simulated AWS at {sandbox.endpoint_url} (empty at start)", file=sys.stderr)
            with AwsSessions(boto3.Session, endpoint_url=sandbox.endpoint_url) as sessions:
                for line in seed_existing(sandbox, sessions, validation.clusters, validation.deployments):
                    print(f"sandbox: created {line} (a real account would already have it)", file=sys.stderr)
                yield sessions, sandbox_secret_resolver()
        return
    with AwsSessions(boto3.Session) as sessions:
        region = boto3.Session().region_name or "us-east-1"
        yield sessions, control_secret_resolver(sessions, region)


def _validated(args: argparse.Namespace) -> tuple[ValidationResult, str] | None:
    root = _manifest_root(args)
    result = validate_paths([root], cache_dir=None)
    if not result.valid:
        sys.stderr.write(render.validation_text(result))
        sys.stderr.write("nothing was read from or changed in AWS: fix the manifests first\n")
        return None
    for warning in result.warnings:
        print(str(warning), file=sys.stderr)
    return result, directory_revision(result.files)


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    validated = _validated(args)
    if validated is None:
        return EXIT_INVALID
    validation, revision = validated
    settings = ReconcileSettings(instance=args.instance)
    with _aws(args, validation) as (sessions, resolver):
        result = plan_once(validation, sessions, revision=revision, settings=settings, resolve_secret=resolver)
    assert result.plan is not None
    if args.format == "json":
        out.write(render.plan_json(result.plan))
    else:
        out.write(render.plan_text(result.plan, heading=f"driftwarden plan: revision {revision} ({args.source})"))
    if result.plan.errors:
        return EXIT_INVALID
    if args.detailed_exitcode and result.plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace, out: TextIO) -> int:
    validated = _validated(args)
    if validated is None:
        return EXIT_INVALID
    validation, revision = validated
    settings = ReconcileSettings(
        instance=args.instance,
        prune=args.prune,
        prune_limit=args.prune_limit,
        apply=ApplySettings(
            wait=not args.no_wait, timeout_seconds=args.timeout, apply_immediately=args.apply_immediately
        ),
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with _aws(args, validation) as (sessions, resolver):
        result = apply_once(
            validation, sessions, revision=revision, settings=settings, resolve_secret=resolver, progress=progress
        )
        assert result.plan is not None
        out.write(render.plan_text(result.plan, heading=f"driftwarden apply: revision {revision} ({args.source})"))
        out.write(render.outcomes_text(result.outcomes))
        if args.sandbox and not result.failed:
            # The sandbox ends with this command: show here that a second pass finds nothing to do.
            check = plan_once(validation, sessions, revision=revision, settings=settings, resolve_secret=resolver)
            assert check.plan is not None
            out.write("Verify: " + render.plan_text(check.plan).rstrip("\n").rsplit("\n", 1)[-1] + "\n")
    return EXIT_INVALID if result.failed else EXIT_OK


# --- IAM documents -----------------------------------------------------------------------------------


def cmd_trust_policy(args: argparse.Namespace, out: TextIO) -> int:
    if not (args.account.isdigit() and len(args.account) == 12):
        raise UsageError(f"--account {args.account!r}: expected a 12-digit AWS account id")
    validated = _validated(args)
    if validated is None:
        return EXIT_INVALID
    validation, _revision = validated
    control = args.control
    if not control:
        with AwsSessions(boto3.Session) as sessions:
            identity = sessions.control_client("sts", boto3.Session().region_name or "us-east-1").get_caller_identity()
        control = identity["Account"]
    document, warnings = policies.trust_policy(validation.clusters, args.account, policies.principal_for(control))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out.write(json.dumps(document, indent=2) + "\n")
    return EXIT_OK


def cmd_iam_policy(args: argparse.Namespace, out: TextIO) -> int:
    out.write(json.dumps(policies.permissions_policy(load_providers()), indent=2) + "\n")
    return EXIT_OK


# --- schema ---------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    kind = SCHEMA_NAMES[args.kind]
    files = default_schemas().files
    name = SCHEMA_FILES[kind] if kind else ENVELOPE_FILE
    out.write(json.dumps(files[name], indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
