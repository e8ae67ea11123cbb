"""The Secret Manager emulator, driven by the official client over real gRPC."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import secretmanager
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from devtools.secret_manager_emulator import EmulatorHandle, start

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "projects/test-project"
MODULE = "devtools.secret_manager_emulator"
State = secretmanager.SecretVersion.State
Client = secretmanager.SecretManagerServiceClient


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorHandle]:
    handle = start(host="127.0.0.1")
    yield handle
    handle.stop()


@pytest.fixture
def emulator(server: EmulatorHandle) -> EmulatorHandle:
    server.emulator.reset()
    return server


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[Client]:
    channel = grpc.insecure_channel(emulator.grpc_address)
    yield Client(transport=SecretManagerServiceGrpcTransport(channel=channel))
    channel.close()


def path(secret_id: str, project: str = PROJECT) -> str:
    return f"{project}/secrets/{secret_id}"


def create(client: Client, secret_id: str, labels=None, annotations=None, project=PROJECT):
    return client.create_secret(
        request={
            "parent": project,
            "secret_id": secret_id,
            "secret": {
                "replication": {"automatic": {}},
                "labels": labels or {},
                "annotations": annotations or {},
            },
        }
    )


def add(client: Client, secret_id: str, data: bytes, crc32c: int | None = None):
    checksum = google_crc32c.value(data) if crc32c is None else crc32c
    return client.add_secret_version(
        request={"parent": path(secret_id), "payload": {"data": data, "data_crc32c": checksum}}
    )


def access(client: Client, secret_id: str, version: str = "latest"):
    return client.access_secret_version(name=f"{path(secret_id)}/versions/{version}")


def admin(address: str, method: str, route: str, body: object = None) -> tuple[int, Any]:
    host, port = address.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, route, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_cli_prints_ready_line_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", MODULE, "--host", "127.0.0.1", "--port", "0", "--admin-port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = re.fullmatch(
            r"ready grpc=(127\.0\.0\.1:\d+) admin=(127\.0\.0\.1:\d+)\n", process.stdout.readline()
        )
        assert ready, "the CLI must announce both real ports on one line"
        grpc_address, admin_address = ready.groups()
        assert not grpc_address.endswith(":0") and not admin_address.endswith(":0")
        channel = grpc.insecure_channel(grpc_address)
        client = Client(transport=SecretManagerServiceGrpcTransport(channel=channel))
        create(client, "b24-refresh-token")
        add(client, "b24-refresh-token", b"token-1")
        assert access(client, "b24-refresh-token").payload.data == b"token-1"
        channel.close()
        status, stats = admin(admin_address, "GET", "/stats")
        assert status == 200
        calls = {"CreateSecret": 1, "AddSecretVersion": 1, "AccessSecretVersion": 1}
        assert stats == {"calls": calls}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_create_validates_ids_rejects_duplicates_accepts_numbers(client: Client) -> None:
    secret = create(client, "b24_refresh-token", labels={"env": "prod"}, annotations={"a": "1"})
    assert secret.name == path("b24_refresh-token")
    assert secret.etag and secret.create_time
    assert dict(secret.labels) == {"env": "prod"} and dict(secret.annotations) == {"a": "1"}
    assert secret.replication.automatic is not None
    with pytest.raises(gexc.AlreadyExists):
        create(client, "b24_refresh-token")
    for bad_id in ("has.dot", "has/slash", "", "x" * 256):
        with pytest.raises(gexc.InvalidArgument):
            create(client, bad_id)
    create(client, "x" * 255)
    numbered = create(client, "same-id", project="projects/123456789")
    assert numbered.name == "projects/123456789/secrets/same-id"
    assert client.get_secret(name=numbered.name).etag == numbered.etag
    regional = "projects/p/locations/europe-west1"
    with pytest.raises(gexc.InvalidArgument):  # global secrets need a replication policy
        client.create_secret(request={"parent": PROJECT, "secret_id": "bare", "secret": {}})
    bare = client.create_secret(request={"parent": regional, "secret_id": "bare", "secret": {}})
    assert bare.name == f"{regional}/secrets/bare"


def test_list_filters_by_labels_and_name_and_paginates_newest_first(client: Client) -> None:
    for index in range(5):
        labels = {"env": "prod" if index % 2 == 0 else "dev"}
        if index == 3:
            labels["team"] = "core"
        create(client, f"secret-{index}", labels=labels)

    pager = client.list_secrets(
        request={"parent": PROJECT, "filter": "labels.env=prod", "page_size": 2}
    )
    pages = [[s.name.rsplit("/", 1)[1] for s in page.secrets] for page in pager.pages]
    assert pages == [["secret-4", "secret-2"], ["secret-0"]]

    def names(filter_text: str) -> list[str]:
        found = client.list_secrets(request={"parent": PROJECT, "filter": filter_text})
        return [s.name.rsplit("/", 1)[1] for s in found]

    assert names("labels.team:*") == ["secret-3"]
    assert names("name:secret-1") == ["secret-1"]
    assert names("labels.env=dev AND labels.team:*") == ["secret-3"]
    assert names('labels.env = "dev"') == ["secret-3", "secret-1"]
    assert names("labels.missing:*") == []

    everything = client.list_secrets(request={"parent": PROJECT, "page_size": 3})
    assert [len(page.secrets) for page in everything.pages] == [3, 2]
    first = client.list_secrets(request={"parent": PROJECT, "page_size": 3})
    assert first.total_size == 5
    assert len(list(client.list_secrets(request={"parent": "projects/other"}))) == 0

    for unsupported in ("labels.env=prod OR labels.env=dev", "NOT labels.env=prod", "bogus=1"):
        with pytest.raises(gexc.InvalidArgument):
            names(unsupported)


def test_add_numbers_versions_and_access_latest_returns_newest(client: Client) -> None:
    create(client, "token")
    first, second = add(client, "token", b"one"), add(client, "token", b"two")
    assert first.name == f"{path('token')}/versions/1"
    assert second.name == f"{path('token')}/versions/2"
    assert second.state == State.ENABLED and second.client_specified_payload_checksum

    latest = access(client, "token")
    assert latest.name == second.name
    assert latest.payload.data == b"two"
    assert latest.payload.data_crc32c == google_crc32c.value(b"two")
    assert access(client, "token", "1").payload.data == b"one"
    assert client.get_secret_version(name=f"{path('token')}/versions/latest").name == second.name

    listed = client.list_secret_versions(request={"parent": path("token")})
    assert [v.name.rsplit("/", 1)[1] for v in listed] == ["2", "1"]
    with pytest.raises(gexc.NotFound):
        add(client, "missing", b"x")
    with pytest.raises(gexc.NotFound):
        access(client, "token", "3")


def test_payload_checksum_and_size_are_enforced(client: Client) -> None:
    create(client, "token")
    with pytest.raises(gexc.InvalidArgument):
        add(client, "token", b"data", crc32c=google_crc32c.value(b"other"))
    with pytest.raises(gexc.InvalidArgument):
        add(client, "token", b"x" * (64 * 1024 + 1))
    assert list(client.list_secret_versions(request={"parent": path("token")})) == []

    unchecked = client.add_secret_version(
        request={"parent": path("token"), "payload": {"data": b"x" * 64 * 1024}}
    )
    assert not unchecked.client_specified_payload_checksum
    assert access(client, "token").payload.data_crc32c == google_crc32c.value(b"x" * 64 * 1024)


def test_destroy_wipes_data_and_access_then_fails(client: Client) -> None:
    create(client, "token")
    version = add(client, "token", b"secret")
    with pytest.raises(gexc.FailedPrecondition):
        client.destroy_secret_version(request={"name": version.name, "etag": '"stale"'})

    destroyed = client.destroy_secret_version(request={"name": version.name, "etag": version.etag})
    assert destroyed.state == State.DESTROYED and destroyed.destroy_time
    assert destroyed.etag != version.etag
    with pytest.raises(gexc.FailedPrecondition, match="DESTROYED"):
        access(client, "token", "1")
    with pytest.raises(gexc.FailedPrecondition):
        client.enable_secret_version(name=version.name)
    assert client.get_secret_version(name=version.name).state == State.DESTROYED
    assert add(client, "token", b"next").name.endswith("/versions/2")


def test_disable_and_enable_with_etags_and_state_filter(client: Client) -> None:
    create(client, "token")
    v1, v2 = add(client, "token", b"one"), add(client, "token", b"two")

    disabled = client.disable_secret_version(request={"name": v1.name, "etag": v1.etag})
    assert disabled.state == State.DISABLED
    with pytest.raises(gexc.FailedPrecondition, match="DISABLED"):
        access(client, "token", "1")
    enabled = {"parent": path("token"), "filter": "state:ENABLED"}
    assert [v.name for v in client.list_secret_versions(request=enabled)] == [v2.name]

    with pytest.raises(gexc.FailedPrecondition):  # v1's etag changed when it was disabled
        client.enable_secret_version(request={"name": v1.name, "etag": v1.etag})
    client.enable_secret_version(request={"name": v1.name, "etag": disabled.etag})
    assert access(client, "token", "1").payload.data == b"one"

    # `latest` is the newest version whatever its state, as in production: disabling it makes
    # `latest` unreadable instead of falling back to an older enabled version.
    client.disable_secret_version(name=v2.name)
    with pytest.raises(gexc.FailedPrecondition):
        access(client, "token")
    assert client.get_secret_version(name=f"{path('token')}/versions/latest").name == v2.name


def test_update_annotations_checks_etag_and_changes_it(client: Client) -> None:
    original = create(client, "token", labels={"env": "prod"}, annotations={"expires": "1"})
    update = {"name": original.name, "annotations": {"expires": "2"}, "etag": original.etag}
    updated = client.update_secret(
        request={"secret": update, "update_mask": {"paths": ["annotations"]}}
    )
    assert dict(updated.annotations) == {"expires": "2"}
    assert dict(updated.labels) == {"env": "prod"}, "fields outside the mask stay untouched"
    assert updated.etag != original.etag

    stale = {"name": original.name, "annotations": {"expires": "3"}, "etag": original.etag}
    with pytest.raises(gexc.FailedPrecondition):
        client.update_secret(request={"secret": stale, "update_mask": {"paths": ["annotations"]}})
    assert dict(client.get_secret(name=original.name).annotations) == {"expires": "2"}

    with pytest.raises(gexc.InvalidArgument):
        client.update_secret(request={"secret": update, "update_mask": {"paths": ["replication"]}})
    no_etag = {"name": original.name, "labels": {}}
    unconditional = client.update_secret(
        request={"secret": no_etag, "update_mask": {"paths": ["labels"]}}
    )
    assert dict(unconditional.labels) == {} and unconditional.etag != updated.etag

    with pytest.raises(gexc.FailedPrecondition):
        client.delete_secret(request={"name": original.name, "etag": updated.etag})
    client.delete_secret(request={"name": original.name, "etag": unconditional.etag})
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=original.name)


def test_http_fault_raises_exactly_n_times(emulator: EmulatorHandle, client: Client) -> None:
    create(client, "b24-refresh-token")
    create(client, "other")
    status, _ = admin(
        emulator.admin_url,
        "POST",
        "/faults",
        {"method": "AddSecretVersion", "code": "UNAVAILABLE", "count": 3},
    )
    assert status == 200
    outcomes = []
    for attempt in range(5):
        try:
            add(client, "b24-refresh-token", f"value-{attempt}".encode())
            outcomes.append("ok")
        except gexc.ServiceUnavailable:
            outcomes.append("unavailable")
    assert outcomes == ["unavailable"] * 3 + ["ok"] * 2
    assert access(client, "b24-refresh-token", "1").payload.data == b"value-3"

    status, _ = admin(
        emulator.admin_url,
        "POST",
        "/faults",
        {"method": "AddSecretVersion", "code": "UNAVAILABLE", "secret": "b24-refresh-token"},
    )
    assert status == 200
    add(client, "other", b"unaffected")
    with pytest.raises(gexc.ServiceUnavailable):
        add(client, "b24-refresh-token", b"hit")
    add(client, "b24-refresh-token", b"after")


def test_in_process_fault_with_other_codes(emulator: EmulatorHandle, client: Client) -> None:
    create(client, "token")
    add(client, "token", b"value")
    emulator.emulator.inject_fault("AccessSecretVersion", "PERMISSION_DENIED", count=1)
    with pytest.raises(gexc.PermissionDenied):
        access(client, "token")
    assert access(client, "token").payload.data == b"value"
    for bad in ({"method": "Nope", "code": "UNAVAILABLE"}, {"method": "GetSecret", "code": "OK"}):
        status, body = admin(emulator.admin_url, "POST", "/faults", bad)
        assert status == 400 and body["error"]


def test_stats_count_calls_and_reset_clears_all(emulator: EmulatorHandle, client: Client) -> None:
    create(client, "token")
    for _ in range(3):
        add(client, "token", b"v")
    client.get_secret(name=path("token"))
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=path("missing"))
    status, stats = admin(emulator.admin_url, "GET", "/stats")
    assert status == 200
    assert stats == {"calls": {"CreateSecret": 1, "AddSecretVersion": 3, "GetSecret": 2}}
    assert emulator.emulator.stats() == stats

    emulator.emulator.inject_fault("GetSecret", "INTERNAL", count=5)
    assert admin(emulator.admin_url, "POST", "/reset", {})[0] == 200
    assert admin(emulator.admin_url, "GET", "/stats") == (200, {"calls": {}})
    create(client, "token")  # the old secret is gone
    assert client.get_secret(name=path("token")).name == path("token")  # and so is the fault


def test_fifty_concurrent_adds_get_distinct_numbers(
    emulator: EmulatorHandle, client: Client
) -> None:
    create(client, "token")
    names: list[str] = []
    with ThreadPoolExecutor(max_workers=50) as pool:
        for _ in range(3):  # races are probabilistic: several bursts make a missing lock show
            names += pool.map(lambda i: add(client, "token", str(i).encode()).name, range(50))
    assert sorted(int(name.rsplit("/", 1)[1]) for name in names) == list(range(1, 151))
    assert len(list(client.list_secret_versions(request={"parent": path("token")}))) == 150
    assert emulator.emulator.stats()["calls"]["AddSecretVersion"] == 150


def test_methods_outside_the_emulated_surface_are_unimplemented(client: Client) -> None:
    create(client, "token")
    with pytest.raises(gexc.MethodNotImplemented):
        client.get_iam_policy(request={"resource": path("token")})
