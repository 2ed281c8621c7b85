"""The `driftwarden` command: turns flags and environment into calls; no logic of its own.

Every option can also be given as an environment variable `DRIFTWARDEN_<OPTION>` (dashes as
underscores, upper case), e.g. `DRIFTWARDEN_FORMAT=github`; a flag on the command line wins.

Exit codes follow the contract in PRODUCT.md: 0 success, 1 invalid manifests (or an error
while working), 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from driftwarden import __version__
from driftwarden.cli import render
from driftwarden.engine.graph import DEFAULT_INSTANCE
from driftwarden.errors import DriftwardenError, UsageError
from driftwarden.manifests.schemas import ENVELOPE_FILE, SCHEMA_FILES
from driftwarden.manifests.validation import (
    ValidationResult,
    default_cache_dir,
    default_schemas,
    validate_paths,
)

# The AWS engine (boto3), Git (gitpython) and the sandbox (moto) are imported by the commands
# that use them: `validate` runs in pull-request CI and pre-commit, where start-up time counts.
if TYPE_CHECKING:
    from driftwarden.engine.reconcile import SecretResolver
    from driftwarden.providers.aws import AwsSessions

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
    _add_run_command(commands)

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


# --- run (the daemon) -------------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return (_env_default(name) or "").strip().lower() in ("1", "true", "yes", "on")


def _duration(text: str) -> float:
    from driftwarden.runtime.daemon import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_run_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    run = commands.add_parser(
        "run",
        help="the daemon: keep AWS in line with Git, report drift, serve /metrics and /status",
        description=(
            "Follow the source (a Git remote or a directory): every --interval fetch it, validate the "
            "new revision, and reconcile the last valid revision; every --drift-interval check AWS for "
            "drift and repair it (objects annotated driftwarden/drift: warn are only reported). Long AWS "
            "operations are started, never awaited: the next pass continues where AWS is. Serves "
            "/metrics, /healthz, /readyz, /status and a signed /webhook on the metrics port. SIGTERM "
            "lets the pass in progress finish and exits 0."
        ),
        epilog="Durations: 30s, 5m, 1h, 1h30m. Every option also reads DRIFTWARDEN_<OPTION> "
        "(DRIFTWARDEN_APPLY_WINDOW: windows separated by ';').",
    )
    _source_options(run)
    run.add_argument("--ref", default=_env_default("ref"), help="branch, tag or commit to follow (default: the remote's HEAD)")
    run.add_argument("--interval", type=_duration, default=_env_default("interval", "60s"),
                     help="fetch and reconcile this often (default 60s)")
    run.add_argument("--drift-interval", type=_duration, default=_env_default("drift-interval", "5m"),
                     help="check AWS for drift this often, even without a new commit (default 5m)")
    run.add_argument("--metrics-port", type=int, default=int(_env_default("metrics-port", "9108") or 9108),
                     help="port of /metrics, /healthz, /readyz, /status and /webhook (default 9108; 0 picks one)")
    run.add_argument("--metrics-host", default=_env_default("metrics-host", "0.0.0.0"),
                     help="address to listen on (default 0.0.0.0)")
    run.add_argument("--webhook-secret-file", default=_env_default("webhook-secret-file"),
                     help="enable POST /webhook: deliveries must be signed (X-Hub-Signature-256) with this secret")
    run.add_argument("--prune", action="store_true", default=_env_true("prune"),
                     help="delete resources of objects no longer in Git (never while a manifest is invalid)")
    run.add_argument("--prune-limit", type=int, default=int(_env_default("prune-limit", "20") or 20),
                     help="at most this many deletions per pass (default 20)")
    run.add_argument("--apply-window", action="append", metavar="CRON", default=None,
                     help="cron expression (UTC, crontab weekdays: 0 or 7 = Sunday) of minutes in which "
                     "changes may be applied, e.g. '* 9-17 * * 1-5'; repeatable; outside every window the "
                     "daemon plans and reports only (default: always)")
    run.add_argument("--cache-dir", default=_env_default("cache-dir"),
                     help=f"where Git sources are cached (default: {default_cache_dir() / 'git'})")
    run.add_argument("--https-token-file", default=_env_default("https-token-file"),
                     help="file holding the HTTPS token for the Git remote (re-read on every fetch)")
    run.add_argument("--ssh-key-file", default=_env_default("ssh-key-file"), help="SSH private key for the Git remote")
    run.add_argument("--known-hosts-file", default=_env_default("known-hosts-file"),
                     help="known_hosts file for the Git remote (strict host key checking)")
    verify = run.add_mutually_exclusive_group()
    verify.add_argument("--verify-signatures-gpg-keyring", default=_env_default("verify-signatures-gpg-keyring"),
                        metavar="DIR", help="only apply head commits signed by a key of this GnuPG keyring")
    verify.add_argument("--verify-signatures-ssh-allowed-signers", metavar="F",
                        default=_env_default("verify-signatures-ssh-allowed-signers"),
                        help="only apply head commits signed by a key of this SSH allowed-signers file")
    run.add_argument("--sandbox-drift-every", type=_duration, metavar="DURATION", default=_env_default("sandbox-drift-every"),
                     help="with --sandbox: this often, change one managed resource of the simulated AWS by hand (a "
                     "subnet tag, a node group's size, a parameter, a trust policy, a route) so there is drift to "
                     "see (default: never)")
    run.add_argument("--log-format", choices=("json", "text"), default=_env_default("log-format"),
                     help="json (default when stderr is not a terminal) or text")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     default=_env_default("log-level", "info"), help="default info: only what changed or failed")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    import logging
    import re

    import boto3

    from driftwarden.runtime import daemon, logs
    from driftwarden.runtime.source import GitCredentials, SignaturePolicy, open_source

    if args.sandbox_drift_every is not None and not args.sandbox:
        raise UsageError("--sandbox-drift-every needs --sandbox: drift is only ever injected into the simulated AWS")
    logs.configure(args.log_format, level=getattr(logging, str(args.log_level).upper()))
    if args.verify_signatures_gpg_keyring and args.verify_signatures_ssh_allowed_signers:
        raise UsageError("give --verify-signatures-gpg-keyring or --verify-signatures-ssh-allowed-signers, not both")
    windows = args.apply_window
    if windows is None:
        windows = [w for w in re.split(r"[;\n]", _env_default("apply-window", "") or "") if w.strip()]
    settings = daemon.DaemonSettings(
        interval_seconds=args.interval,
        drift_interval_seconds=args.drift_interval,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        webhook_secret_file=Path(args.webhook_secret_file) if args.webhook_secret_file else None,
        prune=args.prune,
        prune_limit=args.prune_limit,
        apply_windows=tuple(windows),
        instance=args.instance,
    )
    optional = {name: Path(value) if value else None for name, value in (
        ("token", args.https_token_file), ("key", args.ssh_key_file), ("hosts", args.known_hosts_file),
        ("gpg", args.verify_signatures_gpg_keyring), ("ssh", args.verify_signatures_ssh_allowed_signers))}
    verify = None
    if optional["gpg"] or optional["ssh"]:
        verify = SignaturePolicy(gpg_keyring=optional["gpg"], ssh_allowed_signers=optional["ssh"])
    source = open_source(
        args.source,
        ref=args.ref,
        path=args.path,
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "git",
        credentials=GitCredentials(
            https_token_file=optional["token"], ssh_key_file=optional["key"], known_hosts_file=optional["hosts"]
        ),
        verify=verify,
    )
    alongside = None
    if args.sandbox_drift_every is not None:
        alongside = functools.partial(_drift_injector, args.sandbox_drift_every, args.instance)
    return daemon.main(settings, source, boto3.Session, sandbox=args.sandbox, out=out, alongside_sandbox=alongside)


def _drift_injector(every: float, instance: str) -> Any:
    """The sandbox's drift injector, started once the sandbox is up (which set AWS_ENDPOINT_URL)."""
    import boto3

    from driftwarden.sandbox.drift_injector import DriftInjector
    from driftwarden.sandbox.server import simulated_places

    return DriftInjector(os.environ["AWS_ENDPOINT_URL"], every=every, places=simulated_places,
                         session_factory=boto3.Session, instance=instance)


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
    result = validate_paths(paths, cache_dir=cache_dir, report_only=True)
    formatter = {
        "text": render.validation_text,
        "json": render.validation_json,
        "github": render.validation_github,
    }[args.format]
    out.write(formatter(result))
    return EXIT_OK if result.valid else EXIT_INVALID


# --- plan and apply -------------------------------------------------------------------------------


def _manifest_root(args: argparse.Namespace) -> Path:
    from driftwarden.runtime.source import redact_url

    source = str(args.source)
    if "://" in source or source.startswith("git@"):
        raise UsageError(f"--source {redact_url(source)}: Git sources are read by `driftwarden run`; "
                         "for plan/apply, clone the repository and pass its directory")
    root = Path(source) / args.path if args.path else Path(source)
    if not root.is_dir():
        raise UsageError(f"--source {root}: not a directory")
    return root


def _revision_of(root: Path, files: Sequence[str]) -> str:
    """The revision of a plain directory, computed as the daemon's directory source does."""
    from driftwarden.runtime.source import directory_revision

    return directory_revision({os.path.relpath(name, root): Path(name).read_bytes() for name in files})


@contextlib.contextmanager
def _aws(args: argparse.Namespace, validation: ValidationResult) -> Iterator[tuple[AwsSessions, SecretResolver]]:
    import boto3

    from driftwarden.providers.aws import AwsSessions
    from driftwarden.providers.secret_sources import (
        control_secret_resolver,
        sandbox_secret_resolver,
    )
    from driftwarden.sandbox.server import Sandbox, seed_existing

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
    return result, _revision_of(root, result.files)


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from driftwarden.engine.reconcile import ReconcileSettings, plan_once
    from driftwarden.providers.registry import default_providers

    validated = _validated(args)
    if validated is None:
        return EXIT_INVALID
    validation, revision = validated
    settings = ReconcileSettings(instance=args.instance)
    with _aws(args, validation) as (sessions, resolver):
        result = plan_once(validation, sessions, revision=revision, settings=settings, resolve_secret=resolver,
                           providers=default_providers())
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
    from driftwarden.engine.apply import ApplySettings
    from driftwarden.engine.reconcile import ReconcileSettings, apply_once, plan_once
    from driftwarden.providers.registry import default_providers

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

    providers = default_providers()
    with _aws(args, validation) as (sessions, resolver):
        result = apply_once(
            validation, sessions, revision=revision, settings=settings, resolve_secret=resolver, providers=providers,
            progress=progress,
        )
        assert result.plan is not None
        out.write(render.plan_text(result.plan, heading=f"driftwarden apply: revision {revision} ({args.source})"))
        out.write(render.outcomes_text(result.outcomes))
        if args.sandbox and not result.failed:
            # The sandbox ends with this command: show here that a second pass finds nothing to do.
            check = plan_once(validation, sessions, revision=revision, settings=settings, resolve_secret=resolver,
                              providers=providers)
            assert check.plan is not None
            out.write("Verify: " + render.plan_text(check.plan).rstrip("\n").rsplit("\n", 1)[-1] + "\n")
    return EXIT_INVALID if result.failed else EXIT_OK


# --- IAM documents -----------------------------------------------------------------------------------


def cmd_trust_policy(args: argparse.Namespace, out: TextIO) -> int:
    import boto3

    from driftwarden.engine import policies
    from driftwarden.providers.aws import AwsSessions

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
    from driftwarden.engine import policies
    from driftwarden.providers.registry import default_providers

    out.write(json.dumps(policies.permissions_policy(default_providers()), indent=2) + "\n")
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
