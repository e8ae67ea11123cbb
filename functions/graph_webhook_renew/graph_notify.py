"""What graph_webhook_notify does with a request Graph posts: handshake, check, publish, answer.

main.py's ``graph_webhook_notify`` hands each request to ``notify``. The validation handshake
is answered first, from the query string alone; a batch is then read within its size limit,
each item's clientState compared in constant time (``sort_items``, pure), and what passes is
published to Pub/Sub (``publish``) before the 202. Client mistakes get a 4xx, never a 500;
an unavailable Secret Manager or Pub/Sub gets a 503, which Graph retries.

Standard library and shared/ only at import time: main imports this module on the first
request, and the handshake must answer with nothing heavy loaded.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import logs
from shared.errors import ProviderError
from shared.safe_json import UntrustedJsonError, loads_untrusted

if TYPE_CHECKING:
    # Types only: main reads the environment when imported.
    import flask
    from main import Clients, Settings

# main.py's logger: logs.setup names it after FUNCTION_TARGET, which functions-framework sets
# to the entry point it serves, and only graph_webhook_notify runs this module.
log = logging.getLogger("graph_webhook_notify")

# Graph's tokens are short; anything this long is not from Graph.
MAX_VALIDATION_TOKEN_CHARS = 4096
# Pub/Sub attribute values are capped at 1024 bytes; Graph's ids are far shorter.
MAX_FIELD_CHARS = 256
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

Reply = tuple[str, int, dict[str, str]]


def _reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    # nosniff: a browser must never render an echoed token as HTML.
    return text, status, {"Content-Type": content_type, "X-Content-Type-Options": "nosniff"}


def error_reply(status: int, error: str) -> Reply:
    return _reply(status, json.dumps({"error": error}), "application/json")


# 1. Validation handshake -----------------------------------------------------------------


def notify(settings: Settings, clients: Clients, request: flask.Request) -> Reply:
    if request.method != "POST":
        return error_reply(405, "POST only")
    token = request.args.get("validationToken")
    if token is not None:
        # Flask already URL-decoded it; Graph wants exactly that back, as plain text.
        if len(token) > MAX_VALIDATION_TOKEN_CHARS:
            return error_reply(400, "validationToken too long")
        return _reply(200, token)

    # 2. Read and check the batch ---------------------------------------------------------
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json":
        return error_reply(415, "Content-Type must be application/json")
    if request.content_length is not None and request.content_length > settings.notify_max_bytes:
        return error_reply(413, "body too large")
    raw = request.stream.read(settings.notify_max_bytes + 1)
    if len(raw) > settings.notify_max_bytes:
        return error_reply(413, "body too large")
    try:
        # Deep nesting, huge integers, lone surrogates: refused here as a 400, not a 500 later.
        body = loads_untrusted(raw)
    except UntrustedJsonError as refused:
        return error_reply(400, f"body is not usable JSON: {refused}")
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return error_reply(400, 'body must be {"value": [notifications]}')

    try:
        secret = clients.client_state()
    except Exception as error:  # noqa: BLE001 - Secret Manager down: Graph retries on 5xx
        log.error(
            "cannot check notifications: %s",
            error if isinstance(error, ProviderError) else type(error).__name__,
            extra=logs.fields(event="config_error", provider="graph"),
        )
        return error_reply(503, "temporarily unavailable")
    batch = sort_items(items, secret)
    if batch.malformed == len(items):
        return error_reply(400, "no notification in the body has the expected fields")

    # 3. Publish --------------------------------------------------------------------------
    try:
        publish(settings, clients, batch)
    except Exception as error:  # noqa: BLE001 - Pub/Sub refused: a 5xx makes Graph retry
        log.error("publishing notifications failed (%s); Graph will retry", type(error).__name__)
        return error_reply(503, "temporarily unavailable")

    # 4. Acknowledge ----------------------------------------------------------------------
    if batch.forged:
        # One line per request, whatever the count, so a flood cannot flood the logs. The
        # received value is never logged: it may be a near miss of the real secret.
        log.warning(
            "dropped %d notification(s) with a wrong clientState",
            batch.forged,
            extra=logs.fields(event="forged_notification", provider="graph", count=batch.forged),
        )
    log.info(
        "received %d notification(s): %d published, %d lifecycle, %d forged, %d malformed",
        len(items),
        len(batch.changes),
        len(batch.lifecycle),
        batch.forged,
        batch.malformed,
        extra=logs.fields(
            event="notifications_received",
            provider="graph",
            published=len(batch.changes),
            lifecycle=len(batch.lifecycle),
            forged=batch.forged,
            malformed=batch.malformed,
        ),
    )
    return _reply(202, "")


@dataclass
class Batch:
    changes: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    forged: int = 0
    malformed: int = 0


def _short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_FIELD_CHARS


def sort_items(items: list[Any], secret: bytes) -> Batch:
    """Valid change notifications and lifecycle events, with clientState checked and removed
    (downstream apps never see the secret)."""
    batch = Batch()
    for item in items:
        if not isinstance(item, dict) or not _short_str(item.get("subscriptionId")):
            batch.malformed += 1
            continue
        state = item.get("clientState")
        # surrogatepass: a lone surrogate encodes to bytes no UTF-8 secret has, never raises.
        if not isinstance(state, str) or not hmac.compare_digest(
            state.encode("utf-8", "surrogatepass"), secret
        ):
            batch.forged += 1
            continue
        clean = {k: v for k, v in item.items() if k != "clientState"}
        event = item.get("lifecycleEvent")
        if event is not None:
            if event in LIFECYCLE_EVENTS:
                batch.lifecycle.append(clean)
            else:
                batch.malformed += 1
        elif _short_str(item.get("changeType")):
            batch.changes.append(clean)
        else:
            batch.malformed += 1
    return batch


def _attributes(item: dict[str, Any], *names: str) -> dict[str, str]:
    return {n: str(item[n])[:MAX_FIELD_CHARS] for n in names if item.get(n)}


def publish(settings: Settings, clients: Clients, batch: Batch) -> None:
    """Publish everything the batch asks for and wait until Pub/Sub has it all."""
    if not batch.changes and not batch.lifecycle:
        return
    publisher = clients.publisher
    notifications = publisher.topic_path(settings.project, settings.notifications_topic)
    futures = []
    for item in batch.changes:
        futures.append(
            publisher.publish(
                notifications,
                json.dumps(item).encode("utf-8"),
                **_attributes(item, "subscriptionId", "changeType", "tenantId"),
            )
        )
    reauthorize: list[str] = []
    reasons: set[str] = set()
    for item in batch.lifecycle:
        event = item["lifecycleEvent"]
        log.info(
            "lifecycle event %s for subscription %s",
            event,
            item["subscriptionId"],
            extra=logs.fields(event="lifecycle", provider="graph", lifecycle_event=event),
        )
        if event == "reauthorizationRequired":
            reauthorize.append(item["subscriptionId"])
            reasons.add(event)
        elif event == "subscriptionRemoved":
            reasons.add(event)  # the reconciler sees it missing and creates it again
        if event in ("missed", "subscriptionRemoved"):
            # Notifications were (or may have been) lost: downstream apps resync by delta.
            futures.append(
                publisher.publish(
                    notifications,
                    json.dumps(item).encode("utf-8"),
                    **_attributes(item, "lifecycleEvent", "subscriptionId", "tenantId"),
                )
            )
    if reasons:
        trigger = {
            "reauthorize": list(dict.fromkeys(reauthorize)),
            "reason": ",".join(sorted(reasons)),
        }
        futures.append(
            publisher.publish(
                publisher.topic_path(settings.project, settings.renew_topic),
                json.dumps(trigger).encode("utf-8"),
            )
        )
    give_up = time.monotonic() + settings.publish_timeout_seconds
    for future in futures:
        future.result(timeout=max(0.1, give_up - time.monotonic()))
