"""Pub/Sub messages delivered as CloudEvents.

Bad input is logged and acknowledged (returning normally), never raised: an exception would
make Pub/Sub redeliver the same unusable message until its retention runs out. Events older
than a maximum age are dropped with a warning, the retry-storm guard Google recommends for
functions with retries enabled. The age is read from the envelope before the data is decoded,
so an old message is dropped whatever it carries. Every warning names the message id and never
quotes the payload.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import clock
from shared.safe_json import loads_untrusted

log = logging.getLogger(__name__)

# Pub/Sub message ids are decimal strings; anything longer is not from Pub/Sub.
MAX_MESSAGE_ID_CHARS = 128


class BadMessage(ValueError):
    """The message cannot be processed, now or ever."""


@dataclass(frozen=True)
class PubSubMessage:
    data: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    published_at: datetime | None = None


@dataclass(frozen=True)
class _Envelope:
    """What Pub/Sub says about a message, read without touching its data."""

    message: dict[str, Any]
    message_id: str
    published_at: datetime | None


def decode(cloud_event: Any) -> PubSubMessage:
    """Decode the Pub/Sub message a CloudEvent carries; its data must be empty or a JSON object
    (``shared.safe_json`` rules) and its attributes strings."""
    envelope = _envelope(cloud_event)
    return _decode_message(envelope)


def receive(cloud_event: Any, *, max_age: timedelta) -> PubSubMessage | None:
    """The message to act on, or None when it was bad or too old (logged, to be acknowledged)."""
    try:
        envelope = _envelope(cloud_event)
    except BadMessage as error:
        _ignore(_message_id(cloud_event), error)
        return None
    if envelope.published_at is not None:
        age = clock.now() - envelope.published_at
        if age > max_age:
            log.warning(
                "dropping message %s published %ds ago (max age %ds); the next run takes over",
                envelope.message_id,
                int(age.total_seconds()),
                int(max_age.total_seconds()),
                extra={"json_fields": {"outcome": "too_old"}},
            )
            return None
    try:
        return _decode_message(envelope)
    except BadMessage as error:
        _ignore(envelope.message_id, error)
        return None


def _message_id(cloud_event: Any) -> str:
    """The Pub/Sub message id (or the CloudEvent id), printable whatever the event holds."""
    envelope = getattr(cloud_event, "data", None)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    found = message.get("messageId") if isinstance(message, dict) else None
    if not isinstance(found, str) or not found:
        found = _attr(cloud_event, "id") or ""
    # Escaped, not dropped: an operator can still match it, and a lone surrogate or control
    # character never reaches (and breaks) a log line.
    return found[:MAX_MESSAGE_ID_CHARS].encode("ascii", "backslashreplace").decode("ascii")


def _ignore(message_id: str, error: BadMessage) -> None:
    log.warning(
        "ignoring message %s: %s",
        message_id or "(no id)",
        error,
        extra={"json_fields": {"outcome": "bad"}},
    )


def _envelope(cloud_event: Any) -> _Envelope:
    envelope = getattr(cloud_event, "data", None)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise BadMessage("event carries no Pub/Sub message")
    message = envelope["message"]
    stated = [_attr(cloud_event, "time"), message.get("publishTime")]
    times = [clock.parse_time(t) for t in stated if isinstance(t, str) and t]
    published = next((t for t in times if t is not None), None)
    if published is None and times:
        # A time is given but unreadable (or outside the calendar): the age guard cannot
        # vouch for the message, and Pub/Sub never sends one.
        raise BadMessage("publish time is not a usable time")
    return _Envelope(message, _message_id(cloud_event), published)


def _decode_message(envelope: _Envelope) -> PubSubMessage:
    message = envelope.message
    raw = message.get("data") or ""
    if not isinstance(raw, str):
        raise BadMessage("message data is not base64 text")
    try:
        data_bytes = base64.b64decode(raw, validate=True) if raw else b""
    except ValueError:  # binascii.Error, or a character that is not ASCII
        raise BadMessage("message data is not base64") from None
    data: Any = {}
    if data_bytes.strip():
        data = loads_untrusted(
            data_bytes, bad=lambda why: BadMessage(f"message data refused: {why}")
        )
    if not isinstance(data, dict):
        raise BadMessage(f"message data must be a JSON object, got {type(data).__name__}")
    return PubSubMessage(
        data=data,
        attributes=_attributes(message.get("attributes")),
        message_id=envelope.message_id,
        published_at=envelope.published_at,
    )


def _attributes(attributes: Any) -> dict[str, str]:
    """Pub/Sub attributes are pairs of valid Unicode strings; anything else was not sent by
    Pub/Sub."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise BadMessage("message attributes are not an object")
    for key, value in attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadMessage("message attributes must map strings to strings")
        try:
            key.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadMessage("message attributes are not valid Unicode") from None
    return dict(attributes)


def _attr(cloud_event: Any, name: str) -> str | None:
    try:
        value = cloud_event[name]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


# What a refusal quotes of the fields it did not expect: enough to spot a typo, never a payload.
MAX_QUOTED_FIELDS = 3
MAX_QUOTED_FIELD_CHARS = 24


def refuse_unknown_fields(data: dict[str, Any], allowed: Collection[str], expected: str) -> None:
    """Raise ``BadMessage`` when ``data`` has fields outside ``allowed``; ``expected`` says what
    a valid message holds. Field names are quoted short, ASCII-escaped and at most a few."""
    unknown = sorted(str(name) for name in set(data) - set(allowed))
    if not unknown:
        return
    quoted = [
        name[:MAX_QUOTED_FIELD_CHARS].encode("ascii", "backslashreplace").decode("ascii")
        for name in unknown[:MAX_QUOTED_FIELDS]
    ]
    more = f" and {len(unknown) - len(quoted)} more" if len(unknown) > len(quoted) else ""
    raise BadMessage(f"unknown fields {quoted}{more}; expected {expected}")
