"""cegid_api: how a failed answer is classed, what must be set before any call, and the names
cli/cegid.py reads through this module. No network: responses are built here."""

from __future__ import annotations

import json

import cegid_api
import cegid_plan
import pytest
import requests
from cegid_api import ApiSettings, CegidApi, Credentials, _error

from shared.errors import TerminalError, TransientError
from shared.http import HttpClient


def response(status: int, body: object = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body).encode() if body is not None else b"<html>"
    return answer


def settings(**changes: str) -> ApiSettings:
    values = dict(
        base_url="https://cda.example",
        tenant_id="10000001",
        token_path="/tokenprovider/Token",
        sas_path="/storage/api/V1/storages/GetSASTokenLRD",
        discovery_path="/datasource/api/V2/datasources/tenant/{tenantId}",
        schedulers_path="/query/api/V1/schedulers/tenant/provider/{providerId}",
        scheduler_update_path="/query/api/V1/schedulers",
        provider_id="",
        key_id_secret="cegid-api-key-id",
        key_secret_secret="cegid-api-key-secret",
        subscription_key_secret="cegid-subscription-key",
    )
    values.update(changes)
    return ApiSettings(**values)


# 425 and every 5xx but 501 since the shared rule (shared.http.status_kind); 409 is Cegid's own.
@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 505, 507])
def test_retryable_statuses_are_transient(status: int) -> None:
    error = _error(response(status, {"errorMessage": "busy"}), "Cegid SAS endpoint")
    assert isinstance(error, TransientError)
    assert error.code == f"http_{status}" and error.status == status
    assert str(error) == f"Cegid SAS endpoint: HTTP {status} (busy)"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501, 301])
def test_other_statuses_need_a_person(status: int) -> None:
    error = _error(response(status), "Cegid token provider")
    assert isinstance(error, TerminalError)
    assert str(error) == f"Cegid token provider: HTTP {status}"  # no JSON: no detail


def test_the_detail_is_cut_and_falls_back_to_message() -> None:
    error = _error(response(401, {"message": "x" * 300}), "w")
    assert str(error) == "w: HTTP 401 (" + "x" * 200 + ")"


def test_a_tenant_is_needed_before_any_call_and_a_provider_before_schedulers() -> None:
    credentials = Credentials("id", "secret", "subscription")
    with pytest.raises(TerminalError) as caught:
        CegidApi(settings(tenant_id=""), credentials, HttpClient(timeout=1))
    assert caught.value.code == "missing_tenant"
    api = CegidApi(settings(), credentials, HttpClient(timeout=1))
    with pytest.raises(TerminalError) as caught:
        api.schedulers()
    assert caught.value.code == "missing_provider"


def test_cli_names_are_the_plan_rules() -> None:
    """cli/cegid.py calls cegid_api.force_time and catches cegid_api.BadForceRequest."""
    assert cegid_api.force_time is cegid_plan.force_time
    assert cegid_api.BadForceRequest is cegid_plan.BadForceRequest
    assert callable(cegid_api.force) and callable(cegid_api.read_credentials)
