"""Helpers for the hubspot_refresh tests: a HubSpot set-up per test in its own project on the
Secret Manager stand-in (discovery lists the whole project), a lock bucket on fake-gcs-server,
the HubSpot fake, and ways to run the function in-process.

Named uniquely (not conftest) so test modules can import it without clashing with other
integrations' helpers.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import function_loading
import pytest
from alerting import alerts, feeds
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from devtools.fakes.hubspot import CURRENT_TOKEN_ROUTE, HubSpotFake
from shared import clock
from shared.secrets import SecretStore
from shared.status import CredentialStatus

REPO = Path(__file__).resolve().parents[2]
SOURCE = str(REPO / "functions" / "hubspot_refresh" / "main.py")
FUNCTION_DIR = str(REPO / "functions" / "hubspot_refresh")
if FUNCTION_DIR not in sys.path:
    sys.path.append(FUNCTION_DIR)

from cli import hubspot as hubspot_cli  # noqa: E402 - after the function folder is on sys.path

ENTRY_POINT = "hubspot_refresh"

# What one run_summary line feeds in monitoring (terraform/monitoring.tf), whole: a run counted
# a success, and a run counted a failure. Each feeds the duration and secret-reads
# distributions as well.
# The alert a success feeds (terraform/alerts.tf): "no successful run" for two 15-minute
# intervals, at least an hour. A failure feeds "every run failed".
NO_SUCCESS = 'no_success["60"]'
FAILING = "failing[0]"


@dataclass
class HubSpotSetup:
    fake: HubSpotFake
    store: SecretStore
    project: str
    env: dict[str, str]
    # Kept out of the repr: a failure report prints the fixture, and tokens must not leak.
    refresh_tokens: dict[str, str] = field(default_factory=dict, repr=False)

    # --- accounts -----------------------------------------------------------------------

    def add_account(
        self,
        account: str,
        *,
        client_id: str | None = None,
        client_id_secret: str | None = None,
        client_secret_secret: str | None = None,
        enabled: bool = True,
    ) -> str:
        """Install the app on portal ``account`` at the fake and store it the CLI's way."""
        token = self.fake.new_refresh_token(int(account), client_id)
        hubspot_cli.add_account(
            self.store,
            account,
            token,
            client_id_secret=client_id_secret,
            client_secret_secret=client_secret_secret,
            enabled=enabled,
        )
        self.refresh_tokens[account] = token
        return token

    def set_status(self, account: str, **annotations: str) -> None:
        """Give an account an access token and a status, as an earlier run would have."""
        secret = f"hubspot-{account}-access-token"
        self.store.create(secret, labels={"integration": "hubspot", "hubspot-account": account})
        self.store.add_version(secret, f"old-access-token-{uuid.uuid4().hex}")
        self.store.update_annotations(secret, dict(annotations))

    def annotations(self, account: str) -> dict[str, str]:
        info = self.store.info_optional(f"hubspot-{account}-access-token")
        return dict(info.annotations) if info else {}

    def status(self, account: str) -> CredentialStatus:
        return CredentialStatus.from_annotations(self.annotations(account))

    def access_token(self, account: str) -> str:
        return self.store.read(f"hubspot-{account}-access-token").value

    def refresh_token(self, account: str) -> str:
        return self.store.read(f"hubspot-{account}-refresh-token").value

    def live_versions(self, secret_id: str) -> list[int]:
        from google.cloud import secretmanager

        versions = self.store.client.list_secret_versions(
            request={"parent": self.store.path(secret_id)}
        )
        enabled = secretmanager.SecretVersion.State.ENABLED
        return sorted(int(v.name.rsplit("/", 1)[-1]) for v in versions if v.state == enabled)

    def token_calls(self) -> int:
        return self.fake.count("token")

    def apply_env(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
        for key, value in {**self.env, **extra}.items():
            monkeypatch.setenv(key, value)

    def secret_values(self) -> list[str]:
        """Every credential value a log line must never show."""
        values = [self.fake.client_secret, *self.refresh_tokens.values()]
        values += list(self.fake.access_tokens)
        values += [t for t in self.fake.grants if t not in values]
        values += [secret for _, secret in self.fake.apps.items()]
        return values


class Clock:
    """A controllable clock: tests move it instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def make_setup(stack: Any) -> tuple[HubSpotSetup, HubSpotFake]:
    from devtools import gcp

    suffix = uuid.uuid4().hex[:8]
    project = f"hs-{suffix}"
    bucket = f"hs-state-{suffix}"
    gcp.create_bucket(bucket)
    store = SecretStore(project)
    fake = HubSpotFake()
    fake.start()
    store.create("hubspot-client-id", labels={"integration": "hubspot"})
    store.create("hubspot-client-secret", labels={"integration": "hubspot"})
    store.add_version("hubspot-client-id", fake.client_id)
    store.add_version("hubspot-client-secret", fake.client_secret)
    env = {
        "GOOGLE_CLOUD_PROJECT": project,
        "STATE_BUCKET": bucket,
        "HUBSPOT_TOKEN_URL": f"{fake.url}{CURRENT_TOKEN_ROUTE}",
        # Tests refresh inside a 20-minute margin, so a just-refreshed account (30 minutes)
        # counts as fresh; the default (30) refreshes at every 15-minute run.
        "HUBSPOT_REFRESH_MARGIN_MINUTES": "20",
        "HUBSPOT_HTTP_ATTEMPTS": "1",
        "LOCK_WAIT_SECONDS": "30",
    }
    return HubSpotSetup(fake, store, project, env), fake


def boot() -> ModuleType:
    """main.py executed afresh under functions_framework (see tests/function_loading.py)."""
    module: ModuleType = function_loading.boot(SOURCE, "hubspot_refresh")
    return module


def load_main(setup: HubSpotSetup, monkeypatch: pytest.MonkeyPatch, **extra: str) -> ModuleType:
    """Execute main.py afresh with the set-up's environment (see boot)."""
    setup.apply_env(monkeypatch, **extra)
    return boot()


def run_once(module: ModuleType, *, requested_at: datetime | None = None, **request: Any) -> Any:
    """One run as the scheduled trigger (or a forced one) would make it."""
    return module.run(
        module.SETTINGS,
        module.clients(),
        module.RunRequest(**request),
        requested_at=requested_at or clock.now(),
        deadline=time.monotonic() + 120,
    )


def bare_import(module: str, *, absent: tuple[str, ...] = ()) -> str:
    """See tests/bare_import.py: ``module`` of this function folder, imported bare."""
    problems: str = function_loading.bare_import(FUNCTION_DIR, module, absent=absent)
    return problems


def pubsub_cloud_event(
    data: dict[str, Any] | str | None, *, at: datetime | None = None
) -> CloudEvent:
    raw = data if isinstance(data, str) else json.dumps(data) if data is not None else ""
    published = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    message_id = uuid.uuid4().hex
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/hubspot-token-refresh-trigger",
            "id": message_id,
            "time": published,
        },
        {
            "message": {
                "data": base64.b64encode(raw.encode()).decode(),
                "messageId": message_id,
                "publishTime": published,
            }
        },
    )


def deliver(module: ModuleType, event: CloudEvent) -> int:
    headers, body = to_structured(event)
    response = module.app.test_client().post("/", headers=headers, data=body)
    return int(response.status_code)


def summaries(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"run_summary"' in line:
            found.append(json.loads(line))
    return found


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


def monitored(out: str) -> tuple[dict[str, int], set[str]]:
    """What the lines in ``out`` do to monitoring, as terraform/ defines it (tests/alerting.py):
    how many times each log-based metric is incremented, and the alert policies fed."""
    return feeds(out, entry_point=ENTRY_POINT), alerts(out, entry_point=ENTRY_POINT)


def secret_reads(out: str) -> list[tuple[int, float]]:
    """(secret_reads, secret_reads_per_account) of each run_summary line in ``out``."""
    return [(s["secret_reads"], s["secret_reads_per_account"]) for s in summaries(out)]
