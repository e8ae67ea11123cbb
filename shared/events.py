"""Pub/Sub messages delivered as CloudEvents.

Bad input is logged and acknowledged (returning normally), never raised: an exception would
make Pub/Sub redeliver the same unusable message until its retention runs out. Events older
than a maximum age are dropped with a warning, the retry-storm guard Google recommends for
functions with retries enabled.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import clock

log = logging.getLogger(__name__)


class BadMessage(ValueError):
    """The message cannot be processed, now or ever."""


@dataclass(frozen=True)
class PubSubMessage:
    data: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    published_at: datetime | None = None


def decode(cloud_event: Any) -> PubSubMessage:
    """Decode the Pub/Sub message a CloudEvent carries; its data must be empty or a JSON object."""
    envelope = cloud_event.data if hasattr(cloud_event, "data") else None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise BadMessage("event carries no Pub/Sub message")
    message = envelope["message"]
    raw = message.get("data") or ""
    if not isinstance(raw, str):
        raise BadMessage("message data is not base64 text")
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8") if raw else ""
    except (binascii.Error, UnicodeDecodeError):
        raise BadMessage("message data is not base64-encoded UTF-8") from None
    data: Any = {}
    if text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadMessage(f"message data is not JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise BadMessage(f"message data must be a JSON object, got {type(data).__name__}")
    attributes = message.get("attributes") or {}
    published = clock.parse_time(_attr(cloud_event, "time")) or clock.parse_time(
        message.get("publishTime")
    )
    return PubSubMessage(
        data=data,
        attributes={str(k): str(v) for k, v in attributes.items()}
        if isinstance(attributes, dict)
        else {},
        message_id=str(message.get("messageId") or _attr(cloud_event, "id") or ""),
        published_at=published,
    )


def _attr(cloud_event: Any, name: str) -> str | None:
    try:
        value = cloud_event[name]
    except (KeyError, TypeError):
        return None
    return str(value) if value is not None else None


def receive(cloud_event: Any, *, max_age: timedelta) -> PubSubMessage | None:
    """The message to act on, or None when it was bad or too old (logged, to be acknowledged)."""
    try:
        message = decode(cloud_event)
    except BadMessage as error:
        log.warning("ignoring message: %s", error, extra={"json_fields": {"outcome": "bad"}})
        return None
    if message.published_at is not None:
        age = clock.now() - message.published_at
        if age > max_age:
            log.warning(
                "dropping message %s published %ds ago (max age %ds); the next run takes over",
                message.message_id,
                int(age.total_seconds()),
                int(max_age.total_seconds()),
                extra={"json_fields": {"outcome": "too_old"}},
            )
            return None
    return message
