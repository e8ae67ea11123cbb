"""The HubSpot story of ``make demo``: three accounts behind hubspot-token-refresh-trigger, one
refreshed, one fresh (skipped), one whose refresh token HubSpot revoked (needs-reauth, with the
ERROR line that says what to do); re-authorised with ``python -m cli hubspot add-account``, it
is refreshed by the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from cli import hubspot as hubspot_cli
from devtools import gcp, scheduler
from devtools.demo_kit import Demo, log_lines, say
from devtools.fakes.hubspot import CURRENT_TOKEN_ROUTE, HubSpotFake
from devtools.stack import REPO_ROOT

TITLE = "HubSpot: hubspot_refresh every 15 minutes, three accounts"
SERVICES = ("pubsub", "gcs", "secretmanager")
JOB = "hubspot-token-refresh-job"
FRESH, NEW, REVOKED = "62516", "62515", "62517"
# Terraform's hubspot_refresh_margin_minutes (default 30). HubSpot access tokens live 30
# minutes, so at 30 every run refreshes every account; at 20 a token refreshed minutes ago
# is fresh (skipped), while each 15-minute run still refreshes any token older than 10 minutes.
MARGIN_MINUTES = "20"


def counts(summary: dict[str, Any]) -> str:
    return (
        f"{summary['refreshed']} refreshed, {summary['skipped_fresh']} fresh (skipped), "
        f"{summary['needs_reauth']} needs-reauth"
    )


def show_accounts(demo: Demo, accounts: tuple[str, ...]) -> None:
    for account in accounts:
        info = demo.store.info_optional(f"hubspot-{account}-access-token")
        status = dict(info.annotations) if info else {}
        state = status.get("state", "pending")  # the word of cli hubspot list and cli status
        refreshed, expires = status.get("refreshed-at", "-"), status.get("expires-at", "-")
        say(f"  hubspot: account {account}: {state}, refreshed at {refreshed}, expires {expires}")


def run(demo: Demo) -> None:
    with demo.step("start the HubSpot fake (OAuth token endpoint, 30-minute access tokens)"):
        fake = demo.start_fake(HubSpotFake())
    with demo.step("seed the app's hubspot-client-id and hubspot-client-secret as deploy.sh does"):
        for secret_id, value in (
            ("hubspot-client-id", fake.client_id),
            ("hubspot-client-secret", fake.client_secret),
        ):
            demo.store.create(secret_id, labels={"integration": "hubspot"})
            demo.store.add_version(secret_id, value)
        gcp.create_bucket(demo.state_bucket, project=demo.project)
    server = demo.serve(
        "hubspot_refresh",
        "hubspot_refresh",
        demo.env(
            HUBSPOT_TOKEN_URL=f"{fake.url}{CURRENT_TOKEN_ROUTE}",
            HUBSPOT_REFRESH_MARGIN_MINUTES=MARGIN_MINUTES,
        ),
        trigger=scheduler.JOBS[JOB].topic,
    )

    with demo.step(f"install the app on portal {FRESH}; cli hubspot add-account {FRESH}"):
        hubspot_cli.add_account(demo.store, FRESH, fake.new_refresh_token(int(FRESH)))
    summary = demo.run_job(JOB, server)
    say(f"  hubspot: an earlier run: {counts(summary)}")

    with demo.step(
        f"install the app on portals {NEW} and {REVOKED} (cli hubspot add-account), then "
        f"revoke {REVOKED}'s refresh token at HubSpot (the app was uninstalled there)"
    ):
        hubspot_cli.add_account(demo.store, NEW, fake.new_refresh_token(int(NEW)))
        revoked = fake.new_refresh_token(int(REVOKED))
        hubspot_cli.add_account(demo.store, REVOKED, revoked)
        fake.revoke(revoked)
    summary = demo.run_job(JOB, server)
    say(f"  hubspot: run {summary['result']}: {counts(summary)}")
    show_accounts(demo, (NEW, FRESH, REVOKED))
    with demo.step(f"find the function's ERROR line about account {REVOKED}", server.log_path):
        found = [
            line
            for line in log_lines(server)
            if line.get("event") == "needs_reauth" and line.get("account") == REVOKED
        ]
        if not found or found[-1].get("severity") != "ERROR":
            raise LookupError(f"no needs_reauth ERROR line about account {REVOKED}")
    say(
        textwrap.fill(
            f"hubspot: ERROR {found[-1]['message']}",
            100,
            initial_indent="  ",
            subsequent_indent="    ",
        )
    )

    reauthorise(demo, fake.new_refresh_token(int(REVOKED)))
    summary = demo.run_job(JOB, server)
    say(f"  hubspot: run {summary['result']}: {counts(summary)}")
    show_accounts(demo, (REVOKED,))


def reauthorise(demo: Demo, refresh_token: str) -> None:
    """What the ERROR line asks a person to do, with the real command: the new refresh token
    goes in on stdin, never on the command line."""
    command = [sys.executable, "-m", "cli", "hubspot", "--project", demo.project]
    command += ["add-account", REVOKED]
    with demo.step(
        f"re-authorise portal {REVOKED}: python -m cli hubspot add-account {REVOKED} "
        "< new-refresh-token"
    ):
        done = subprocess.run(
            command,
            input=refresh_token,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, **demo.stack_env},
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"exit status {done.returncode}: {done.stderr.strip()[-500:]}")
    say(f"  hubspot: cli: {done.stdout.strip()}")
