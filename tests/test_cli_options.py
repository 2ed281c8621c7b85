"""The option table (driftwarden.cli.options) drives the parser and the DRIFTWARDEN_* variables.

In-process tests parse with the real parser; the commands themselves are stopped at our own
boundaries (`engine.reconcile.apply_once`, `runtime.daemon.main`) to see what they were handed.
The exit code of a malformed variable is checked through the installed console script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftwarden.cli import options
from driftwarden.cli.main import build_parser, main

REPO = Path(__file__).resolve().parent.parent
DRIFTWARDEN = shutil.which("driftwarden", path=str(Path(sys.executable).parent)) or "driftwarden"
SOURCE_COMMAND_ARGS = {"trust-policy": ["--account", "318574920163"], "schema": ["cluster"]}


@pytest.fixture(autouse=True)
def no_outside_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets: none from the shell running the tests."""
    for name in [n for n in os.environ if n.startswith(options.PREFIX)]:
        monkeypatch.delenv(name)


def parse(command: str, *args: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    argv = [command, *SOURCE_COMMAND_ARGS.get(command, []), *args]
    parsed = vars(build_parser(environ).parse_args(argv))
    parsed.pop("handler")
    return parsed


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", options.PREFIX, "MOTO_"))}
    environment.update(env)
    return subprocess.run([DRIFTWARDEN, *args], capture_output=True, text=True, timeout=120, env=environment)


# --- switches: one reading everywhere ---------------------------------------------------------


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "yes", "Yes", "on", " On "])
@pytest.mark.parametrize("command", ["apply", "run"])
def test_prune_variable_words_for_on_turn_prune_on_for_apply_and_run(word: str, command: str) -> None:
    """DRIFTWARDEN_PRUNE=true (or 1, yes, on, any case) means --prune for apply and for run alike."""
    assert parse(command, environ={"DRIFTWARDEN_PRUNE": word})["prune"] is True


@pytest.mark.parametrize("word", ["0", "false", "False", "no", "off", "OFF"])
@pytest.mark.parametrize("command", ["apply", "run"])
def test_prune_variable_words_for_off_leave_prune_off(word: str, command: str) -> None:
    """DRIFTWARDEN_PRUNE=false (or 0, no, off, any case) leaves prune off for apply and run."""
    assert parse(command, environ={"DRIFTWARDEN_PRUNE": word})["prune"] is False


def test_prune_true_reaches_the_apply_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`apply` with DRIFTWARDEN_PRUNE=true hands the engine settings with prune on."""
    from driftwarden.engine import reconcile

    shutil.copytree(REPO / "manifests", tmp_path / "m")
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def apply_once(*args: Any, settings: reconcile.ReconcileSettings, **kwargs: Any) -> Any:
        seen["prune"] = settings.prune
        raise Stop

    monkeypatch.setattr(reconcile, "apply_once", apply_once)
    monkeypatch.setenv("DRIFTWARDEN_PRUNE", "true")
    with pytest.raises(Stop):
        main(["apply", "--source", str(tmp_path / "m")])
    assert seen == {"prune": True}


def test_prune_true_reaches_the_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`run` with DRIFTWARDEN_PRUNE=true starts the daemon with prune on."""
    from driftwarden.runtime import logs, serve
    from driftwarden.runtime.settings import DaemonSettings

    seen: dict[str, Any] = {}

    def daemon_main(settings: DaemonSettings, *args: Any, **kwargs: Any) -> int:
        seen["prune"] = settings.prune
        return 0

    monkeypatch.setattr(serve, "main", daemon_main)
    monkeypatch.setattr(logs, "configure", lambda *args, **kwargs: None)
    monkeypatch.setenv("DRIFTWARDEN_PRUNE", "true")
    assert main(["run", "--source", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert seen == {"prune": True}


@pytest.mark.parametrize("command", ["apply", "run"])
def test_an_unknown_switch_word_is_a_usage_error_naming_the_variable(command: str, tmp_path: Path) -> None:
    """DRIFTWARDEN_PRUNE=maybe exits 2 and says which variable holds what, before doing anything."""
    done = run_cli(command, "--source", str(tmp_path), env={"DRIFTWARDEN_PRUNE": "maybe"})
    assert done.returncode == 2, done.stderr
    assert "DRIFTWARDEN_PRUNE='maybe'" in done.stderr and "true" in done.stderr
    assert not (tmp_path / "cache").exists()


def test_a_variable_is_only_read_by_commands_that_take_its_option() -> None:
    """A malformed DRIFTWARDEN_PRUNE does not stop `validate`, which has no --prune."""
    done = run_cli("validate", "--no-cache", str(REPO / "manifests"), env={"DRIFTWARDEN_PRUNE": "maybe"})
    assert done.returncode == 0, done.stderr


# --- values: parsed as their flag is, errors name the variable -------------------------------


@pytest.mark.parametrize(
    ("command", "variable", "value", "expected"),
    [
        ("apply", "DRIFTWARDEN_PRUNE_LIMIT", "abc", "DRIFTWARDEN_PRUNE_LIMIT='abc': not a valid int"),
        ("apply", "DRIFTWARDEN_TIMEOUT", "soon", "DRIFTWARDEN_TIMEOUT='soon': not a valid float"),
        ("run", "DRIFTWARDEN_INTERVAL", "often", "DRIFTWARDEN_INTERVAL='often': 'often' is not a duration"),
        ("validate", "DRIFTWARDEN_FORMAT", "xml", "DRIFTWARDEN_FORMAT='xml': expected one of text, json, github"),
        ("run", "DRIFTWARDEN_LOG_LEVEL", "loud", "DRIFTWARDEN_LOG_LEVEL='loud': expected one of debug, info"),
        ("run", "DRIFTWARDEN_SANDBOX", "sure", "DRIFTWARDEN_SANDBOX='sure': expected 1, true, yes or on"),
    ],
)
def test_a_malformed_variable_is_a_usage_error_naming_it(
    command: str, variable: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value the option's parser or choices refuse exits 2 with the variable and the reason."""
    with pytest.raises(SystemExit) as exited:
        parse(command, environ={variable: value})
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_a_flag_wins_over_its_variable() -> None:
    """Given on the command line, an option ignores its variable, even a malformed one."""
    environ = {"DRIFTWARDEN_PRUNE_LIMIT": "5", "DRIFTWARDEN_APPLY_WINDOW": "* 9 * * *;* 10 * * *",
               "DRIFTWARDEN_TIMEOUT": "soon"}
    parsed = parse("run", "--prune-limit", "7", "--apply-window", "* 3 * * *", environ=environ)
    assert parsed["prune_limit"] == 7 and parsed["apply_window"] == ["* 3 * * *"]
    assert parse("apply", "--timeout", "10", environ=environ)["timeout"] == 10.0


def test_variables_parse_as_their_flags_do() -> None:
    """Each kind of value read from a variable equals the same value given as a flag."""
    environ = {"DRIFTWARDEN_INTERVAL": "1h30m", "DRIFTWARDEN_METRICS_PORT": "9200",
               "DRIFTWARDEN_APPLY_WINDOW": "* 9 * * 1-5; \n* 10 * * 6", "DRIFTWARDEN_LOG_FORMAT": "text"}
    from_flags = parse("run", "--interval", "1h30m", "--metrics-port", "9200", "--apply-window", "* 9 * * 1-5",
                       "--apply-window", "* 10 * * 6", "--log-format", "text")
    assert parse("run", environ=environ) == from_flags
    assert from_flags["interval"] == 5400.0 and from_flags["metrics_port"] == 9200


def test_an_empty_variable_counts_as_unset() -> None:
    """DRIFTWARDEN_PRUNE= or DRIFTWARDEN_PRUNE_LIMIT= (empty) gives the default, not an error."""
    environ = {"DRIFTWARDEN_PRUNE": "", "DRIFTWARDEN_PRUNE_LIMIT": " ", "DRIFTWARDEN_INSTANCE": ""}
    assert parse("apply", environ=environ) == parse("apply")
    assert parse("apply")["prune_limit"] == 20 and parse("apply")["instance"] == "driftwarden"


# --- the table is the one source --------------------------------------------------------------


def _sample(option: options.Option) -> str:
    """A valid value for `option` that differs from its default."""
    if option.kind == "switch":
        return "true"
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.parse in (int, float):
        return "7"
    if option.parse is options.duration:
        return "7s"
    return "/elsewhere"


@pytest.mark.parametrize("command", [c.name for c in options.COMMANDS])
def test_the_parser_reads_exactly_the_variables_of_the_table(command: str) -> None:
    """Setting each variable the table names changes that option's value and no other."""
    baseline = parse(command)
    for option in options.options_of(command):
        if option.variable is None:
            continue
        changed = parse(command, environ={option.variable: _sample(option)})
        assert changed[option.dest] != baseline[option.dest], option.variable
        assert {k: v for k, v in changed.items() if k != option.dest} == {
            k: v for k, v in baseline.items() if k != option.dest
        }, option.variable


def test_options_without_a_variable_ignore_the_environment() -> None:
    """--account is read only from the command line: DRIFTWARDEN_ACCOUNT neither sets nor is listed."""
    assert "DRIFTWARDEN_ACCOUNT" not in options.environment_variables("trust-policy")
    with pytest.raises(SystemExit) as exited:
        build_parser({"DRIFTWARDEN_ACCOUNT": "318574920163"}).parse_args(["trust-policy"])
    assert exited.value.code == 2


def test_every_row_belongs_to_known_commands_once() -> None:
    """No option is declared twice for one command, and every command named exists."""
    names = {c.name for c in options.COMMANDS}
    seen: set[tuple[str, str]] = set()
    for option in options.OPTIONS:
        assert set(option.commands) <= names, option.flag
        for command in option.commands:
            assert (command, option.flag) not in seen, (command, option.flag)
            seen.add((command, option.flag))
