"""The main job, locally: ``make demo`` (or ``.venv/bin/python -m devtools.demo``).

Starts the emulators and the Bitrix24 fake, seeds the secrets an operator would add, serves
b24_token_refresh under functions-framework behind a Pub/Sub push subscription, triggers
``b24-token-refresh-job`` as ``gcloud scheduler jobs run`` would, and prints what changed in
Secret Manager. Everything runs on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# gRPC prints connection notices at shutdown that say nothing about the demo; it reads this
# when first imported, so it is set before anything imports it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import requests

from devtools import gcp, scheduler
from devtools.fakes.bitrix24 import Bitrix24Fake, seed_secrets
from devtools.stack import FunctionServer, Stack, start_function

PROJECT = "local-project"
SECRETS = {
    "client_id": "b24-client-id",
    "client_secret": "b24-client-secret",
    "refresh_token": "b24-refresh-token",
    "access_token": "b24-access-token",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def summaries(server: FunctionServer) -> list[dict[str, Any]]:
    lines = server.log_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and '"run_summary"' in line]


def wait_for_run(server: FunctionServer, seen: int, timeout: float = 60) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        found = summaries(server)
        if len(found) > seen:
            return found[-1]
        time.sleep(0.1)
    raise SystemExit(f"no run finished within {timeout}s; function log:\n{server.log_text()}")


def describe(store: Any, secret_id: str) -> str:
    from google.cloud import secretmanager

    versions = store.client.list_secret_versions(request={"parent": store.path(secret_id)})
    states = {
        int(v.name.rsplit("/", 1)[-1]): secretmanager.SecretVersion.State(v.state).name.lower()
        for v in versions
    }
    shown = ", ".join(f"v{n} {states[n]}" for n in sorted(states))
    return f"{secret_id:20} {shown or 'no versions'}"


def show_state(store: Any) -> None:
    for secret_id in ("b24-refresh-token", "b24-access-token"):
        say(f"    {describe(store, secret_id)}")
    annotations = store.info("b24-access-token").annotations
    keys = ("state", "expires-at", "refreshed-at", "refresh-token-version")
    say("    b24-access-token annotations: " + ", ".join(f"{k}={annotations.get(k)}" for k in keys))


def trigger(server: FunctionServer, job: str, seen: int) -> dict[str, Any]:
    say(f"\n$ gcloud scheduler jobs run {job}   # locally: publish the job's body to its topic")
    scheduler.run(job, project=PROJECT)
    summary = wait_for_run(server, seen)
    say(f"  -> {summary['result']} ({summary['reason']}), expires at {summary.get('expires_at')}")
    return summary


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="keepalive-demo-"))
    say("== Local stack: Pub/Sub emulator, fake-gcs-server, Secret Manager stand-in ==")
    with Stack(log_dir, project=PROJECT) as stack, Bitrix24Fake() as fake:
        assert isinstance(fake, Bitrix24Fake)
        stack.start(["pubsub", "gcs", "secretmanager"])
        env = stack.env()
        for key in (
            "PUBSUB_EMULATOR_HOST",
            "STORAGE_EMULATOR_HOST",
            "SECRET_MANAGER_EMULATOR_HOST",
        ):
            say(f"  {key}={env[key]}")
        say(f"  Bitrix24 fake: {fake.url}")
        os.environ.update(env)
        from shared.secrets import SecretStore

        store = SecretStore(PROJECT)
        say("\n== Secrets, as deploy.sh would add them (values are never printed) ==")
        seed_secrets(fake, store, SECRETS)
        show_state(store)

        gcp.create_bucket("local-keepalive-state", project=PROJECT)
        job = scheduler.JOBS["b24-token-refresh-job"]
        server = start_function(
            "b24_token_refresh",
            "b24_token_refresh",
            signature_type="cloudevent",
            env={
                **env,
                "STATE_BUCKET": "local-keepalive-state",
                "B24_OAUTH_URL": f"{fake.url}/oauth/token/",
            },
            log_dir=log_dir,
        )
        try:
            gcp.create_push_subscription(PROJECT, job.topic, "b24-token-refresh", server.url)
            say(f"\n== b24_token_refresh served on {server.url}, pushed from {job.topic} ==")

            trigger(server, job.name, 0)
            show_state(store)
            token = store.read("b24-access-token").value
            check = requests.get(
                f"{fake.url}/rest/user.current.json", params={"auth": token}, timeout=5
            )
            say(f"  Bitrix24 REST call with the stored access token: HTTP {check.status_code}")

            say("\n== The next scheduled run: the token outlives the 35-minute margin ==")
            trigger(server, job.name, 1)
            say(f"  Bitrix24 token endpoint calls so far: {fake.refreshes}")

            say('\n== A forced refresh: a message {"force": true} on the trigger topic ==')
            client = gcp.publisher()
            client.publish(gcp.topic_path(PROJECT, job.topic), b'{"force": true}').result(30)
            client.transport.close()
            summary = wait_for_run(server, 2)
            say(f"  -> {summary['result']} ({summary['reason']})")
            show_state(store)
            say(f"  Bitrix24 token endpoint calls: {fake.refreshes}; tokens reused: {fake.reused}")
            say("\n$ python -m cli status --project local-project   # what an operator sees")
            from cli.__main__ import main as cli_main

            code = cli_main(["status", "--project", PROJECT])
            say(f"  (exit status {code}: non-zero when something needs attention)")
            say(f"\nLogs of this run: {log_dir}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
