"""Redaction and structured logging: what reaches stdout is JSON Cloud Logging understands,
and no credential survives in a message, its arguments, fields or an exception's text."""

from __future__ import annotations

import json
import logging

import pytest

from shared import logs, redact


@pytest.fixture
def logger(capsys: pytest.CaptureFixture[str]) -> logging.Logger:
    return logs.setup("demo", "demo_function", project="demo-project")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://h/oauth/token/?client_id=app&client_secret=s3cr3tvalue&x=1", "s3cr3tvalue"),
        ("https://h/token?refresh_token=rt-123456&grant_type=refresh_token", "rt-123456"),
        (
            "blob https://a.blob.core.windows.net/c?sv=2024&sp=rdl&sig=AbCd%2Bef%3D&se=x",
            "AbCd%2Bef%3D",
        ),
        ('{"access_token": "at-abcdef123", "expires_in": 1800}', "at-abcdef123"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("https://user:hunter2pass@host/path", "hunter2pass"),
        ("client_state=cs-0123456789", "cs-0123456789"),
    ],
)
def test_patterns_mask_credentials(text: str, secret: str) -> None:
    masked = redact.redact(text)
    assert secret not in masked
    assert redact.MASK in masked


def test_ordinary_words_survive() -> None:
    text = "error code: invalid_grant; secret_id=b24-refresh-token; grant_type=refresh_token"
    assert redact.redact(text) == text


def test_registered_values_are_masked_anywhere() -> None:
    redact.register("plainvalue-without-shape-42")
    assert redact.redact("x plainvalue-without-shape-42 y") == f"x {redact.MASK} y"


def test_short_values_are_not_registered() -> None:
    redact.register("abc")
    assert redact.redact("abc abc") == "abc abc"


def test_safe_url_drops_query_and_userinfo() -> None:
    url = "https://user:pw@oauth.example.test:8443/oauth/token/?client_secret=x#frag"
    assert redact.safe_url(url) == "https://oauth.example.test:8443/oauth/token/"


def test_log_line_is_cloud_logging_json(logger: logging.Logger, capsys) -> None:
    logger.info("refreshed %s", "bitrix24", extra=logs.fields(event="run_summary", refreshed=1))
    (line,) = lines(capsys)
    assert line["severity"] == "INFO"
    assert line["message"] == "refreshed bitrix24"
    assert line["logging.googleapis.com/labels"] == {
        "integration": "demo",
        "function": "demo_function",
    }
    assert line["event"] == "run_summary"
    assert line["refreshed"] == 1


def test_secrets_are_redacted_in_args_fields_and_exceptions(logger: logging.Logger, capsys) -> None:
    redact.register("tok-registered-987654")
    try:
        raise ValueError("provider echoed tok-registered-987654 and ?client_secret=qwerty123")
    except ValueError:
        logger.exception(
            "failed with %s",
            "tok-registered-987654",
            extra=logs.fields(detail="tok-registered-987654"),
        )
    out = capsys.readouterr().out
    assert "tok-registered-987654" not in out
    assert "qwerty123" not in out
    record = json.loads(out.strip().splitlines()[-1])
    assert record["severity"] == "ERROR"
    assert "ValueError" in record["message"]  # the traceback is kept, only values are masked


def test_other_handlers_see_redacted_records(logger: logging.Logger, caplog) -> None:
    redact.register("tok-for-caplog-123456")
    with caplog.at_level(logging.INFO):
        logger.warning("leaking %s", "tok-for-caplog-123456")
    assert "tok-for-caplog-123456" not in caplog.text
    assert all("tok-for-caplog-123456" not in r.getMessage() for r in caplog.records)


def test_trace_of_request_is_attached(logger: logging.Logger, capsys) -> None:
    import flask

    app = flask.Flask("t")
    with app.test_request_context(headers={"X-Cloud-Trace-Context": "abc123def/1;o=1"}):
        logger.info("inside a request")
    (line,) = lines(capsys)
    assert line["logging.googleapis.com/trace"] == "projects/demo-project/traces/abc123def"


def test_a_lone_surrogate_in_a_message_does_not_lose_the_line(logger: logging.Logger) -> None:
    # Hostile input quoted in a message: strict UTF-8 stdout (as on Cloud Run) must accept it.
    record = logging.LogRecord(
        "demo", logging.WARNING, __file__, 1, "bad id %s", ("x\ud800y",), None
    )
    line = logs.CloudLoggingFormatter().format(record)
    line.encode("utf-8")  # raises UnicodeEncodeError if the surrogate reached the output
    assert "x\\ud800y" in line  # a JSON escape: Cloud Logging reads the line as written
    assert json.loads(line)["message"] == "bad id x\ud800y"
    record = logging.LogRecord("demo", logging.INFO, __file__, 1, "été %s", ("ok",), None)
    assert json.loads(logs.CloudLoggingFormatter().format(record))["message"] == "été ok"
