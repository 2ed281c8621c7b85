"""driftwarden.redaction: every credential shape a message may carry is removed, nothing else is.

Pure functions over strings: no Git, no AWS. The call sites (Git source errors, log lines, AWS
error mapping) are covered where they live; these tests pin the rules themselves.
"""

from __future__ import annotations

import ast
import io
import json
import logging
from pathlib import Path

import pytest

from driftwarden import redaction
from driftwarden.redaction import REDACTED, redact, redact_url

TOKEN = "ghp_T0kenThatMustNeverBeShown0123456789"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"https://x-access-token:{TOKEN}@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        (f"https://{TOKEN}@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        ("HTTP://user:pass@10.0.0.1:8080/r.git", "HTTP://***@10.0.0.1:8080/r.git"),
        ("ssh://deploy:hunter2@git.example.com/r.git", "ssh://***@git.example.com/r.git"),
        ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
        ("git+ssh://git@github.com/org/repo.git", "git+ssh://git@github.com/org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
    ],
)
def test_redact_url_removes_user_info_but_keeps_ssh_user_names(url: str, expected: str) -> None:
    """A URL loses any user:password or token before its host; a bare SSH user name stays."""
    assert redact_url(url) == expected


def test_redact_removes_url_credentials_anywhere_in_a_message() -> None:
    """Every URL in a message loses its credentials, not only the first one."""
    text = f"fatal: unable to access 'https://bot:{TOKEN}@a.example/r.git/' (mirror https://u:p@b.example/r)"
    cleaned = redact(text)
    assert TOKEN not in cleaned and "bot:" not in cleaned and "u:p@" not in cleaned
    assert "https://***@a.example/r.git/" in cleaned and "https://***@b.example/r" in cleaned


def test_redact_removes_authorization_headers_and_git_host_tokens() -> None:
    """Basic, Bearer and token Authorization values and GitHub/GitLab token shapes become ***."""
    text = (
        "> Authorization: Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0\n"
        "> authorization: bearer abc.def.ghi\n"
        "loose ghp_AAAAAAAAAAAAAAAAAAAAAAAA github_pat_11AAAAAAA0aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbb "
        "glpat-xxxxxxxxxxxxxxxxxxxx"
    )
    cleaned = redact(text)
    for secret in ("eC1hY2Nlc3MtdG9rZW46c2VjcmV0", "abc.def.ghi", "ghp_AAAA", "github_pat_", "glpat-"):
        assert secret not in cleaned
    assert "Authorization: Basic ***" in cleaned and "authorization: bearer ***" in cleaned


def test_redact_removes_known_secret_values_longest_first() -> None:
    """Given values are removed whole, even when one secret contains another."""
    cleaned = redact("token=abc-secret-long and abc-secret", ["abc-secret", "abc-secret-long", ""])
    assert cleaned == f"token={REDACTED} and {REDACTED}"


def test_redact_removes_the_value_an_aws_validation_error_quotes() -> None:
    """AWS repeats the rejected input ("Value 'x' at 'field'"): the value goes, the field stays."""
    message = (
        "2 validation errors detected: Value 'hunter2\nline two' at 'secretString' failed to satisfy "
        "constraint; Value 'x' at 'name' failed"
    )
    cleaned = redact(message)
    assert "hunter2" not in cleaned and "line two" not in cleaned and "'x'" not in cleaned
    assert "Value (redacted) at 'secretString'" in cleaned and "Value (redacted) at 'name'" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        f"aws_secret_access_key = {AWS_SECRET}",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"SecretAccessKey": "{AWS_SECRET}", "Expiration": "soon"}}',
        f"aws_session_token={AWS_SECRET}+more/token==",
        f"'SessionToken': '{AWS_SECRET}'",
    ],
)
def test_redact_removes_aws_secret_keys_and_session_tokens(text: str) -> None:
    """An AWS secret key or session token written as an assignment is removed; its name stays."""
    cleaned = redact(text)
    assert AWS_SECRET not in cleaned and "EXAMPLEKEY" not in cleaned
    assert REDACTED in cleaned


def test_redact_keeps_what_is_not_a_credential() -> None:
    """Commit hashes, SSH user names, account ids and plain prose pass unchanged."""
    text = (
        f"revision {SHA} from ssh://git@github.com/org/repo.git failed in account 123456789012: "
        "secretsmanager:GetSecretValue AccessDenied; the secret_access_key is missing"
    )
    assert redact(text) == text


def test_the_module_is_pure_and_imports_nothing_of_the_package() -> None:
    """redaction.py imports only the standard library, so every layer can use it."""
    tree = ast.parse(Path(redaction.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "re", "collections", "typing"}, imported


def test_log_lines_are_redacted_with_the_same_rules() -> None:
    """A log field holding a token URL, a token or an AWS secret key is written redacted."""
    from driftwarden.runtime.logs import EventLog, JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("driftwarden.test_redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        EventLog(logger).info(
            "sync.failed",
            error=f"https://bot:{TOKEN}@example.com/r.git: aws_secret_access_key={AWS_SECRET}",
            detail=[f"Authorization: Bearer {TOKEN}"],
        )
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert TOKEN not in line and AWS_SECRET not in line
    assert json.loads(line)["error"].startswith("https://***@example.com/r.git")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:p@ss:w/rd@host/repo.git", "https://***@host/repo.git"),
        ("fatal: 'https://user:p@ss:w/rd@host:8443/r.git/' not found", "fatal: 'https://***@host:8443/r.git/' not found"),
        ("https://bot:a/b?c#d@git.example.com/r", "https://***@git.example.com/r"),
        ("https://user:pa/ss@host/x", "https://***@host/x"),
        ("https://github.com/org/repo@main", "https://github.com/org/repo@main"),
    ],
    ids=["at-colon-slash", "in-a-message-with-port", "query-and-fragment-characters", "slash-only", "no-credentials"],
)
def test_url_credentials_are_redacted_whatever_characters_they_hold(text: str, expected: str) -> None:
    """A password with unencoded `@`, `:`, `/`, `?` or `#` is removed whole; a URL without credentials is kept."""
    assert redact(text) == expected
    assert redact_url(text.split("'")[1] if "'" in text else text) == (
        expected.split("'")[1] if "'" in expected else expected)


def test_status_text_loses_secret_arns_and_the_sources_valuefrom_names() -> None:
    """Secrets Manager and SSM ARNs and the named `valueFrom` source become a placeholder; the rest stays."""
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/airflow/db-AbCdEf"
    text = (
        f"cannot read secret source secretsManagerArn {arn}: AccessDeniedException; "
        "cannot read secret source ssmParameter /prod/airflow/fernet: ParameterNotFound; "
        f"Deployment etl: {arn} and arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/prod/x; "
        f"https://u:{TOKEN}@h.example/r"
    )
    cleaned = redaction.scrub_secret_references(text)
    for secret in ("prod/airflow/db", "/prod/airflow/fernet", "parameter/prod/x", TOKEN, "123456789012"):
        assert secret not in cleaned
    assert cleaned.count(redaction.SECRET_PLACEHOLDER) == 4
    assert "secretsManagerArn <secret reference>: AccessDeniedException" in cleaned
    assert "ssmParameter <secret reference>: ParameterNotFound" in cleaned
    assert "Deployment etl:" in cleaned
