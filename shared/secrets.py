"""Secret Manager: read, add versions, prune old versions, read and update annotations.

Honours ``SECRET_MANAGER_EMULATOR_HOST=host:port`` the way the Pub/Sub client honours
``PUBSUB_EMULATOR_HOST``: an insecure gRPC channel and no credentials. Otherwise it uses the
default credentials of the environment (the function's service account in Cloud Functions).
Every value read is registered with the redaction layer, so it can never reach a log line.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import google_crc32c
from google.api_core import exceptions as gexc
from google.cloud import secretmanager

from shared import redact
from shared.errors import SECRET_MISSING, TerminalError, TransientError
from shared.settings import project_id as default_project_id

log = logging.getLogger(__name__)

EMULATOR_ENV = "SECRET_MANAGER_EMULATOR_HOST"

# Errors after which the same write may succeed: the service or its quota (2 writes per second
# per secret) pushed back, or the call raced another writer's etag.
RETRYABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
)

# What the service answers when a request's etag no longer matches the resource.
ETAG_CONFLICT = (gexc.Aborted, gexc.FailedPrecondition)

# What reading a secret answers when only a person can help: the secret does not exist, has
# no enabled version, or the function's service account may not read it.
UNREADABLE = (gexc.NotFound, gexc.FailedPrecondition, gexc.PermissionDenied)

T = TypeVar("T")


@dataclass(frozen=True)
class SecretValue:
    value: str
    version: int


@dataclass(frozen=True)
class SecretInfo:
    secret_id: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    etag: str = ""


def make_client() -> secretmanager.SecretManagerServiceClient:
    host = os.environ.get(EMULATOR_ENV)
    if host:
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(host)
        return secretmanager.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=channel)
        )
    return secretmanager.SecretManagerServiceClient()


def _version_number(name: str) -> int:
    return int(name.rsplit("/", 1)[-1])


class SecretStore:
    """Secrets of one project."""

    def __init__(
        self,
        project: str | None = None,
        client: secretmanager.SecretManagerServiceClient | None = None,
    ) -> None:
        self.project = project or default_project_id()
        self._client = client
        # Secret value accesses made through this store (each one is billed and counts against
        # the quota); a run reports its share as ``secret_reads``. Only metadata reads
        # (info, latest_version) are left out: they are not access operations.
        self.reads = 0
        self._reads_lock = threading.Lock()

    @property
    def client(self) -> secretmanager.SecretManagerServiceClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def path(self, secret_id: str) -> str:
        return f"projects/{self.project}/secrets/{secret_id}"

    # --- values -------------------------------------------------------------------------

    def read(self, secret_id: str, version: str | int = "latest") -> SecretValue:
        with self._reads_lock:
            self.reads += 1
        response = self.client.access_secret_version(
            request={"name": f"{self.path(secret_id)}/versions/{version}"}
        )
        value = response.payload.data.decode("utf-8")
        redact.register(value)
        return SecretValue(value=value, version=_version_number(response.name))

    def read_optional(self, secret_id: str) -> SecretValue | None:
        """The latest value, or None when the secret or any enabled version does not exist."""
        try:
            return self.read(secret_id)
        except (gexc.NotFound, gexc.FailedPrecondition):
            return None

    def latest_version(self, secret_id: str) -> int | None:
        """Number of the newest version (what `latest` resolves to), without reading its data."""
        try:
            version = self.client.get_secret_version(
                request={"name": f"{self.path(secret_id)}/versions/latest"}
            )
        except (gexc.NotFound, gexc.FailedPrecondition):
            return None
        return _version_number(version.name)

    def add_version(self, secret_id: str, value: str) -> int:
        redact.register(value)
        data = value.encode("utf-8")
        crc = google_crc32c.value(data)
        response = self.client.add_secret_version(
            request={
                "parent": self.path(secret_id),
                "payload": {"data": data, "data_crc32c": crc},
            }
        )
        return _version_number(response.name)

    def prune(self, secret_id: str, keep: int) -> list[int]:
        """Destroy all but the ``keep`` newest live versions; return the destroyed numbers.

        Destroyed versions cost nothing; every enabled or disabled one is billed monthly.
        """
        live = [
            v
            for v in self.client.list_secret_versions(request={"parent": self.path(secret_id)})
            if v.state
            in (
                secretmanager.SecretVersion.State.ENABLED,
                secretmanager.SecretVersion.State.DISABLED,
            )
        ]
        live.sort(key=lambda v: _version_number(v.name), reverse=True)
        destroyed = []
        for version in live[keep:]:
            try:
                self.client.destroy_secret_version(request={"name": version.name})
            except gexc.FailedPrecondition:
                continue  # destroyed meanwhile by a concurrent prune
            destroyed.append(_version_number(version.name))
        return destroyed

    # --- metadata -----------------------------------------------------------------------

    def info(self, secret_id: str) -> SecretInfo:
        secret = self.client.get_secret(request={"name": self.path(secret_id)})
        return _info(secret)

    def info_optional(self, secret_id: str) -> SecretInfo | None:
        try:
            return self.info(secret_id)
        except gexc.NotFound:
            return None

    def update_annotations(
        self,
        secret_id: str,
        changes: Mapping[str, str | None],
        *,
        etag: str | None = None,
        current: SecretInfo | None = None,
    ) -> SecretInfo:
        """Merge ``changes`` into the annotations (None removes a key).

        The write carries the etag of the state it merged into, so a concurrent writer's
        change is never overwritten. With ``etag`` given, a conflict raises (``Aborted`` or
        ``FailedPrecondition``); without it, the merge is re-read and retried a few times.
        ``current``, the secret as the caller just read it, saves the first read: its etag
        guards the write like a read's would, and a conflict re-reads as above.
        """
        known = current
        for _ in range(5):
            current, known = known or self.info(secret_id), None
            merged = dict(current.annotations)
            for key, value in changes.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            try:
                updated = self.client.update_secret(
                    request={
                        "secret": {
                            "name": self.path(secret_id),
                            "annotations": merged,
                            "etag": etag if etag is not None else current.etag,
                        },
                        "update_mask": {"paths": ["annotations"]},
                    }
                )
            except ETAG_CONFLICT:
                if etag is not None:
                    raise
                continue
            return _info(updated)
        raise gexc.Aborted(  # type: ignore[no-untyped-call]
            f"annotations of {secret_id} kept changing under concurrent writers"
        )

    def update_labels(self, secret_id: str, changes: Mapping[str, str | None]) -> SecretInfo:
        labels = dict(self.info(secret_id).labels)
        for key, value in changes.items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        updated = self.client.update_secret(
            request={
                "secret": {"name": self.path(secret_id), "labels": labels},
                "update_mask": {"paths": ["labels"]},
            }
        )
        return _info(updated)

    def create(
        self,
        secret_id: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> SecretInfo:
        """Create the secret with automatic replication; an existing one is returned as is."""
        try:
            secret = self.client.create_secret(
                request={
                    "parent": f"projects/{self.project}",
                    "secret_id": secret_id,
                    "secret": {
                        "replication": {"automatic": {}},
                        "labels": dict(labels or {}),
                        "annotations": dict(annotations or {}),
                    },
                }
            )
        except gexc.AlreadyExists:
            return self.info(secret_id)
        return _info(secret)

    def list_secrets(self, filter: str = "") -> list[SecretInfo]:
        request: dict[str, Any] = {"parent": f"projects/{self.project}"}
        if filter:
            request["filter"] = filter
        return [_info(s) for s in self.client.list_secrets(request=request)]


def read_required(store: SecretStore, secret_id: str) -> str:
    """The latest value of a secret the run cannot do without.

    TERMINAL with code ``secret_missing`` when a person must add a version, enable one or grant
    access (see UNREADABLE); TRANSIENT with code ``secret_manager`` when Secret Manager failed
    otherwise (unavailable, throttled), so the trigger is delivered again.
    """
    try:
        return store.read(secret_id).value
    except UNREADABLE as error:
        raise TerminalError(
            f"secret {secret_id} has no readable version ({type(error).__name__})",
            code=SECRET_MISSING,
        ) from None
    except gexc.GoogleAPICallError as error:
        raise TransientError(
            f"reading secret {secret_id} failed ({type(error).__name__})", code="secret_manager"
        ) from None


def _info(secret: Any) -> SecretInfo:
    return SecretInfo(
        secret_id=secret.name.rsplit("/", 1)[-1],
        labels=dict(secret.labels),
        annotations=dict(secret.annotations),
        etag=secret.etag,
    )


def with_retry(
    operation: Callable[[], T],
    *,
    deadline: float,
    what: str,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a Secret Manager call, retrying transient failures until ``deadline`` (monotonic).

    For writes that must not be lost, such as a rotated single-use refresh token: the caller
    gives the whole remaining run time.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except RETRYABLE as error:
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "%s: Secret Manager answered %s, retry %d in %.1fs",
                what,
                type(error).__name__,
                attempt,
                delay,
            )
            sleep(delay)
