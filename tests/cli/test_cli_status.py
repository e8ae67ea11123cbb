"""``python -m cli status`` against the local stack: Secret Manager stand-in, fake-gcs-server and
the Graph fake. Each test uses its own project id, so nothing another test stored shows up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google_fake import GoogleApisFake

from cli.__main__ import main
from devtools import gcp
from devtools.fakes.graph import GraphFake
from shared import clock
from shared.secrets import SecretStore
from shared.status import CredentialStatus

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(stack: Any) -> str:
    return f"status-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(project: str) -> SecretStore:
    return SecretStore(project)


def status(capsys: Any, project: str, *args: str) -> tuple[int, str]:
    code = main(["status", "--project", project, *args])
    return code, capsys.readouterr().out


def status_json(capsys: Any, project: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = status(capsys, project, "--json", *args)
    return code, json.loads(out)


def rows_of(report: dict[str, Any], integration: str) -> list[dict[str, Any]]:
    return [r for r in report["items"] if r["integration"] == integration]


def annotate(store: SecretStore, secret: str, status: CredentialStatus) -> None:
    store.create(secret)
    store.update_annotations(secret, status.to_annotations())


def test_nothing_deployed_shows_not_configured_and_exits_zero(capsys, project) -> None:
    code, report = status_json(capsys, project)
    assert code == 0
    assert report["attention"] == 0
    by_integration = {r["integration"]: r["state"] for r in report["items"]}
    assert by_integration == {
        "bitrix24": "not configured",
        "hubspot": "not configured",
        "graph": "not configured",
        "cegid": "not configured",
        "universign": "not configured",
    }


def test_healthy_bitrix24_and_hubspot_tokens(capsys, project, store) -> None:
    now = clock.now()
    ok = CredentialStatus(state="ok", expires_at=now + timedelta(minutes=50), refreshed_at=now)
    annotate(store, "b24-access-token", ok)
    labels = {"integration": "hubspot", "hubspot-account": "62515"}
    store.create("hubspot-62515-refresh-token", labels=labels)
    store.create("hubspot-62515-access-token", labels=labels)
    store.update_annotations("hubspot-62515-access-token", ok.to_annotations())

    code, out = status(capsys, project)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == [
        "INTEGRATION",
        "ITEM",
        "STATE",
        "EXPIRES",
        "IN",
        "LAST",
        "SUCCESS",
        "LAST",
        "ERROR",
    ]
    b24 = next(line for line in lines if line.startswith("bitrix24"))
    assert "b24-access-token" in b24 and " ok " in b24 and ("49m" in b24 or "50m" in b24)
    assert "0m ago" in b24
    assert any(
        line.startswith("hubspot") and "account 62515" in line and " ok " in line for line in lines
    )
    assert lines[-1] == "nothing needs attention"


@pytest.mark.parametrize(
    ("status_value", "expected"),
    [
        (CredentialStatus(state="needs-reauth", last_error="invalid_grant"), "needs-reauth"),
        (CredentialStatus(state="ok", expires_at=clock.now() - timedelta(minutes=1)), "expired"),
        (CredentialStatus(state="backoff", last_error="HTTP 503"), "backoff"),
        (
            CredentialStatus(
                state="ok",
                expires_at=clock.now() + timedelta(minutes=20),
                refreshed_at=clock.now() - timedelta(hours=1),
                last_error="timed out",
                last_error_at=clock.now() - timedelta(minutes=5),
            ),
            "failing",
        ),
    ],
)
def test_a_credential_needing_attention_fails_the_command(
    capsys, project, store, status_value, expected
) -> None:
    annotate(store, "b24-access-token", status_value)
    code, report = status_json(capsys, project)
    assert code == 1
    (row,) = rows_of(report, "bitrix24")
    assert row["state"] == expected and row["attention"] is True
    assert report["attention"] == 1
    if status_value.last_error:
        assert status_value.last_error in row["last_error"]


def test_a_deployed_but_unseeded_bitrix24_is_not_configured(capsys, project, store) -> None:
    store.create("b24-access-token")
    store.create("b24-refresh-token")
    code, report = status_json(capsys, project)
    assert code == 0
    (row,) = rows_of(report, "bitrix24")
    assert row["state"] == "not configured" and "b24-refresh-token" in row["detail"]


def test_a_disabled_hubspot_account_needs_no_attention(capsys, project, store) -> None:
    labels = {"integration": "hubspot", "hubspot-account": "7", "enabled": "false"}
    store.create("hubspot-7-refresh-token", labels=labels)
    code, report = status_json(capsys, project)
    assert code == 0
    (row,) = rows_of(report, "hubspot")
    assert row["item"] == "account 7" and row["state"] == "disabled"


def test_graph_subscriptions_are_listed_from_graph(capsys, project, store, monkeypatch) -> None:
    with GraphFake() as fake:
        assert isinstance(fake, GraphFake)
        for secret, value in (
            ("graph-tenant-id", fake.tenant_id),
            ("graph-client-id", fake.client_id),
            ("graph-client-secret", fake.client_secret),
        ):
            store.create(secret)
            store.add_version(secret, value)
        monkeypatch.setenv("GRAPH_LOGIN_URL", fake.login_url)
        monkeypatch.setenv("GRAPH_API_URL", fake.url)
        fake.add(
            resource="users/a/messages",
            notification_url="https://example.org/n",
            expires_in=timedelta(hours=48),
        )
        code, report = status_json(capsys, project)
        assert code == 0, report
        (row,) = rows_of(report, "graph")
        assert row["state"] == "ok" and row["item"] == "users/a/messages (created)"
        assert 47 * 3600 < row["expires_in_seconds"] <= 48 * 3600

        fake.add(
            resource="users/b/events",
            change_type="updated",
            notification_url="https://example.org/n",
            expires_in=timedelta(hours=6),
        )
        code, out = status(capsys, project)
        assert code == 1
        expiring = next(line for line in out.splitlines() if "users/b/events" in line)
        assert "expiring" in expiring and ("5h" in expiring or "6h" in expiring)
        assert fake.client_secret not in out


def test_graph_refusing_the_credentials_is_needs_reauth(
    capsys, project, store, monkeypatch
) -> None:
    with GraphFake() as fake:
        assert isinstance(fake, GraphFake)
        for secret, value in (
            ("graph-tenant-id", fake.tenant_id),
            ("graph-client-id", fake.client_id),
            ("graph-client-secret", "a-wrong-client-secret-value"),
        ):
            store.create(secret)
            store.add_version(secret, value)
        monkeypatch.setenv("GRAPH_LOGIN_URL", fake.login_url)
        monkeypatch.setenv("GRAPH_API_URL", fake.url)
        code, out = status(capsys, project)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("graph"))
    assert "needs-reauth" in line and "invalid_client" in line
    assert "a-wrong-client-secret-value" not in out


def test_graph_with_no_subscription_is_missing(capsys, project, store, monkeypatch) -> None:
    with GraphFake() as fake:
        assert isinstance(fake, GraphFake)
        for secret, value in (
            ("graph-tenant-id", fake.tenant_id),
            ("graph-client-id", fake.client_id),
            ("graph-client-secret", fake.client_secret),
        ):
            store.create(secret)
            store.add_version(secret, value)
        monkeypatch.setenv("GRAPH_LOGIN_URL", fake.login_url)
        monkeypatch.setenv("GRAPH_API_URL", fake.url)
        code, report = status_json(capsys, project)
    assert code == 1
    (row,) = rows_of(report, "graph")
    assert row["state"] == "missing"


def sas_url(
    expires_in: timedelta, signature: str = "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw"
) -> str:
    expiry = clock.format_time(clock.now() + expires_in)
    return f"https://acct.blob.core.windows.net/exports?sp=rld&se={expiry}&sig={signature}"


def cegid_row(capsys: Any, project: str, *args: str) -> tuple[int, dict[str, Any]]:
    code, report = status_json(capsys, project, *args)
    (row,) = rows_of(report, "cegid")
    return code, row


def test_cegid_sas_expiry_is_read_from_the_url_and_never_shown(
    capsys, project, store, monkeypatch
) -> None:
    monkeypatch.setenv("CEGID_MODE", "sas_url")
    signature = "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw"
    store.create("cegid-sas-url")
    store.add_version("cegid-sas-url", sas_url(timedelta(days=3), signature))
    code, out = status(capsys, project, "--cegid-warn-days", "7")
    assert code == 1  # expires within the 7-day warning asked for
    line = next(line for line in out.splitlines() if line.startswith("cegid"))
    assert "expiring" in line and ("2d" in line or "3d" in line) and "mode sas_url" in line
    assert signature not in out and "blob.core" not in out
    code, _ = status(capsys, project)
    assert code == 0


@pytest.mark.parametrize(
    ("expires_in", "state", "code"),
    [
        (timedelta(hours=24), "ok", 0),  # a fresh SAS from the portal: nothing to do yet
        (timedelta(hours=2), "expiring", 1),
        (timedelta(minutes=-5), "expired", 1),
    ],
)
def test_a_24_hour_sas_in_sas_url_mode_needs_attention_only_near_its_end(
    capsys, project, store, monkeypatch, expires_in, state, code
) -> None:
    monkeypatch.setenv("CEGID_MODE", "sas_url")
    store.create("cegid-sas-url")
    store.add_version("cegid-sas-url", sas_url(expires_in))
    got, row = cegid_row(capsys, project)
    assert (row["item"], row["state"], got) == ("sas url", state, code)


def test_api_mode_does_not_report_an_old_sas_url(capsys, project, store, monkeypatch) -> None:
    monkeypatch.setenv("CEGID_MODE", "api")
    store.create("cegid-sas-url")
    store.add_version("cegid-sas-url", sas_url(timedelta(days=-30)))  # long expired, unused
    store.create("cegid-api-key-secret")
    store.add_version("cegid-api-key-secret", "the-api-key-secret-value")
    code, row = cegid_row(capsys, project)
    assert code == 0
    assert (row["item"], row["state"], row["expires_at"]) == ("api key", "ok", None)
    assert row["detail"].startswith("mode api,")


def test_the_mode_is_the_deployed_function_s(capsys, project, store, monkeypatch) -> None:
    monkeypatch.delenv("CEGID_MODE", raising=False)
    store.create("cegid-api-key-secret")
    store.add_version("cegid-api-key-secret", "the-api-key-secret-value")
    store.create("cegid-sas-url")
    store.add_version("cegid-sas-url", sas_url(timedelta(hours=20)))
    with GoogleApisFake() as google:
        monkeypatch.setenv("CLOUD_FUNCTIONS_API_URL", google.url)
        google.add_function(project, "europe-west1", "cegid-transfer", {"CEGID_MODE": "sas_url"})
        code, row = cegid_row(capsys, project)
    assert code == 0
    assert (row["item"], row["state"]) == ("sas url", "ok")
    assert row["detail"].startswith("mode sas_url, secret 1")


def test_the_last_successful_transfer_is_read_from_the_state_bucket(
    capsys, project, store, monkeypatch
) -> None:
    monkeypatch.setenv("CEGID_MODE", "api")
    store.create("cegid-api-key-secret")
    store.add_version("cegid-api-key-secret", "the-api-key-secret-value")
    state = gcp.create_bucket(f"{project}-keepalive-state", project=project)
    code, row = cegid_row(capsys, project)
    assert code == 0 and row["last_success"] is None  # no transfer yet
    finished = clock.now() - timedelta(minutes=20)
    document = {"last_success_at": clock.format_time(finished), "files": 3, "bytes": 1200}
    state.blob("status/cegid-transfer.json").upload_from_string(json.dumps(document))
    code, row = cegid_row(capsys, project)
    assert code == 0
    assert row["last_success"] == clock.format_time(finished)
    assert "last transfer moved 3 files (1200 bytes)" in row["detail"]


def test_universign_documents_are_summarised_from_the_bucket(capsys, project) -> None:
    bucket_name = f"state-{uuid.uuid4().hex[:10]}"
    bucket = gcp.create_bucket(bucket_name, project=project)
    now = clock.format_time(clock.now())
    docs: list[dict[str, Any]] = [
        {"transaction_id": "tx1", "status": "SIGNE", "last_sync_at": now, "last_error": None},
        {"transaction_id": "tx2", "status": "EN_COURS", "last_sync_at": now, "last_error": None},
        {
            "transaction_id": "tx3",
            "status": "EN_COURS",
            "last_sync_at": now,
            "last_error": "HTTP 503 from Universign",
            "sync_attempts": 4,
        },
    ]
    for doc in docs:
        bucket.blob(f"universign/transactions/{doc['transaction_id']}.json").upload_from_string(
            json.dumps(doc)
        )
    code, report = status_json(capsys, project, "--universign-bucket", bucket_name)
    assert code == 1
    rows = rows_of(report, "universign")
    assert rows[0]["item"] == "transactions" and rows[0]["state"] == "ok"
    assert rows[0]["detail"] == "2 EN_COURS, 1 SIGNE"
    assert rows[1]["item"] == "transaction tx3" and rows[1]["state"] == "failing"
    assert "HTTP 503" in rows[1]["last_error"]


def test_runs_as_a_module_from_the_repository_root(project) -> None:
    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": project}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["attention"] == 0


def test_without_a_project_it_says_so(capsys, monkeypatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert main(["status"]) == 2
    assert "--project" in capsys.readouterr().err
