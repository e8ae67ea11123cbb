"""The part of the Cloud Logging query language that terraform/monitoring.tf uses, evaluated
against log entries, so a test can say which log-based metric a real log line increments.

Supported, with Cloud Logging's meaning:

- comparisons ``FIELD OP VALUE`` with OP one of ``= < <= > >=``; ``FIELD=(A OR B)``
  matches either value; a field the entry lacks matches no comparison (and ``NOT`` of it does);
- numbers compare as numbers, ``severity`` by its rank (``severity>=ERROR``), the rest as text;
- ``NOT``, ``AND``, ``OR`` and parentheses, with the language's precedence: NOT, then OR, then
  AND, so ``a AND b OR c`` is ``a AND (b OR c)``; juxtaposed terms are joined by AND;
- fields ``severity``, ``logName``, ``resource.type``, ``resource.labels.*``, ``labels.*`` and
  ``jsonPayload.*`` (any depth).

Everything else (``!=``, ``:`` and ``=~``, functions such as ``log_id()``, wildcards, timestamps,
``textPayload``) raises UnsupportedFilter: a filter this module cannot read is refused, never
guessed at. ``entry_from_stdout_line`` turns one JSON line a function writes into the log
entry Cloud Run's logging agent makes of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]
Predicate = Callable[[Entry], bool]

SEVERITY_RANK = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
FIELD_ROOTS = ("severity", "logName", "resource", "labels", "jsonPayload")
OPERATORS = ("<=", ">=", "=", "<", ">")

# Keys of a JSON line that the logging agent lifts out of jsonPayload.
_SPECIAL = {
    "severity",
    "time",
    "logging.googleapis.com/labels",
    "logging.googleapis.com/trace",
    "logging.googleapis.com/spanId",
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=~|!~|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z0-9_.\-/%*@]+)
    )""",
    re.VERBOSE,
)


class UnsupportedFilter(ValueError):
    """The filter uses something outside the supported subset, or is not well formed."""


def tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise UnsupportedFilter(f"cannot read {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise UnsupportedFilter(f"{self.text!r} ends early")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token == ("word", word):
            self.at += 1
            return True
        return False

    def parse(self) -> Predicate:
        predicate = self.conjunction()
        if self.peek() is not None:
            raise UnsupportedFilter(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return predicate

    def conjunction(self) -> Predicate:
        parts = [self.disjunction()]
        while True:
            token = self.peek()
            if token is None or token == ("paren", ")"):
                break
            self.keyword("AND")  # juxtaposition is AND as well
            parts.append(self.disjunction())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def disjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.keyword("OR"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def negation(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.negation()
            return lambda e: not inner(e)
        if self.peek() == ("paren", "("):
            self.take()
            inner = self.conjunction()
            if self.take() != ("paren", ")"):
                raise UnsupportedFilter(f"missing ) in {self.text!r}")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        kind, field = self.take()
        if kind != "word" or field.split(".")[0] not in FIELD_ROOTS or "*" in field:
            raise UnsupportedFilter(f"unsupported field {field!r} in {self.text!r}")
        kind, operator = self.take()
        if kind != "op" or operator not in OPERATORS:
            raise UnsupportedFilter(f"unsupported operator {operator!r} in {self.text!r}")
        values = self.values()
        if operator != "=" and len(values) > 1:
            raise UnsupportedFilter(f"{operator} takes one value in {self.text!r}")
        path = field.split(".")

        def compare(entry: Entry) -> bool:
            found, actual = lookup(entry, path)
            if not found or actual is None:
                return False
            if operator == "=":
                return any(matches(field, actual, "=", v) for v in values)
            return matches(field, actual, operator, values[0])

        return compare

    def values(self) -> list[str]:
        if self.peek() == ("paren", "("):
            self.take()
            found = [self.value()]
            while self.keyword("OR"):
                found.append(self.value())
            if self.take() != ("paren", ")"):
                raise UnsupportedFilter(f"missing ) in {self.text!r}")
            return found
        return [self.value()]

    def value(self) -> str:
        kind, text = self.take()
        if kind == "string":
            return str(json.loads(text))
        if kind == "word" and "*" not in text and text not in ("AND", "OR", "NOT"):
            return text
        raise UnsupportedFilter(f"unsupported value {text!r} in {self.text!r}")


def lookup(entry: Entry, path: list[str]) -> tuple[bool, Any]:
    value: Any = entry
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def matches(field: str, actual: Any, operator: str, expected: str) -> bool:
    if field == "severity":
        left: Any = SEVERITY_RANK.get(str(actual).upper())
        right: Any = SEVERITY_RANK.get(expected.upper())
        if left is None or right is None:
            raise UnsupportedFilter(f"unknown severity {expected!r}")
    elif isinstance(actual, bool):
        left, right = str(actual).lower(), expected.lower()
    elif _number(actual) is not None and _number(expected) is not None:
        left, right = _number(actual), _number(expected)
    elif isinstance(actual, dict | list):
        return False
    else:
        left, right = str(actual), expected
    outcome: bool = {
        "=": left == right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[operator]
    return outcome


def compile_filter(text: str) -> Predicate:
    """A predicate over log entries, or UnsupportedFilter for a filter outside the subset."""
    return _Parser(text).parse()


def extract(extractor: str, entry: Entry) -> Any:
    """The value of an ``EXTRACT(field)`` label or value extractor for ``entry`` (None when the
    entry lacks the field); other extractor functions are refused."""
    match = re.fullmatch(r"\s*EXTRACT\(\s*([A-Za-z0-9_.]+)\s*\)\s*", extractor)
    if not match:
        raise UnsupportedFilter(f"unsupported extractor {extractor!r}")
    found, value = lookup(entry, match.group(1).split("."))
    return value if found else None


def entry_from_stdout_line(
    line: str, *, project: str, service: str, resource_type: str = "cloud_run_revision"
) -> Entry:
    """The log entry Cloud Logging stores for one JSON line on a Cloud Run service's stdout:
    ``severity`` and the ``logging.googleapis.com/*`` keys become entry fields, the rest is
    ``jsonPayload``."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("a structured log line is a JSON object")
    return {
        "logName": f"projects/{project}/logs/run.googleapis.com%2Fstdout",
        "resource": {"type": resource_type, "labels": {"service_name": service}},
        "severity": str(record.get("severity", "DEFAULT")).upper(),
        "labels": dict(record.get("logging.googleapis.com/labels") or {}),
        "jsonPayload": {k: v for k, v in record.items() if k not in _SPECIAL},
    }
