"""HubSpot accounts as Secret Manager sees them: names, labels, annotations, discovery.

An account is the secret ``hubspot-<account>-refresh-token`` labelled ``integration=hubspot``
and ``hubspot-account=<account>``; ``enabled=false`` switches it off. Its access token lives in
``hubspot-<account>-access-token`` (created by the first refresh, with the same two labels),
whose annotations hold the account's status. An account installed through another HubSpot app
names that app's credentials in two annotations on its refresh-token secret:
``client-id-secret`` and ``client-secret-secret`` (secret ids, never values).

Both the refresh function and the ``hubspot`` CLI command import this module, so the naming
rules live in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.secrets import SecretInfo, SecretStore

log = logging.getLogger(__name__)

INTEGRATION_LABEL = "integration"
INTEGRATION = "hubspot"
ACCOUNT_LABEL = "hubspot-account"
ENABLED_LABEL = "enabled"
CLIENT_ID_ANNOTATION = "client-id-secret"
CLIENT_SECRET_ANNOTATION = "client-secret-secret"  # noqa: S105 - an annotation key

# One List call returns every account and every status: refresh-token and access-token
# secrets carry the same labels, and their ids tell them apart.
DISCOVERY_FILTER = f"labels.{INTEGRATION_LABEL}={INTEGRATION}"

# Label values allow lowercase letters, digits, "_" and "-" up to 63 characters; a HubSpot
# account (hub/portal id) is a number, so it always fits.
ACCOUNT_ID = re.compile(r"[a-z0-9_-]{1,63}")


class BadAccountId(ValueError):
    """The account id cannot be used in a secret id and a label value."""


def check_account_id(account: str) -> str:
    if not ACCOUNT_ID.fullmatch(account):
        raise BadAccountId(
            f"account id {account!r} must be 1-63 lowercase letters, digits, '_' or '-' "
            "(a HubSpot hub id such as 62515)"
        )
    return account


def refresh_token_secret(account: str) -> str:
    return f"hubspot-{account}-refresh-token"


def access_token_secret(account: str) -> str:
    return f"hubspot-{account}-access-token"


def account_labels(account: str) -> dict[str, str]:
    return {INTEGRATION_LABEL: INTEGRATION, ACCOUNT_LABEL: account}


@dataclass(frozen=True)
class Account:
    account_id: str
    enabled: bool = True
    # Secret ids of another app's credentials; None means the default app's pair.
    client_id_secret: str | None = None
    client_secret_secret: str | None = None
    # Annotations of the access-token secret as listed; None when it does not exist yet.
    status_annotations: dict[str, str] | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def refresh_token_secret(self) -> str:
        return refresh_token_secret(self.account_id)

    @property
    def access_token_secret(self) -> str:
        return access_token_secret(self.account_id)


def is_enabled(labels: dict[str, str]) -> bool:
    """Anything but an explicit ``enabled=false`` counts as enabled (the label is optional)."""
    return labels.get(ENABLED_LABEL, "true").strip().lower() != "false"


def accounts_from(secrets: Iterable[SecretInfo]) -> list[Account]:
    """Group listed secrets into accounts, sorted by id; stray secrets are skipped with a
    warning (a wrong label must not stop the other accounts)."""
    refresh: dict[str, SecretInfo] = {}
    access: dict[str, SecretInfo] = {}
    for secret in secrets:
        account = secret.labels.get(ACCOUNT_LABEL)
        if account is None:
            continue  # e.g. hubspot-client-id labelled integration=hubspot: not an account
        if secret.secret_id == refresh_token_secret(account):
            refresh[account] = secret
        elif secret.secret_id == access_token_secret(account):
            access[account] = secret
        else:
            log.warning(
                "secret %s is labelled %s=%s but is not named %s; ignoring it",
                secret.secret_id,
                ACCOUNT_LABEL,
                account,
                refresh_token_secret(account),
            )
    found = []
    for account_id in sorted(refresh, key=lambda a: (len(a), a)):
        info = refresh[account_id]
        status = access.get(account_id)
        found.append(
            Account(
                account_id=account_id,
                enabled=is_enabled(info.labels),
                client_id_secret=info.annotations.get(CLIENT_ID_ANNOTATION) or None,
                client_secret_secret=info.annotations.get(CLIENT_SECRET_ANNOTATION) or None,
                status_annotations=dict(status.annotations) if status is not None else None,
                labels=dict(info.labels),
            )
        )
    return found


def discover(store: SecretStore) -> list[Account]:
    """Every HubSpot account in the project, enabled or not, with its listed status."""
    return accounts_from(store.list_secrets(filter=DISCOVERY_FILTER))


def app_of(account: Account) -> dict[str, str]:
    """The annotations naming the account's other app, as a work message carries them (empty
    for an account of the default app)."""
    app = {
        CLIENT_ID_ANNOTATION: account.client_id_secret,
        CLIENT_SECRET_ANNOTATION: account.client_secret_secret,
    }
    return {key: value for key, value in app.items() if value}


def planned(account_ids: Iterable[str], apps: dict[str, dict[str, str]]) -> list[Account]:
    """The accounts of a work message, as the fan-out's listing saw them: their status is
    re-read under each account's lock, so only the app they use has to come along."""
    found = []
    for account_id in account_ids:
        if not ACCOUNT_ID.fullmatch(account_id):
            log.warning("work message names account %r, not an account id; skipped", account_id)
            continue
        app = apps.get(account_id, {})
        found.append(
            Account(
                account_id=account_id,
                client_id_secret=app.get(CLIENT_ID_ANNOTATION) or None,
                client_secret_secret=app.get(CLIENT_SECRET_ANNOTATION) or None,
            )
        )
    return found
