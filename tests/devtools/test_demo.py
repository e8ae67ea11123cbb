"""``make demo``, whole: the command the Makefile runs (minus the installs) as a subprocess, on
its own emulators, fakes and function servers; what each integration's story printed and the
final ``python -m cli status`` rows. Then ``--integration``, and a failing step."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devtools import demo as demo_module
from devtools import stack as devstack
from devtools.demo_kit import Demo

REPO_ROOT = Path(__file__).resolve().parents[2]
# The budget for the whole demo on this machine is 120 s; a loaded machine gets more.
TIMEOUT = 240

pytestmark = pytest.mark.e2e


def require_emulators(*services: str) -> None:
    """Outside CI a missing emulator skips (the reason says what to install), as conftest does."""
    specs = {
        "pubsub": lambda: devstack.pubsub_spec(devstack.DEFAULT_PROJECT),
        "gcs": lambda: devstack.gcs_spec(devstack.DEFAULT_PROJECT),
        "azurite": devstack.azurite_spec,
    }
    try:
        for service in services:
            specs[service]()
    except devstack.MissingDependencyError as error:
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            raise
        pytest.skip(f"local stack unavailable: {error}")


def run_demo(*args: str) -> str:
    """``python -m devtools.demo ARGS``; its output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", "devtools.demo", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    return done.stdout


def status_rows(out: str) -> list[tuple[str, str, str, str]]:
    """(integration, item, state, last column) of each row of the ``cli status`` table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("INTEGRATION  ITEM"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows.append((cells[0], cells[1], cells[2], cells[-1]))
    return rows


def in_order(out: str, *expected: str) -> None:
    """Each of ``expected`` appears in ``out``, after the one before it."""
    at = 0
    for text in expected:
        found = out.find(text, at)
        assert found >= 0, f"{text!r} not found after position {at} in:\n{out}"
        at = found + len(text)


def test_make_demo_keeps_all_five_integrations_alive() -> None:
    require_emulators("pubsub", "gcs", "azurite")

    out = run_demo()

    in_order(
        out,
        "== Bitrix24",
        "bitrix24: run refreshed (expiry unknown)",
        "bitrix24: REST call with the stored access token: HTTP 200",
        "bitrix24: run skipped (fresh)",
        "bitrix24: run refreshed (forced)",
        "== HubSpot",
        "hubspot: run completed: 1 refreshed, 1 fresh (skipped), 1 needs-reauth",
        "hubspot: account 62517: needs-reauth",
        "hubspot: ERROR HubSpot refused the refresh of account 62517",
        "> re-authorise portal 62517: python -m cli hubspot add-account 62517",
        "hubspot: cli: stored the refresh token of account 62517 as version 2",
        "hubspot: run completed: 1 refreshed, 2 fresh (skipped), 0 needs-reauth",
        "hubspot: account 62517: ok",
        "== Microsoft Graph",
        "graph: run ok: 1 created, after Graph's validation handshake (2 of 2 echoed",
        "graph: HTTP 202; published to graph-notifications: created users/",
        "clientState stripped",
        "graph: forged notification refused: HTTP 202",
        "nothing published",
        "== Cegid",
        "cegid: run done: 3 files",
        "ECRITURES_2026-01-01.csv: 47 bytes, MD5 and CRC32C match",
        "TIERS_2026-01-01.csv: 24 bytes, MD5 and CRC32C match",
        "BALANCE_ANALYTIQUE_2026-W01.csv: 1500000 bytes, MD5 and CRC32C match",
        "cegid: the Azure container is empty",
        "cegid: force done: scheduled query TIERS runs next at",
        "== Universign",
        "universign: webhook HTTP 202 (queued)",
        "universign: universign_sync: synced",
        "universign: published to universign-status-changes: transaction tx_",
        "(new) -> SIGNE",
        "universign: the retry: HTTP 202 (queued); universign_sync: duplicate",
        "universign: poll run ok",
        "universign: signed document archived once",
        "universign: forged webhook refused: HTTP 401",
        "python -m cli status --project local-project",
    )
    # Every step is announced before it runs: each Scheduler job run is a step line.
    for job in ("b24-token-refresh-job", "hubspot-token-refresh-job", "graph-webhook-renew-job"):
        assert f"  > gcloud scheduler jobs run {job}" in out
    for job in ("cegid-transfer-job", "universign-poll-job"):
        assert f"  > gcloud scheduler jobs run {job}" in out

    rows = status_rows(out)
    states = {(integration, item): state for integration, item, state, _ in rows}
    graph_items = [item for integration, item, _, _ in rows if integration == "graph"]
    assert len(graph_items) == 1 and graph_items[0].endswith(
        "mailFolders('Inbox')/messages (created)"
    )
    assert states == {
        ("bitrix24", "b24-access-token"): "ok",
        ("hubspot", "account 62515"): "ok",
        ("hubspot", "account 62516"): "ok",
        ("hubspot", "account 62517"): "ok",  # the re-authorised account, back to ok
        ("graph", graph_items[0]): "ok",
        ("cegid", "api key"): "ok",
        ("universign", "transactions"): "ok",
    }
    universign = next(row for row in rows if row[0] == "universign")
    assert universign[3] == "1 SIGNE"
    assert "nothing needs attention" in out

    logs = re.search(r"^Logs of this run: (\S+)$", out, re.M)
    assert logs is not None and Path(logs[1]).is_dir()
    served = sorted(p.name.split("-")[2] for p in Path(logs[1]).glob("function-*.log"))
    shutil.rmtree(logs[1])
    assert served == sorted(
        [
            *("b24_token_refresh", "hubspot_refresh", "graph_webhook_notify"),
            *("graph_webhook_renew", "cegid_transfer", "cegid_queries"),
            *("universign_webhook", "universign_sync", "universign_poll"),
        ]
    )


def test_one_integration_only() -> None:
    require_emulators("pubsub", "gcs")

    out = run_demo("--integration", "hubspot")

    assert "== HubSpot" in out and "hubspot: account 62517: ok" in out
    for other in ("== Bitrix24", "== Microsoft Graph", "== Cegid", "== Universign"):
        assert other not in out
    assert "azurite" not in out  # only the emulators the story needs are started
    states = {(integration, item): state for integration, item, state, _ in status_rows(out)}
    assert states[("hubspot", "account 62517")] == "ok"
    assert states[("bitrix24", "b24-access-token")] == "not configured"
    logs = re.search(r"^Logs of this run: (\S+)$", out, re.M)
    assert logs is not None
    shutil.rmtree(logs[1])


def test_a_failing_step_stops_the_demo_naming_the_step_and_its_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    function_log = tmp_path / "function-x.log"
    ran_after: list[str] = []

    def breaks(demo: Demo) -> None:
        with demo.step("a step that breaks", function_log):
            raise RuntimeError("the provider said no")
        ran_after.append("next step")

    story = SimpleNamespace(TITLE="A story", SERVICES=("secretmanager",), run=breaks)
    monkeypatch.setattr(demo_module, "STORIES", {"hubspot": story})
    shown: list[Any] = []
    monkeypatch.setattr(demo_module, "show_status", shown.append)

    code = demo_module.main(["--integration", "hubspot"])

    out, err = capsys.readouterr()
    assert code == 1
    assert "  > a step that breaks" in out
    assert "DEMO FAILED at step: a step that breaks" in err
    assert "RuntimeError: the provider said no" in err
    assert f"logs: {function_log}" in err
    logs = re.search(r"all logs of this run: (\S+)", err)
    assert logs is not None and Path(logs[1]).is_dir()
    shutil.rmtree(logs[1])
    assert ran_after == [] and shown == []
