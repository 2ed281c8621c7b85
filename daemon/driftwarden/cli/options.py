"""The option table: every option of every `driftwarden` command, declared once.

One `Option` row says everything about an option: its flag, the commands that take it, how its
value is parsed, its default, its help, and whether (and how) it is read from the environment
as ``DRIFTWARDEN_<FLAG>`` (dashes as underscores, upper case). From these rows come:

* the argparse parsers (`build_parser`, called by `cli.main`),
* the ``DRIFTWARDEN_*`` variables and how their values are read (`Option.from_environment`),
* the command-line reference in README.md (`cli.reference` renders the parser built here and
  names each option's variable from this table).

Precedence: a flag on the command line, else its variable, else the table's default. An empty
variable counts as unset. A switch (``--prune``) reads its variable one way for every command:
``1``, ``true``, ``yes`` or ``on`` turn it on, ``0``, ``false``, ``no`` or ``off`` leave it off
(any case); any other value is a usage error (exit 2) that names the variable, as is a variable
that fails the option's parser or choices. A variable is only read for a command that takes the
option, so a malformed ``DRIFTWARDEN_PRUNE`` does not stop ``validate``.

What it must not do: act on options (commands in `cli.main` do that), or import the AWS, Git or
sandbox layers at import time: ``validate`` starts from here in pull-request CI.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from driftwarden import __version__
from driftwarden.engine.graph import DEFAULT_INSTANCE
from driftwarden.errors import UsageError
from driftwarden.manifests.cache import default_cache_dir

EXIT_USAGE = 2
PREFIX = "DRIFTWARDEN_"

# `schema KIND`: the name a user types, and the schema it prints (None: the envelope).
SCHEMA_NAMES: Mapping[str, str | None] = {
    "cluster": "Cluster",
    "deployment": "Deployment",
    "astro-deployment": "AstroDeploymentFile",
    "envelope": None,
}

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

Kind = Literal["value", "switch", "append", "positional"]


def switch(text: str) -> bool:
    """A switch's value from the environment; ValueError for anything but the words above."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected 1, true, yes or on (or 0, false, no or off)")


def duration(text: str) -> float:
    """Seconds in `30s`, `5m`, `1h30m` (argparse type: its message is the usage error)."""
    # The daemon owns duration syntax; imported here, not at module level, to keep `validate` light.
    from driftwarden.runtime.settings import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and the texts of its help."""

    name: str
    help: str
    description: str
    epilog: str | None = None


@dataclass(frozen=True)
class Option:
    """One option (or positional argument) of one or more commands.

    `flag` is ``--name`` for an option and the destination name for a positional argument.
    `parse` converts one value (argparse's ``type``); a string `default` is parsed the same way.
    `kind`: ``value`` takes one value, ``switch`` none (``store_true``), ``append`` is
    repeatable (its variable holds several values split at `separator`), ``positional`` is an
    argument. `environment` says whether the option reads ``DRIFTWARDEN_<FLAG>``;
    `environment_note` is shown next to the variable in the README. Options sharing an
    `exclusive` name are mutually exclusive.
    """

    flag: str
    commands: tuple[str, ...]
    help: str | Callable[[], str]
    kind: Kind = "value"
    parse: Callable[[str], Any] | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    nargs: str | None = None
    required: bool = False
    environment: bool = True
    separator: str | None = None
    environment_note: str | None = None
    exclusive: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def variable(self) -> str | None:
        """``DRIFTWARDEN_<FLAG>``, or None when the option is not read from the environment."""
        if not self.environment or self.kind == "positional":
            return None
        return PREFIX + self.dest.upper()

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def default_value(self) -> Any:
        """The table's default, parsed like a given value when it is written as text."""
        if isinstance(self.default, str) and self.parse is not None:
            return self.parse(self.default)
        return self.default

    def from_environment(self, environ: Mapping[str, str]) -> tuple[bool, Any]:
        """(True, value) when the option's variable is set in `environ`, else (False, None).

        Raises `UsageError` naming the variable when its value does not parse.
        """
        variable = self.variable
        raw = environ.get(variable, "") if variable else ""
        if not variable or not raw.strip():
            return False, None
        if self.kind == "switch":
            return True, self._convert(variable, raw, switch)
        if self.kind == "append":
            parts = [p.strip() for p in re.split(self.separator or r"\n", raw) if p.strip()]
            return True, [self._convert(variable, part, self.parse) for part in parts]
        return True, self._convert(variable, raw, self.parse)

    def _convert(self, variable: str, raw: str, parse: Callable[[str], Any] | None) -> Any:
        try:
            value = parse(raw) if parse is not None else raw
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{variable}={raw!r}: {exc}") from None
        except (TypeError, ValueError) as exc:
            name = getattr(parse, "__name__", "")
            reason = exc if parse is switch or name not in ("int", "float") else f"not a valid {name}"
            raise UsageError(f"{variable}={raw!r}: {reason}") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{variable}={raw!r}: expected one of {', '.join(self.choices)}")
        return value


COMMANDS: tuple[Command, ...] = (
    Command(
        "validate",
        help="check manifests offline and report every problem with file and line",
        description=(
            "Validate every *.yaml/*.yml manifest under PATH (default: the current directory) "
            "against the JSON Schemas and the rules across manifests. Reports all problems of "
            "all files in one run. Works offline; touches nothing."
        ),
        epilog="Exit codes: 0 valid (warnings allowed), 1 invalid, 2 usage error.",
    ),
    Command(
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
    ),
    Command(
        "apply",
        help="make AWS match Git once, showing progress",
        description=(
            "One reconcile: plan, then carry the plan out in dependency order, independent work "
            "in parallel, long AWS operations awaited with progress. A failure stops only what "
            "depends on it; every change is reported."
        ),
        epilog="Exit codes: 0 everything applied, 1 something failed or was invalid, 2 usage error.",
    ),
    Command(
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
        "(switches: 1, true, yes or on; 0, false, no or off. DRIFTWARDEN_APPLY_WINDOW: windows "
        "separated by ';').",
    ),
    Command(
        "trust-policy",
        help="print the trust policy the role in a target account needs",
        description=(
            "Print the trust policy for driftwarden's role in one target account: the control "
            "account may assume it only with the ExternalIds of that account's clusters (read "
            "from the manifests). Warns past IAM's 2,048-character default limit."
        ),
    ),
    Command(
        "iam-policy",
        help="print the least-privilege permissions policy for the target-account role",
        description=(
            "Print the permissions policy for driftwarden's role in target accounts, generated "
            "from the IAM actions every resource provider declares it calls."
        ),
    ),
    Command(
        "schema",
        help="print the JSON Schema of a manifest kind",
        description="Print a JSON Schema (2020-12) shipped with driftwarden, e.g. for editors and CI.",
    ),
)

_SOURCE_COMMANDS = ("plan", "apply", "run")

# In the order each command lists them (--help, README): one order fits every command.
OPTIONS: tuple[Option, ...] = (
    # trust-policy
    Option("--account", ("trust-policy",), "the target account id (12 digits)", required=True, environment=False),
    Option("--control", ("trust-policy",),
           "control account id or principal ARN allowed to assume the role (default: the caller's account, via STS)"),
    # validate
    Option("paths", ("validate",), "files or directories (default: .)", kind="positional", nargs="*", metavar="PATH"),
    Option("--format", ("validate",), "text for people (default), json for tools, github for workflow annotations",
           default="text", choices=("text", "json", "github")),
    Option("--cache-dir", ("validate",),
           lambda: f"where per-file results are cached by content hash (default: {default_cache_dir()})"),
    Option("--no-cache", ("validate",), "do not read or write the cache", kind="switch", default=False),
    # where the manifests are, and which AWS
    Option("--source", (*_SOURCE_COMMANDS, "trust-policy"), "directory of manifests (default: .)", default="."),
    Option("--path", (*_SOURCE_COMMANDS, "trust-policy"), "subdirectory of the source to read"),
    Option("--sandbox", _SOURCE_COMMANDS,
           "run against an embedded simulated AWS on 127.0.0.1 (needs driftwarden[sandbox]); starts empty",
           kind="switch", default=False),
    Option("--instance", _SOURCE_COMMANDS,
           "this installation's name in the driftwarden:managed-by tag (default: driftwarden)",
           default=DEFAULT_INSTANCE),
    # plan
    Option("--format", ("plan",), "text (default) or json", default="text", choices=("text", "json")),
    Option("--detailed-exitcode", ("plan",), "exit 2 when there are changes (for CI)", kind="switch", default=False),
    # apply
    Option("--prune", ("apply",),
           "delete resources of objects no longer in Git (off by default; never when a manifest is invalid)",
           kind="switch", default=False),
    Option("--prune-limit", ("apply",), "at most this many deletions per run (default 20)", parse=int, default=20),
    Option("--no-wait", ("apply",), "start long AWS operations and return; the next run continues where AWS is",
           kind="switch", default=False),
    Option("--timeout", ("apply",), "seconds to wait for one long AWS operation (default 2700)",
           parse=float, default=2700.0),
    Option("--apply-immediately", ("apply",),
           "RDS: modify the database now instead of in its next maintenance window", kind="switch", default=False),
    # run
    Option("--ref", ("run",), "branch, tag or commit to follow (default: the remote's HEAD)"),
    Option("--interval", ("run",), "fetch and reconcile this often (default 60s)", parse=duration, default="60s"),
    Option("--drift-interval", ("run",), "check AWS for drift this often, even without a new commit (default 5m)",
           parse=duration, default="5m"),
    Option("--metrics-port", ("run",),
           "port of /metrics, /healthz, /readyz, /status and /webhook (default 9108; 0 picks one)",
           parse=int, default=9108),
    Option("--metrics-host", ("run",), "address to listen on (default 0.0.0.0)", default="0.0.0.0"),
    Option("--webhook-secret-file", ("run",),
           "enable POST /webhook: deliveries must be signed (X-Hub-Signature-256) with this secret"),
    Option("--http-token-file", ("run",),
           "require the header Authorization: Bearer TOKEN on /status and /metrics, TOKEN read from this file (re-read on every "
           "request; /healthz, /readyz and the signed /webhook stay open)"),
    Option("--prune", ("run",), "delete resources of objects no longer in Git (never while a manifest is invalid)",
           kind="switch", default=False),
    Option("--prune-limit", ("run",), "at most this many deletions per pass (default 20)", parse=int, default=20),
    Option("--apply-window", ("run",),
           "cron expression (UTC, crontab weekdays: 0 or 7 = Sunday) of minutes in which changes may be applied, "
           "e.g. '* 9-17 * * 1-5'; repeatable; outside every window the daemon plans and reports only "
           "(default: always)",
           kind="append", metavar="CRON", default=(), separator=r"[;\n]",
           environment_note="windows separated by `;`"),
    Option("--cache-dir", ("run",), lambda: f"where Git sources are cached (default: {default_cache_dir() / 'git'})"),
    Option("--https-token-file", ("run",), "file holding the HTTPS token for the Git remote (re-read on every fetch)"),
    Option("--ssh-key-file", ("run",), "SSH private key for the Git remote"),
    Option("--known-hosts-file", ("run",), "known_hosts file for the Git remote (strict host key checking)"),
    Option("--verify-signatures-gpg-keyring", ("run",),
           "only apply head commits signed by a key of this GnuPG keyring", metavar="DIR", exclusive="verify"),
    Option("--verify-signatures-ssh-allowed-signers", ("run",),
           "only apply head commits signed by a key of this SSH allowed-signers file", metavar="F", exclusive="verify"),
    Option("--sandbox-drift-every", ("run",),
           "with --sandbox: this often, change one managed resource of the simulated AWS by hand (a subnet tag, a "
           "node group's size, a parameter, a trust policy, a route) so there is drift to see (default: never)",
           parse=duration, metavar="DURATION"),
    Option("--log-format", ("run",), "json (default when stderr is not a terminal) or text", choices=("json", "text")),
    Option("--log-level", ("run",), "default info: only what changed or failed",
           default="info", choices=("debug", "info", "warning", "error")),
    # schema
    Option("kind", ("schema",), ", ".join(sorted(SCHEMA_NAMES)), kind="positional", parse=str.lower,
           choices=tuple(sorted(SCHEMA_NAMES)), metavar="KIND"),
)


def options_of(command: str) -> tuple[Option, ...]:
    """The options `command` takes, in the order it lists them."""
    return tuple(o for o in OPTIONS if command in o.commands)


def environment_variables(command: str) -> dict[str, str]:
    """Each variable `command` reads: {``DRIFTWARDEN_*``: flag}."""
    return {o.variable: o.flag for o in options_of(command) if o.variable}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors exiting 2 and a hint, and defaults from the environment.

    The top-level parser knows each command's parser, and each command's parser its table rows.
    After parsing, each option of the chosen command that the command line did not give takes
    its variable's value from `environ` (``os.environ`` when None), else the table's default. A
    variable that does not parse is a usage error naming it.
    """

    def __init__(
        self, *args: Any, table: Sequence[Option] = (), environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.table = tuple(table)
        self.environ = environ
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        command = self.commands.get(getattr(parsed, "command", None) or "")
        if command is not None:
            command.fill_from_environment(parsed)
        return parsed, extras

    def fill_from_environment(self, parsed: argparse.Namespace) -> None:
        """Give every option not on the command line its variable's value or its default."""
        environ = os.environ if self.environ is None else self.environ
        for option in self.table:
            # Options that read a variable have no argparse default: None means "not given".
            if option.variable is None or getattr(parsed, option.dest, None) is not None:
                continue
            try:
                found, value = option.from_environment(environ)
            except UsageError as exc:
                self.error(str(exc))
            setattr(parsed, option.dest, value if found else option.default_value())


def _add(target: Any, option: Option) -> None:
    """One table row as an argparse argument of `target` (the parser or an exclusive group)."""
    keywords: dict[str, Any] = {"help": option.help_text()}
    if option.kind == "switch":
        keywords["action"] = "store_true"
    elif option.kind == "append":
        keywords["action"] = "append"
    if option.parse is not None:
        keywords["type"] = option.parse
    if option.choices is not None:
        keywords["choices"] = option.choices
    if option.metavar is not None:
        keywords["metavar"] = option.metavar
    if option.kind == "positional":
        if option.nargs is not None:
            keywords["nargs"] = option.nargs
        target.add_argument(option.flag, **keywords)
        return
    # A variable is read after parsing (Parser.parse_known_args); argparse must leave it unset.
    keywords["default"] = None if option.variable else option.default
    if option.required:
        keywords["required"] = True
    target.add_argument(option.flag, **keywords)


def build_parser(
    handlers: Mapping[str, Callable[..., int]], environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The `driftwarden` parser from the table; `handlers` maps each command to its function.

    `environ` is where variables are read when parsing (default: ``os.environ`` at that time).
    """
    parser = Parser(
        prog="driftwarden",
        description=(
            "GitOps reconciliation for an Airflow platform on AWS: validates Cluster and "
            "Deployment manifests and keeps AWS in line with them."
        ),
        epilog="Every option also reads DRIFTWARDEN_<OPTION> from the environment (switches: 1, true, "
        "yes or on; 0, false, no or off). Exit codes: 0 ok, 1 invalid or failed, 2 usage error.",
        environ=environ,
    )
    parser.add_argument("--version", action="version", version=f"driftwarden {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        table = options_of(command.name)
        sub: Parser = commands.add_parser(
            command.name, help=command.help, description=command.description, epilog=command.epilog,
            table=table, environ=environ,
        )
        groups: dict[str, Any] = {}
        for option in table:
            target: Any = sub
            if option.exclusive is not None:
                if option.exclusive not in groups:
                    groups[option.exclusive] = sub.add_mutually_exclusive_group()
                target = groups[option.exclusive]
            _add(target, option)
        sub.set_defaults(handler=handlers[command.name])
        parser.commands[command.name] = sub
    return parser

