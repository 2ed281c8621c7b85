"""YAML 1.2 core-schema scalars: which plain scalars are not strings, and their Python values.

Owns the words and patterns by which a plain scalar resolves to null, bool, int or float, the
conversion of a scalar's text to its value (`SCALAR_CONVERTERS`, keyed by core tag), the digit
bound that keeps integer conversion cheap, and `excerpt` for quoting a scalar in a message.

What it must not do: import ruamel.yaml or any other library (it is pure; the loader maps its
results onto ruamel's tag objects and nodes), or apply `Limits` (the loader reports values
beyond them).
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

# The YAML 1.2 core schema (as ruamel reads it, minus timestamps, which manifests keep as text).
NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
BOOL_WORDS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
INT_RE = re.compile(r"[-+]?(?:[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)\Z")
FLOAT_RE = re.compile(
    r"(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)
# Only these first characters can start a plain scalar that is not a string.
NON_STRING_STARTS = frozenset("0123456789-+.~<nNtTfF")


def excerpt(text: str, limit: int = 40) -> str:
    """`text` shortened for a message: a hostile scalar must not become a megabyte of log."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# More digits than any integer within `Limits.max_integer` can have in any base (64 binary
# digits); checked before converting, since int() of a long decimal string is quadratic and
# refused beyond 4,300 digits.
MAX_INT_DIGITS = 80


def to_int(text: str) -> int:
    digits = text.replace("_", "").lstrip("+-")
    if digits[:2] in ("0x", "0o", "0b"):
        digits = digits[2:]
    if len(digits.lstrip("0")) > MAX_INT_DIGITS:
        return -(10**30) if text.startswith("-") else 10**30  # far beyond the limit: the caller reports it
    cleaned = text.replace("_", "")
    sign = 1
    if cleaned[:1] in ("+", "-"):  # not `in "+-"`: "" is in every string
        sign = -1 if cleaned[0] == "-" else 1
        cleaned = cleaned[1:]
    if cleaned.startswith("0o"):
        return sign * int(cleaned[2:], 8)
    if cleaned.startswith("0x"):
        return sign * int(cleaned[2:], 16)
    if cleaned.startswith("0b"):
        return sign * int(cleaned[2:], 2)
    return sign * int(cleaned, 10)


def to_float(text: str) -> float:
    cleaned = text.replace("_", "").lower()
    if cleaned in (".inf", "+.inf"):
        return float("inf")
    if cleaned == "-.inf":
        return float("-inf")
    if cleaned == ".nan":
        return float("nan")
    return float(cleaned)


def to_bool(text: str) -> bool:
    return text.lower() in ("true", "yes", "on", "y")


def to_timestamp(text: str) -> str:
    # Manifests carry no timestamps; keep the author's text but make sure it parses.
    _dt.date.fromisoformat(text[:10])
    return text


SCALAR_CONVERTERS: dict[str, Any] = {
    "tag:yaml.org,2002:int": to_int,
    "tag:yaml.org,2002:float": to_float,
    "tag:yaml.org,2002:bool": to_bool,
    "tag:yaml.org,2002:null": lambda _text: None,
    "tag:yaml.org,2002:timestamp": to_timestamp,
}
