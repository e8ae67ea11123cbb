"""``python -m cli hubspot``: accounts are added, enabled, disabled and listed with the labels
and annotations the function reads, and a refresh token never appears on the command line or
in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hubspot_refresh.hubspot_testkit import REPO, HubSpotSetup, load_main, run_once


def cli(hs: HubSpotSetup, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": hs.project, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli", "hubspot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


def test_add_account_from_stdin_sets_labels_and_never_echoes(hs: HubSpotSetup) -> None:
    token = hs.fake.new_refresh_token(62515)
    done = cli(hs, "add-account", "62515", stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert "version 1" in done.stdout
    info = hs.store.info("hubspot-62515-refresh-token")
    assert info.labels == {"integration": "hubspot", "hubspot-account": "62515", "enabled": "true"}
    assert info.annotations == {}
    assert hs.store.read("hubspot-62515-refresh-token").value == token


def test_add_account_from_file_with_another_apps_secrets(hs: HubSpotSetup, tmp_path: Path) -> None:
    token = hs.fake.new_refresh_token(62516)
    path = tmp_path / "token.txt"
    path.write_text(token)
    done = cli(
        hs,
        "add-account",
        "62516",
        "--token-file",
        str(path),
        "--client-id-secret",
        "hubspot-app2-client-id",
        "--client-secret-secret",
        "hubspot-app2-client-secret",
    )
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    info = hs.store.info("hubspot-62516-refresh-token")
    assert info.annotations == {
        "client-id-secret": "hubspot-app2-client-id",
        "client-secret-secret": "hubspot-app2-client-secret",
    }


def test_add_account_has_no_token_argument_and_rejects_bad_input(hs: HubSpotSetup) -> None:
    assert cli(hs, "add-account", "62517", "--token", "x").returncode == 2
    assert cli(hs, "add-account", "Not An Id", stdin="abc").returncode == 2
    assert cli(hs, "add-account", "62517", stdin="   \n").returncode == 2
    only_one = cli(hs, "add-account", "62517", "--client-id-secret", "a", stdin="tok")
    assert only_one.returncode == 2
    assert hs.store.info_optional("hubspot-62517-refresh-token") is None


def test_enable_disable_and_list(hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    token = hs.add_account("62518")
    hs.add_account("62519")
    main = load_main(hs, monkeypatch)
    run_once(main)

    assert cli(hs, "disable", "62518").returncode == 0
    assert hs.store.info("hubspot-62518-refresh-token").labels["enabled"] == "false"
    assert cli(hs, "disable", "99999").returncode == 2

    listing = cli(hs, "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["account", "enabled", "state"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["62518"][1:3] == ["no", "ok"]
    assert rows["62519"][1:3] == ["yes", "ok"]
    assert token not in listing.stdout
    assert hs.access_token("62518") not in listing.stdout

    assert cli(hs, "enable", "62518").returncode == 0
    assert hs.store.info("hubspot-62518-refresh-token").labels["enabled"] == "true"


def test_adding_a_token_to_an_existing_account_is_a_new_version(hs: HubSpotSetup) -> None:
    hs.add_account("62520")
    second = hs.fake.new_refresh_token(62520)
    done = cli(hs, "add-account", "62520", stdin=second)
    assert done.returncode == 0, done.stderr
    assert "version 2" in done.stdout
    assert hs.store.read("hubspot-62520-refresh-token").value == second


def test_add_account_disabled_says_it_stays_disabled(hs: HubSpotSetup) -> None:
    token = hs.fake.new_refresh_token(62521)
    done = cli(hs, "add-account", "62521", "--disabled", stdin=token)
    assert done.returncode == 0, done.stderr
    assert "stays disabled" in done.stdout
    assert "python -m cli hubspot enable 62521" in done.stdout
    assert "next run refreshes" not in done.stdout
    assert hs.store.info("hubspot-62521-refresh-token").labels["enabled"] == "false"

    enabled = cli(hs, "add-account", "62522", stdin=hs.fake.new_refresh_token(62522))
    assert "(enabled); the next run refreshes it" in enabled.stdout


def status_json(hs: HubSpotSetup) -> dict[str, Any]:
    env = {**os.environ, "GOOGLE_CLOUD_PROJECT": hs.project, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_never_refreshed_account_has_one_word_in_list_and_status(hs: HubSpotSetup) -> None:
    hs.add_account("62523")
    listing = cli(hs, "list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
    word = rows["62523"][2]
    (row,) = [r for r in status_json(hs)["items"] if r["item"] == "account 62523"]
    assert word == row["state"] == "pending"
    assert row["attention"] is False
