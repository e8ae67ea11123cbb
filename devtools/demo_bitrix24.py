"""The Bitrix24 story of ``make demo``: b24_token_refresh behind b24-token-refresh-trigger
refreshes the single-use token pair, skips while the token is fresh, and refreshes on
``{"force": true}``; every change is a Secret Manager version plus status annotations."""

from __future__ import annotations

from typing import Any

import requests

from devtools import gcp, scheduler
from devtools.demo_kit import Demo, say
from devtools.fakes.bitrix24 import Bitrix24Fake, function_env, seed_secrets

TITLE = "Bitrix24: b24_token_refresh every 30 minutes"
SERVICES = ("pubsub", "gcs", "secretmanager")
JOB = "b24-token-refresh-job"
SECRETS = {
    "client_id": "b24-client-id",
    "client_secret": "b24-client-secret",
    "refresh_token": "b24-refresh-token",
    "access_token": "b24-access-token",
}


def versions(demo: Demo, secret_id: str) -> str:
    from google.cloud import secretmanager

    listed = demo.store.client.list_secret_versions(request={"parent": demo.store.path(secret_id)})
    states = {
        int(v.name.rsplit("/", 1)[-1]): secretmanager.SecretVersion.State(v.state).name.lower()
        for v in listed
    }
    return ", ".join(f"v{n} {states[n]}" for n in sorted(states)) or "no versions"


def show_state(demo: Demo) -> None:
    for secret_id in ("b24-refresh-token", "b24-access-token"):
        say(f"    {secret_id:18} {versions(demo, secret_id)}")
    annotations = demo.store.info("b24-access-token").annotations
    keys = ("state", "expires-at", "refresh-token-version")
    say("    b24-access-token status: " + ", ".join(f"{k}={annotations.get(k)}" for k in keys))


def outcome(summary: dict[str, Any]) -> str:
    return f"bitrix24: run {summary['result']} ({summary['reason']})"


def run(demo: Demo) -> None:
    with demo.step("start the Bitrix24 fake (OAuth server, single-use refresh tokens)"):
        fake = demo.start_fake(Bitrix24Fake())
    with demo.step("seed the four b24-* secrets as deploy.sh does (values never printed)"):
        seed_secrets(fake, demo.store, SECRETS)
        gcp.create_bucket(demo.state_bucket, project=demo.project)
    server = demo.serve(
        "b24_token_refresh",
        "b24_token_refresh",
        demo.env(**function_env(fake, SECRETS, demo.state_bucket)),
        trigger=scheduler.JOBS[JOB].topic,
    )

    summary = demo.run_job(JOB, server)
    say(f"  {outcome(summary)}, expires at {summary.get('expires_at')}")
    show_state(demo)
    with demo.step("call Bitrix24's REST API with the stored access token"):
        token = demo.store.read("b24-access-token").value
        check = requests.get(
            f"{fake.url}/rest/user.current.json", params={"auth": token}, timeout=5
        )
    say(f"  bitrix24: REST call with the stored access token: HTTP {check.status_code}")

    say("  The next scheduled run: the token outlives the 35-minute margin.")
    summary = demo.run_job(JOB, server)
    say(f"  {outcome(summary)}; token endpoint calls so far: {fake.refreshes}")

    say('  A forced refresh: {"force": true} on the trigger topic.')
    summary = demo.publish_run(server, scheduler.JOBS[JOB].topic, {"force": True})
    say(f"  {outcome(summary)}")
    show_state(demo)
    say(f"  bitrix24: token endpoint calls: {fake.refreshes}; refresh tokens reused: {fake.reused}")
