"""The local stack: each emulator does real work, and nothing outlives ``stop()``."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import grpc
import pytest
from azure.storage.blob import BlobServiceClient
from google.api_core import exceptions as gexc
from google.cloud import secretmanager
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from devtools import gcp, shipenv
from devtools import stack as devstack
from devtools.stack import (
    MissingDependencyError,
    ServiceSpec,
    ServiceStartError,
    Stack,
)

PROJECT = devstack.DEFAULT_PROJECT


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def listening_ports() -> set[int]:
    """Ports in LISTEN state on this machine (IPv4 and IPv6), read from /proc."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


def pull_one(subscription: str, timeout: float = 20.0) -> list[object]:
    client = gcp.subscriber()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            response = client.pull(
                request={"subscription": subscription, "max_messages": 10}, timeout=5
            )
            if response.received_messages:
                client.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
                return [m.message for m in response.received_messages]
        return []
    finally:
        client.close()


# --------------------------------------------------------------------------- the session stack


def test_session_stack_sets_environment(stack: Stack) -> None:
    env = stack.env()
    for key in (
        "GOOGLE_CLOUD_PROJECT",
        "PUBSUB_EMULATOR_HOST",
        "PUBSUB_PROJECT_ID",
        "STORAGE_EMULATOR_HOST",
        "SECRET_MANAGER_EMULATOR_HOST",
        "SECRET_MANAGER_EMULATOR_ADMIN",
    ):
        assert os.environ[key] == env[key]
    assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT == env["PUBSUB_PROJECT_ID"]
    assert env["PUBSUB_EMULATOR_HOST"].startswith("127.0.0.1:")
    assert env["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert env["SECRET_MANAGER_EMULATOR_ADMIN"].startswith("http://127.0.0.1:")


def test_pubsub_publish_and_pull(stack: Stack) -> None:
    topic = unique("topic")
    gcp.create_topic(PROJECT, topic)
    gcp.create_topic(PROJECT, topic)  # again: idempotent
    subscription = gcp.create_subscription(PROJECT, topic, unique("sub"))
    publisher = gcp.publisher()
    try:
        publisher.publish(gcp.topic_path(PROJECT, topic), b"hello", kind="greeting").result(10)
    finally:
        publisher.transport.close()
    messages = pull_one(subscription)
    assert [(m.data, dict(m.attributes)) for m in messages] == [  # type: ignore[attr-defined]
        (b"hello", {"kind": "greeting"})
    ]


def test_gcs_upload_download_and_generation_precondition(stack: Stack) -> None:
    bucket = gcp.create_bucket(unique("bucket"))
    blob = bucket.blob("dir/object.txt")
    blob.upload_from_string(b"first version")
    assert bucket.blob("dir/object.txt").download_as_bytes() == b"first version"
    with pytest.raises(gexc.PreconditionFailed) as caught:
        bucket.blob("dir/object.txt").upload_from_string(b"second", if_generation_match=0)
    assert caught.value.code == 412
    assert bucket.blob("dir/object.txt").download_as_bytes() == b"first version"
    # A new name does satisfy "must not exist yet".
    bucket.blob("dir/new.txt").upload_from_string(b"new", if_generation_match=0)
    assert sorted(b.name for b in bucket.list_blobs()) == ["dir/new.txt", "dir/object.txt"]


def test_secret_manager_create_add_access(stack: Stack) -> None:
    channel = grpc.insecure_channel(os.environ["SECRET_MANAGER_EMULATOR_HOST"])
    client = secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )
    secret_id = unique("secret")
    secret = client.create_secret(
        request={
            "parent": f"projects/{PROJECT}",
            "secret_id": secret_id,
            "secret": {"replication": {"automatic": {}}},
        }
    )
    client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"s3cr3t"}})
    answer = client.access_secret_version(request={"name": f"{secret.name}/versions/latest"})
    assert answer.payload.data == b"s3cr3t"
    channel.close()


def test_azurite_container_upload_list(azurite: Stack) -> None:
    container = unique("container")
    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    )
    service.create_container(container)
    service.get_blob_client(container, "a/b.txt").upload_blob(b"azure bytes")
    # The URL variable with the well-known key reaches the same account.
    by_url = BlobServiceClient(
        account_url=os.environ["AZURITE_BLOB_URL"],
        credential={"account_name": devstack.AZURITE_ACCOUNT, "account_key": devstack.AZURITE_KEY},
    )
    names = [b.name for b in by_url.get_container_client(container).list_blobs()]
    assert names == ["a/b.txt"]
    assert by_url.get_blob_client(container, "a/b.txt").download_blob().readall() == b"azure bytes"


# --------------------------------------------------------------------------- a stack of its own


def test_full_stack_gcs_events_and_clean_stop(tmp_path: Path) -> None:
    topic = unique("gcs-events")
    stack = Stack(tmp_path / "logs", gcs_pubsub_topic=topic)
    with stack:
        stack.start(["pubsub", "gcs", "secretmanager", "azurite"])
        assert set(stack.services) == {"pubsub", "gcs", "secretmanager", "azurite"}
        ports = stack.ports()
        assert len(ports) == 5  # Secret Manager has a gRPC and an admin port
        assert set(ports) <= listening_ports()
        pids = {pid for s in stack.services.values() for pid in devstack.group_pids(s.pgid)}
        assert len(pids) >= 4
        env = stack.env()
        assert env["AZURE_STORAGE_CONNECTION_STRING"].endswith(
            f"BlobEndpoint={env['AZURITE_BLOB_URL']};"
        )

        # fake-gcs-server publishes object events to the topic the stack created.
        os.environ.update(env)
        subscription = gcp.create_subscription(PROJECT, topic, unique("sub"))
        bucket = gcp.create_bucket(unique("bucket"))
        bucket.blob("hello.txt").upload_from_string(b"hi")
        messages = pull_one(subscription)
        assert messages, "no GCS notification reached Pub/Sub"
        attributes = dict(messages[0].attributes)  # type: ignore[attr-defined]
        assert attributes["eventType"] == "OBJECT_FINALIZE"
        assert attributes["bucketId"] == bucket.name
        assert attributes["objectId"] == "hello.txt"

    assert stack.services == {}
    assert not set(ports) & listening_ports()
    assert [pid for pid in pids if alive(pid)] == []
    stack.stop()  # idempotent


def test_missing_pubsub_emulator_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devstack, "sdk_root", lambda: tmp_path)
    with pytest.raises(MissingDependencyError) as caught:
        Stack(tmp_path / "logs").start(["pubsub", "gcs"])
    message = str(caught.value)
    assert "pubsub-emulator" in message
    assert "Java" in message


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "java_command", lambda: None)
    stack = Stack(tmp_path / "logs")
    with pytest.raises(MissingDependencyError, match="Java runtime"):
        stack.start(["pubsub"])
    assert stack.services == {}


def test_port_taken_before_bind_is_retried_on_another_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks: list[int] = []
        real_free_port = devstack.free_port

        def first_pick_is_taken(host: str = "127.0.0.1") -> int:
            picks.append(taken if not picks else real_free_port(host))
            return picks[-1]

        monkeypatch.setattr(devstack, "free_port", first_pick_is_taken)
        with Stack(tmp_path) as stack:
            stack.start(["gcs"])
            assert picks[0] == taken
            assert stack.ports() == [picks[-1]] != [taken]
            answer = devstack.http_get(f"{stack.env()['STORAGE_EMULATOR_HOST']}/storage/v1/b")
            assert answer is not None
            assert answer[0] == 200


def test_unknown_service_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="redis"):
        Stack(tmp_path).start(["redis"])


def _marker_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if alive(pid)]


def test_start_timeout_names_service_and_shows_log_tail(tmp_path: Path) -> None:
    marker = unique("never-ready")
    script = f"print('warming up {marker}', flush=True); import time; time.sleep(60)"
    spec = ServiceSpec("slowpoke", [sys.executable, "-c", script], lambda _log: None, timeout=1)
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as caught:
        devstack.launch(spec, tmp_path)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "slowpoke was not ready after 1s" in message
    assert f"warming up {marker}" in message
    assert _marker_processes(marker) == []


def test_early_exit_reports_code_and_log(tmp_path: Path) -> None:
    script = "import sys; print('boom: bad flag', file=sys.stderr); sys.exit(3)"
    spec = ServiceSpec("crashy", [sys.executable, "-c", script], lambda _log: None, timeout=30)
    with pytest.raises(ServiceStartError, match=r"(?s)crashy exited with code 3.*boom: bad flag"):
        devstack.launch(spec, tmp_path)


def test_cli_up_writes_env_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    cli = subprocess.Popen(
        [
            *(sys.executable, "-m", "devtools.stack", "up", "--services", "gcs,secretmanager"),
            *("--env-file", str(env_file), "--log-dir", str(tmp_path / "logs")),
        ],
        cwd=devstack.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert cli.stdout is not None
        lines = [cli.stdout.readline() for _ in range(4)]
        exported = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines)
        assert list(exported) == [
            "GOOGLE_CLOUD_PROJECT",
            "STORAGE_EMULATOR_HOST",
            "SECRET_MANAGER_EMULATOR_HOST",
            "SECRET_MANAGER_EMULATOR_ADMIN",
        ]
        assert env_file.read_text() == "".join(lines)
        gcs_url = exported["STORAGE_EMULATOR_HOST"]
        answer = devstack.http_get(f"{gcs_url}/storage/v1/b?project={PROJECT}")
        assert answer is not None
        assert answer[0] == 200
        ports = devstack._ports_in(exported)
        assert len(ports) == 3
        children = [p for p in devstack.group_pids(cli.pid) if p != cli.pid]
        assert children == []  # each service has a process group of its own

        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=20) == 0
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    assert not set(ports) & listening_ports()


OWNER_SCRIPT = """
import json, sys, time
from devtools.stack import Stack
stack = Stack(sys.argv[1]).start(["gcs", "secretmanager"])
print(json.dumps({"ports": stack.ports(), "pgids": [s.pgid for s in stack.services.values()]}),
      flush=True)
time.sleep(120)
"""


def test_owner_killed_by_sigterm_takes_its_services_along(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(tmp_path / "logs")],
        cwd=devstack.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(devstack.REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
        assert len(started["ports"]) == 3
        assert set(started["ports"]) <= listening_ports()
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(timeout=20) == -signal.SIGTERM  # still dies of the signal
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait()
    assert [g for g in started["pgids"] if devstack.group_pids(g)] == []
    assert not set(started["ports"]) & listening_ports()


# --------------------------------------------------------------------------- functions-framework

FUNCTIONS_SOURCE = textwrap.dedent(
    """
    import importlib.util
    import json
    import os
    import sys

    import functions_framework


    @functions_framework.http
    def hello(request):
        print("serving", request.path, flush=True)
        return "hello " + os.environ.get("GREETING_NAME", "?")


    @functions_framework.http
    def probe(request):
        names = ("devtools", "tests", "pytest", "shared", "helper", "test_helper")
        found = {n: importlib.util.find_spec(n) is not None for n in names}
        return {"found": found, "path": sys.path, "cwd": os.getcwd()}


    @functions_framework.cloud_event
    def on_message(event):
        print("EVENT " + json.dumps({"source": event["source"], "data": event.data}), flush=True)
    """
)


def demo_folder(tmp_path: Path) -> Path:
    """A function folder of its own: main.py, a sibling module, a test module (shipped or not
    as the archive's skip rule says) and functions-framework as pinned for the real ones."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "main.py").write_text(FUNCTIONS_SOURCE)
    (folder / "helper.py").write_text("VALUE = 1\n")
    (folder / "test_helper.py").write_text("VALUE = 2\n")
    pins = (devstack.REPO_ROOT / "functions" / "b24_token_refresh" / "requirements.txt").read_text()
    (folder / "requirements.txt").write_text(
        "".join(line + "\n" for line in pins.splitlines() if line.startswith("functions-framework"))
    )
    return folder / "main.py"


def test_function_server_http(tmp_path: Path, function_server) -> None:
    source = demo_folder(tmp_path)
    server = function_server("demo", "hello", source=source, env={"GREETING_NAME": "tests"})
    assert devstack.http_get(f"{server.url}/some/path") == (200, "hello tests")
    assert "serving /some/path" in server.log_text()


def test_function_server_sees_only_what_ships(tmp_path: Path, function_server) -> None:
    """Served from its own venv and a staged archive: the repo, the test tree and the
    development venv's packages are out of reach, its siblings and shared/ are not."""
    source = demo_folder(tmp_path)
    server = function_server("demo", "probe", source=source)
    answer = devstack.http_get(f"{server.url}/")
    assert answer is not None and answer[0] == 200, server.log_text()
    probe = json.loads(answer[1])
    # Whether a test module ships is the Terraform module's skip rule's call.
    shipped = "test_helper.py" in shipenv.shipped_files(source.parent)
    assert probe["found"] == {
        "devtools": False,
        "tests": False,
        "pytest": False,
        "shared": True,
        "helper": True,
        "test_helper": shipped,
    }
    root = str(devstack.REPO_ROOT)
    assert root not in probe["path"] and probe["cwd"] != root
    assert not (tmp_path / "demo" / "shared").exists()  # staged elsewhere, not in the folder


def test_function_server_needs_a_requirements_file(tmp_path: Path, function_server) -> None:
    source = tmp_path / "main.py"
    source.write_text(FUNCTIONS_SOURCE)
    with pytest.raises(shipenv.ShipEnvError, match=r"no requirements\.txt"):
        function_server("demo", "hello", source=source)


def test_function_server_gets_pubsub_push_as_cloudevent(
    stack: Stack, tmp_path: Path, function_server
) -> None:
    source = demo_folder(tmp_path)
    server = function_server("demo", "on_message", signature_type="cloudevent", source=source)
    topic = unique("pushed")
    gcp.create_push_subscription(PROJECT, topic, unique("push"), server.url)
    publisher = gcp.publisher()
    try:
        publisher.publish(gcp.topic_path(PROJECT, topic), b"payload", origin="test").result(10)
    finally:
        publisher.transport.close()

    deadline = time.monotonic() + 30
    events: list[dict[str, object]] = []
    while not events and time.monotonic() < deadline:
        events = [
            json.loads(line.removeprefix("EVENT "))
            for line in server.log_text().splitlines()
            if line.startswith("EVENT ")
        ]
        time.sleep(0.1)
    assert len(events) == 1, server.log_text()
    event = events[0]
    assert event["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"
    message = event["data"]["message"]  # type: ignore[index]
    assert base64.b64decode(message["data"]) == b"payload"
    assert message["attributes"] == {"origin": "test"}
