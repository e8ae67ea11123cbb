"""Structured logging as Cloud Logging reads it: one JSON object per line on stdout.

Every record is redacted when it is created (message, arguments and exception text), so no
handler, ours or a test's, ever sees a credential. Fields passed as
``extra={"json_fields": {...}}`` land in jsonPayload, where log-based metrics read them.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from shared import redact

_labels: dict[str, str] = {}
_project: str | None = None
_original_factory = logging.getLogRecordFactory()

# Attributes every LogRecord has; anything else came in through `extra`.
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _original_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not lose the record
        message = str(record.msg)
    record.msg = redact.redact(message)
    record.args = None
    if record.exc_info and record.exc_info[0] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text = redact.redact(text.rstrip("\n"))
        # The formatted text replaces the live exception, whose str() could still leak.
        record.exc_info = None
    fields = getattr(record, "json_fields", None)
    if isinstance(fields, dict):
        record.json_fields = _redact_values(fields)
    return record


def _redact_values(value: Any) -> Any:
    """Redact every string inside a JSON-like value (redacting serialised JSON could break it)."""
    if isinstance(value, str):
        return redact.redact(value)
    if isinstance(value, dict):
        return {str(k): _redact_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_values(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact.redact(str(value))


def _trace_of_current_request() -> str | None:
    """The trace id Cloud Run put on the request being served, if any."""
    if _project is None:
        return None
    try:
        import flask  # functions-framework brings Flask; absent in CLI use
    except ImportError:  # pragma: no cover - depends on the caller's environment
        return None
    if not flask.has_request_context():
        return None
    header = flask.request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = header.split("/", 1)[0]
    if not trace_id:
        traceparent = flask.request.headers.get("traceparent", "")
        parts = traceparent.split("-")
        trace_id = parts[1] if len(parts) >= 3 else ""
    if not trace_id or not trace_id.isalnum():
        return None
    return f"projects/{_project}/traces/{trace_id}"


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": redact.redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        if _labels:
            payload["logging.googleapis.com/labels"] = dict(_labels)
        trace = _trace_of_current_request()
        if trace:
            payload["logging.googleapis.com/trace"] = trace
        if record.exc_text:
            payload["message"] += "\n" + redact.redact(record.exc_text)
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                payload.setdefault(key, value)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "json_fields" and key not in payload:
                payload[key] = value
        line = json.dumps(_redact_values(payload), default=str, ensure_ascii=False)
        # A lone surrogate (hostile input quoted in a message) cannot be written as UTF-8 and
        # would lose the whole line at the stream; escape it so the line is still written.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at emit time (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def install_redaction() -> None:
    """Redact every record created in this process from now on (idempotent)."""
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)


def setup(integration: str, function: str, *, project: str | None = None) -> logging.Logger:
    """Configure the root logger for one function and return that function's logger."""
    global _project
    install_redaction()
    _labels.clear()
    _labels.update({"integration": integration, "function": function})
    _project = project
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdoutHandler):
            root.removeHandler(handler)
    handler = _StdoutHandler()
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Libraries log request URLs (with query strings) at DEBUG; keep them quiet regardless.
    for noisy in ("urllib3", "google.auth", "google.api_core", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(function)


def fields(**values: Any) -> dict[str, Any]:
    """Shorthand for ``extra=`` carrying structured fields into jsonPayload."""
    return {"json_fields": values}
