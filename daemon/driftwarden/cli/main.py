"""The `driftwarden` command: turns flags and environment into calls; no logic of its own.

Options, their `DRIFTWARDEN_<OPTION>` variables and their defaults are declared once, in the
option table of `cli.options`, which builds the parser; a flag on the command line wins over
its variable (`DRIFTWARDEN_FORMAT=github`), and switches read `1/true/yes/on` or `0/false/no/off`.

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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from driftwarden.cli import options, render
from driftwarden.cli.options import SCHEMA_NAMES
from driftwarden.errors import DriftwardenError, UsageError
from driftwarden.manifests.cache import default_cache_dir
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.schemas import ENVELOPE_FILE, SCHEMA_FILES
from driftwarden.manifests.validation import default_schemas, validate_paths

# The AWS engine (providers.aws), Git (gitpython) and the sandbox (moto) are imported by the commands
# that use them: `validate` runs in pull-request CI and pre-commit, where start-up time counts.
if TYPE_CHECKING:
    from driftwarden.providers.aws import AwsSessions
    from driftwarden.providers.secret_sources import SecretResolver

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = options.EXIT_USAGE
EXIT_CHANGES = 2


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The `driftwarden` parser, built from the option table (`cli.options`).

    `environ` is where ``DRIFTWARDEN_*`` variables are read when parsing (default: the process
    environment at that time).
    """
    handlers = {
        "validate": cmd_validate,
        "plan": cmd_plan,
        "apply": cmd_apply,
        "run": cmd_run,
        "trust-policy": cmd_trust_policy,
        "iam-policy": cmd_iam_policy,
        "schema": cmd_schema,
    }
    return options.build_parser(handlers, environ)


# --- run (the daemon) -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    import logging

    from driftwarden.providers.aws import default_session_factory
    from driftwarden.runtime import logs, serve
    from driftwarden.runtime.settings import DaemonSettings
    from driftwarden.runtime.source import GitCredentials, SignaturePolicy, open_source

    if args.sandbox_drift_every is not None and not args.sandbox:
        raise UsageError("--sandbox-drift-every needs --sandbox: drift is only ever injected into the simulated AWS")
    logs.configure(args.log_format, level=getattr(logging, str(args.log_level).upper()))
    if args.verify_signatures_gpg_keyring and args.verify_signatures_ssh_allowed_signers:
        raise UsageError("give --verify-signatures-gpg-keyring or --verify-signatures-ssh-allowed-signers, not both")
    settings = DaemonSettings(
        interval_seconds=args.interval,
        drift_interval_seconds=args.drift_interval,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        webhook_secret_file=Path(args.webhook_secret_file) if args.webhook_secret_file else None,
        http_token_file=Path(args.http_token_file) if args.http_token_file else None,
        prune=args.prune,
        prune_limit=args.prune_limit,
        apply_windows=tuple(args.apply_window),
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
    return serve.main(settings, source, default_session_factory(), sandbox=args.sandbox, out=out, alongside_sandbox=alongside)


def _drift_injector(every: float, instance: str) -> Any:
    """The sandbox's drift injector, started once the sandbox is up (which set AWS_ENDPOINT_URL)."""
    from driftwarden.providers.aws import default_session_factory
    from driftwarden.sandbox.drift_injector import DriftInjector
    from driftwarden.sandbox.server import simulated_places

    return DriftInjector(os.environ["AWS_ENDPOINT_URL"], every=every, places=simulated_places,
                         session_factory=default_session_factory(), instance=instance)


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
    from driftwarden.redaction import redact_url

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
    from driftwarden.providers.aws import AwsSessions, default_region, default_session_factory
    from driftwarden.providers.secret_sources import (
        control_secret_resolver,
        sandbox_secret_resolver,
    )
    from driftwarden.sandbox.server import Sandbox, seed_existing

    if args.sandbox:
        with Sandbox() as sandbox:
            sandbox.apply(os.environ)
            print(f"sandbox: simulated AWS at {sandbox.endpoint_url} (empty at start)", file=sys.stderr)
            with AwsSessions(default_session_factory(), endpoint_url=sandbox.endpoint_url) as sessions:
                for line in seed_existing(sandbox, sessions, validation.clusters, validation.deployments):
                    print(f"sandbox: created {line} (a real account would already have it)", file=sys.stderr)
                yield sessions, sandbox_secret_resolver()
        return
    with AwsSessions(default_session_factory()) as sessions:
        yield sessions, control_secret_resolver(sessions, default_region())


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
    from driftwarden.engine import policies
    from driftwarden.providers.aws import control_account_id

    if not (args.account.isdigit() and len(args.account) == 12):
        raise UsageError(f"--account {args.account!r}: expected a 12-digit AWS account id")
    validated = _validated(args)
    if validated is None:
        return EXIT_INVALID
    validation, _revision = validated
    control = args.control or control_account_id()
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
