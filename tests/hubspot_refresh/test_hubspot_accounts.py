"""hubspot_accounts: accounts grouped from one listing, and the account-id rule."""

from __future__ import annotations

import hubspot_accounts
import pytest

from shared.secrets import SecretInfo


def test_accounts_are_grouped_from_one_listing() -> None:
    listed = [
        SecretInfo("hubspot-client-id", {"integration": "hubspot"}),
        SecretInfo(
            "hubspot-2-refresh-token",
            {"integration": "hubspot", "hubspot-account": "2", "enabled": "false"},
        ),
        SecretInfo(
            "hubspot-10-refresh-token",
            {"integration": "hubspot", "hubspot-account": "10"},
            {"client-id-secret": "hubspot-app2-client-id", "client-secret-secret": "x"},
        ),
        SecretInfo(
            "hubspot-10-access-token",
            {"integration": "hubspot", "hubspot-account": "10"},
            {"state": "ok"},
        ),
        SecretInfo("misnamed", {"integration": "hubspot", "hubspot-account": "3"}),
    ]
    found = hubspot_accounts.accounts_from(listed)
    assert [a.account_id for a in found] == ["2", "10"]
    two, ten = found
    assert two.enabled is False and two.status_annotations is None
    assert ten.enabled is True and ten.status_annotations == {"state": "ok"}
    assert ten.client_id_secret == "hubspot-app2-client-id"
    with pytest.raises(hubspot_accounts.BadAccountId):
        hubspot_accounts.check_account_id("Portal 1")
