"""Set-up helpers against the local emulators: Pub/Sub topics and subscriptions, GCS buckets.

They talk to an emulator only: the host comes from the ``host``/``endpoint`` argument or from
``PUBSUB_EMULATOR_HOST`` / ``STORAGE_EMULATOR_HOST``; with neither they raise rather than reach
the real Google Cloud. Creating what already exists is not an error.
"""

from __future__ import annotations

import os

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport


def pubsub_host(host: str | None = None) -> str:
    """``host`` or ``PUBSUB_EMULATOR_HOST``; never the real service."""
    found = host or os.environ.get("PUBSUB_EMULATOR_HOST")
    if not found:
        raise RuntimeError("no Pub/Sub emulator: pass host= or set PUBSUB_EMULATOR_HOST")
    return found


def publisher(host: str | None = None) -> pubsub_v1.PublisherClient:
    """A publisher on an insecure channel to the emulator."""
    channel = grpc.insecure_channel(pubsub_host(host))
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))


def subscriber(host: str | None = None) -> pubsub_v1.SubscriberClient:
    """A subscriber on an insecure channel to the emulator."""
    channel = grpc.insecure_channel(pubsub_host(host))
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"


def push_endpoint(base_url: str, project: str, topic: str) -> str:
    """``<base_url>/projects/P/topics/T``: functions-framework reads the topic from this path
    into the CloudEvent ``source``, as Eventarc would set it."""
    return f"{base_url.rstrip('/')}/{topic_path(project, topic)}"


def create_topic(project: str, topic: str, *, host: str | None = None) -> str:
    """Create ``topic`` (if missing); returns its full path."""
    path = topic_path(project, topic)
    client = publisher(host)
    try:
        client.create_topic(name=path)
    except gexc.AlreadyExists:
        pass
    finally:
        client.transport.close()
    return path


def create_subscription(
    project: str,
    topic: str,
    subscription: str,
    *,
    push_url: str | None = None,
    ack_deadline_seconds: int = 10,
    host: str | None = None,
) -> str:
    """Create a pull subscription, or a push one when ``push_url`` is given (used as is)."""
    path = subscription_path(project, subscription)
    request: dict[str, object] = {
        "name": path,
        "topic": topic_path(project, topic),
        "ack_deadline_seconds": ack_deadline_seconds,
    }
    if push_url is not None:
        request["push_config"] = {"push_endpoint": push_url}
    client = subscriber(host)
    try:
        client.create_subscription(request=request)
    except gexc.AlreadyExists:
        pass
    finally:
        client.close()
    return path


def create_push_subscription(
    project: str,
    topic: str,
    subscription: str,
    base_url: str,
    *,
    host: str | None = None,
) -> str:
    """Create ``topic`` and a push subscription delivering it to
    ``<base_url>/projects/P/topics/T`` (e.g. a function served by functions-framework)."""
    create_topic(project, topic, host=host)
    return create_subscription(
        project, topic, subscription, push_url=push_endpoint(base_url, project, topic), host=host
    )


def storage_client(project: str | None = None, *, endpoint: str | None = None) -> storage.Client:
    """A GCS client on the emulator (``endpoint`` or ``STORAGE_EMULATOR_HOST``), no credentials."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "local-project"
    if endpoint:
        return storage.Client(
            project=project,
            client_options={"api_endpoint": endpoint},
            use_auth_w_custom_endpoint=False,
        )
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        raise RuntimeError("no GCS emulator: pass endpoint= or set STORAGE_EMULATOR_HOST")
    return storage.Client(project=project)


def create_bucket(
    name: str, *, project: str | None = None, endpoint: str | None = None
) -> storage.Bucket:
    """Create bucket ``name`` on the emulator (if missing) and return it."""
    client = storage_client(project, endpoint=endpoint)
    try:
        return client.create_bucket(name)
    except gexc.Conflict:
        return client.bucket(name)
