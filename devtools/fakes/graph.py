"""Microsoft Graph change-notification subscriptions and the Entra ID token endpoint, as
documented.

- ``POST /{tenant}/oauth2/v2.0/token`` (form): ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``, ``scope=https://graph.microsoft.com/.default`` answers
  ``{"token_type": "Bearer", "expires_in": 3599, "access_token": ...}``; wrong credentials
  answer 400 ``invalid_client``, an unknown tenant 400 ``invalid_request``.
- ``/v1.0/subscriptions`` with a bearer token (401 ``InvalidAuthenticationToken`` without):
  ``GET`` lists the app's live subscriptions, ``page_size`` per page with ``@odata.nextLink``;
  ``POST`` creates one (201); ``GET``/``PATCH``/``DELETE`` ``/{id}`` (200/200/204);
  ``POST /{id}/reauthorize`` (204). An expired or deleted subscription answers 404.
- On create, like Graph, it first POSTs ``?validationToken=...`` (``Content-Type:
  text/plain``) to the ``notificationUrl`` and to the ``lifecycleNotificationUrl``, and
  refuses the subscription (400 ``ValidationError``) unless each answers 200, ``text/plain``,
  with the URL-decoded token as the body, within 10 seconds.
- Lifetime: an expiration above the resource's maximum is refused (400, with Graph's historic
  wording); one less than 45 minutes ahead is raised to 45 minutes; one in the past is refused.
  The maxima follow the documented table (Outlook 4,230 minutes); ``max_minutes`` overrides it.
- ``clientState`` longer than 128 characters is refused (v1.0 limit).
- Faults: ``inject("create", 429, headers={"Retry-After": "1"})`` and the like; route names are
  ``token``, ``list``, ``create``, ``get``, ``patch``, ``delete``, ``reauthorize``.

Real Graph only accepts https notification URLs; the fake accepts http on loopback.
Standalone (``python -m devtools.fakes.graph``), ``/_admin/subscriptions`` lists what it holds,
``/_admin/advance`` moves its clock, ``/_admin/notify`` and ``/_admin/lifecycle`` send to a
subscription's URL.
Helpers send change notifications and lifecycle events to a subscription's URLs the way Graph
does (``notify``, ``lifecycle``).
"""

from __future__ import annotations

import argparse
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from devtools.fakes.base import FakeServer, Request, Response

SCOPE = "https://graph.microsoft.com/.default"
MIN_LIFETIME = timedelta(minutes=45)
VALIDATION_TIMEOUT = 10.0
MAX_CLIENT_STATE = 128
CHANGE_TYPES = {"created", "updated", "deleted"}

# Documented maximum lifetimes in minutes (subscription resource page), first match wins.
DEFAULT_MAX_MINUTES: tuple[tuple[str, int], ...] = (
    (r"^(teams|chats|communications/presences)\b|/(chats|channels)\b", 60),
    (r"/drives?\b|/root\b|/lists/", 42300),
    (r"(messages|events|contacts)$", 4230),
    (r"^(users|groups)$", 41760),
)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _graph_error(status: int, code: str, message: str) -> Response:
    return Response(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"request-id": str(uuid.uuid4()), "date": _iso(datetime.now(UTC))},
            }
        },
    )


@dataclass
class FakeSubscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: datetime
    application_id: str
    deleted: bool = False
    reauthorized: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.subscription",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _iso(self.expires_at),
            "creatorId": "fake-creator",
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "notificationContentType": None,
            "notificationQueryOptions": None,
        }


@dataclass
class Validation:
    """One validation request the fake sent, and what came back."""

    url: str
    token: str
    status: int | None
    content_type: str
    body: str
    accepted: bool


class GraphFake(FakeServer):
    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        page_size: int = 100,
        max_minutes: dict[str, int] | None = None,
        validate: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or secrets.token_urlsafe(30)
        self.page_size = page_size
        self.max_minutes_override = dict(max_minutes or {})
        self.validate = validate
        self.subscriptions: dict[str, FakeSubscription] = {}
        self.validations: list[Validation] = []
        self.tokens: dict[str, datetime] = {}
        self.token_lifetime = timedelta(seconds=3599)
        self._offset = timedelta()
        self.route("POST", "/{tenant}/oauth2/v2.0/token", self._token, name="token")
        self.route("GET", "/v1.0/subscriptions", self._list, name="list")
        self.route("POST", "/v1.0/subscriptions", self._create, name="create")
        self.route("GET", "/v1.0/subscriptions/{id}", self._get, name="get")
        self.route("PATCH", "/v1.0/subscriptions/{id}", self._patch, name="patch")
        self.route("DELETE", "/v1.0/subscriptions/{id}", self._delete, name="delete")
        self.route(
            "POST", "/v1.0/subscriptions/{id}/reauthorize", self._reauthorize, name="reauthorize"
        )

    # --- clock and state, for tests -----------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        """Move the fake's clock: subscriptions and tokens expire as time passes."""
        with self.lock:
            self._offset += delta

    @property
    def login_url(self) -> str:
        return self.url

    def live(self) -> list[FakeSubscription]:
        """Subscriptions Graph still has (not deleted, not expired)."""
        now = self.now()
        with self.lock:
            for sub in self.subscriptions.values():
                if sub.expires_at <= now:
                    sub.deleted = True  # Graph deletes a subscription nobody renewed in time
            return [s for s in self.subscriptions.values() if not s.deleted]

    def add(
        self,
        *,
        resource: str,
        change_type: str = "created",
        notification_url: str,
        lifecycle_url: str | None = None,
        client_state: str | None = None,
        expires_in: timedelta = timedelta(hours=48),
    ) -> FakeSubscription:
        """A subscription that already exists (created earlier, by us or by another tool)."""
        sub = FakeSubscription(
            id=str(uuid.uuid4()),
            resource=resource,
            change_type=change_type,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=self.now() + expires_in,
            application_id=self.client_id,
        )
        with self.lock:
            self.subscriptions[sub.id] = sub
        return sub

    def max_minutes(self, resource: str) -> int:
        normalised = resource.strip().lstrip("/").lower()
        for pattern, minutes in self.max_minutes_override.items():
            if re.search(pattern, normalised):
                return minutes
        for pattern, minutes in DEFAULT_MAX_MINUTES:
            if re.search(pattern, normalised):
                return minutes
        return 4230

    # --- token --------------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        form = request.form()
        if request.match["tenant"] != self.tenant_id:
            return Response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS90002: Tenant not found.",
                    "error_codes": [90002],
                },
            )
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type", "error_codes": [70003]})
        if form.get("scope") != SCOPE:
            return Response(400, {"error": "invalid_scope", "error_codes": [70011]})
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return Response(
                401 if form.get("client_id") == self.client_id else 400,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        token = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[token] = self.now() + self.token_lifetime
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime.total_seconds()),
                "ext_expires_in": int(self.token_lifetime.total_seconds()),
                "access_token": token,
            },
        )

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self.lock:
            expires = self.tokens.get(header[len("Bearer ") :])
        return expires is not None and expires > self.now()

    def _unauthorised(self) -> Response:
        return _graph_error(
            401, "InvalidAuthenticationToken", "Access token is empty or has expired."
        )

    # --- subscriptions ------------------------------------------------------------------

    def _find(self, sub_id: str) -> FakeSubscription | None:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
        if sub is None or sub.deleted:
            return None
        if sub.expires_at <= self.now():
            with self.lock:
                sub.deleted = True
            return None
        return sub

    def _not_found(self, sub_id: str) -> Response:
        return _graph_error(404, "ResourceNotFound", f"The object was not found. id: {sub_id}")

    def _list(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        live = sorted(self.live(), key=lambda s: s.id)
        start = int(request.query.get("$skiptoken", "0") or 0)
        page = live[start : start + self.page_size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#subscriptions",
            "value": [s.to_json() for s in page],
        }
        if start + self.page_size < len(live):
            query = urlencode({"$skiptoken": start + self.page_size})
            body["@odata.nextLink"] = f"{self.url}/v1.0/subscriptions?{query}"
        return Response(200, body)

    def _check_expiry(self, value: Any, resource: str) -> tuple[datetime | None, Response | None]:
        expires = _parse(value)
        if expires is None:
            return None, _graph_error(
                400, "InvalidRequest", "expirationDateTime is missing or not a date."
            )
        now = self.now()
        if expires <= now:
            return None, _graph_error(
                400, "InvalidRequest", "Subscription expiration must be in the future."
            )
        maximum = self.max_minutes(resource)
        if expires > now + timedelta(minutes=maximum):
            return None, _graph_error(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {maximum} minutes in the future.",
            )
        return max(expires, now + MIN_LIFETIME), None

    def _create(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        try:
            body = request.json()
        except ValueError:
            return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        if not isinstance(body, dict):
            return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        resource, change_type = body.get("resource"), body.get("changeType")
        url, lifecycle = body.get("notificationUrl"), body.get("lifecycleNotificationUrl")
        state = body.get("clientState")
        if not isinstance(resource, str) or not resource:
            return _graph_error(400, "InvalidRequest", "resource is required.")
        if (
            not isinstance(change_type, str)
            or not {c.strip() for c in change_type.split(",")} <= CHANGE_TYPES
        ):
            return _graph_error(400, "InvalidRequest", "changeType is invalid.")
        if not isinstance(url, str) or not url:
            return _graph_error(400, "InvalidRequest", "notificationUrl is required.")
        if state is not None and (not isinstance(state, str) or len(state) > MAX_CLIENT_STATE):
            return _graph_error(
                400, "InvalidRequest", f"clientState must be at most {MAX_CLIENT_STATE} characters."
            )
        expires, error = self._check_expiry(body.get("expirationDateTime"), resource)
        if error is not None:
            return error
        assert expires is not None
        if self.validate:
            for target in [u for u in (url, lifecycle) if isinstance(u, str) and u]:
                if not self.send_validation(target).accepted:
                    return _graph_error(
                        400,
                        "ValidationError",
                        "Subscription validation request failed. Notification endpoint must "
                        "respond with 200 OK to validation request.",
                    )
        sub = FakeSubscription(
            id=str(uuid.uuid4()),
            resource=resource,
            change_type=change_type,
            notification_url=url,
            lifecycle_url=lifecycle if isinstance(lifecycle, str) else None,
            client_state=state,
            expires_at=expires,
            application_id=self.client_id,
        )
        with self.lock:
            self.subscriptions[sub.id] = sub
        return Response(
            201,
            {"@odata.context": f"{self.url}/v1.0/$metadata#subscriptions/$entity", **sub.to_json()},
        )

    def _get(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        sub = self._find(request.match["id"])
        return Response(200, sub.to_json()) if sub else self._not_found(request.match["id"])

    def _patch(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        sub = self._find(request.match["id"])
        if sub is None:
            return self._not_found(request.match["id"])
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        if "lifecycleNotificationUrl" in body:
            return _graph_error(
                400, "InvalidRequest", "lifecycleNotificationUrl can only be set at creation."
            )
        expires, error = self._check_expiry(body.get("expirationDateTime"), sub.resource)
        if error is not None:
            return error
        assert expires is not None
        with self.lock:
            sub.expires_at = expires
        return Response(200, sub.to_json())

    def _delete(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        sub = self._find(request.match["id"])
        if sub is None:
            return self._not_found(request.match["id"])
        with self.lock:
            sub.deleted = True
        return Response(204)

    def _reauthorize(self, request: Request) -> Response:
        if not self._authorised(request):
            return self._unauthorised()
        sub = self._find(request.match["id"])
        if sub is None:
            return self._not_found(request.match["id"])
        with self.lock:
            sub.reauthorized += 1
        return Response(204)

    # --- what Graph sends to the app ----------------------------------------------------

    def send_validation(self, url: str) -> Validation:
        """POST ``url?validationToken=...`` as Graph does and check the echo."""
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {uuid.uuid4()} <&>"
        )
        separator = "&" if urlsplit(url).query else "?"
        try:
            response = requests.post(
                f"{url}{separator}{urlencode({'validationToken': token})}",
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=VALIDATION_TIMEOUT,
            )
        except requests.RequestException:
            result = Validation(url, token, None, "", "", False)
        else:
            content_type = response.headers.get("Content-Type", "")
            accepted = (
                response.status_code == 200
                and content_type.split(";")[0].strip().lower() == "text/plain"
                and response.text == token
            )
            result = Validation(
                url, token, response.status_code, content_type, response.text, accepted
            )
        with self.lock:
            self.validations.append(result)
        return result

    def change_notification(
        self,
        sub: FakeSubscription,
        *,
        change_type: str | None = None,
        client_state: str | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """One item of a change notification for ``sub`` (its clientState unless overridden)."""
        message_id = message_id or f"AAMk{secrets.token_hex(8)}"
        resource = f"{sub.resource.strip('/').split('/mailFolders')[0]}/messages/{message_id}"
        return {
            "id": str(uuid.uuid4()),
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _iso(sub.expires_at),
            "clientState": sub.client_state if client_state is None else client_state,
            "changeType": change_type or sub.change_type.split(",")[0],
            "resource": resource,
            "tenantId": self.tenant_id,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": resource,
                "@odata.etag": f'W/"{secrets.token_hex(8)}"',
                "id": message_id,
            },
        }

    def lifecycle_event(
        self, sub: FakeSubscription, event: str, *, client_state: str | None = None
    ) -> dict[str, Any]:
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _iso(sub.expires_at),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state if client_state is None else client_state,
            "lifecycleEvent": event,
        }

    @staticmethod
    def deliver(url: str, items: list[dict[str, Any]], timeout: float = 10.0) -> requests.Response:
        """POST ``{"value": items}`` to ``url`` as Graph does."""
        return requests.post(
            url,
            json={"value": items},
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=timeout,
        )

    def notify(self, sub: FakeSubscription, count: int = 1, **kwargs: Any) -> requests.Response:
        """Send ``count`` change notifications for ``sub`` to its notificationUrl."""
        items = [self.change_notification(sub, **kwargs) for _ in range(count)]
        return self.deliver(sub.notification_url, items)

    def lifecycle(self, sub: FakeSubscription, event: str, **kwargs: Any) -> requests.Response:
        """Send a lifecycle event for ``sub`` to its lifecycleNotificationUrl."""
        if event == "subscriptionRemoved":
            with self.lock:
                sub.deleted = True
        url = sub.lifecycle_url or sub.notification_url
        return self.deliver(url, [self.lifecycle_event(sub, event, **kwargs)])

    # --- admin for standalone use -------------------------------------------------------

    def admin(self, request: Request) -> Response:
        if request.path == "/_admin/subscriptions" and request.method == "GET":
            return Response(200, {"value": [s.to_json() for s in self.live()]})
        if request.path == "/_admin/advance" and request.method == "POST":
            self.advance(timedelta(minutes=float(request.json()["minutes"])))
            return Response(204)
        if request.path in ("/_admin/notify", "/_admin/lifecycle") and request.method == "POST":
            # {"subscriptionId": ..., "count": n} or {"subscriptionId": ..., "event": ...}
            spec = request.json()
            sub = self._find(str(spec.get("subscriptionId", "")))
            if sub is None:
                return self._not_found(str(spec.get("subscriptionId", "")))
            if request.path == "/_admin/notify":
                answer = self.notify(sub, int(spec.get("count", 1)))
            else:
                answer = self.lifecycle(sub, str(spec["event"]))
            return Response(200, {"status": answer.status_code})
        return super().admin(request)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Microsoft Graph subscriptions fake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--tenant-id", default=None)
    parser.add_argument("--client-id", default=None)
    parser.add_argument(
        "--client-secret",
        default=None,
        help="the secret the app must present (default: random, never printed)",
    )
    args = parser.parse_args()
    fake = GraphFake(
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        page_size=args.page_size,
    )
    print(
        f"ready url={fake.url} tenant_id={fake.tenant_id} client_id={fake.client_id}",
        flush=True,
    )
    fake.serve_forever()


if __name__ == "__main__":
    main()
