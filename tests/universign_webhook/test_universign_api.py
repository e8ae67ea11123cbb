"""universign_api against the Universign fake over real HTTP (no emulators): what each answer
means, the API key re-read once on a 401, and the two download endpoints."""

from __future__ import annotations

import pytest
from universign_api import NotFound, UniversignApi, raise_for_status

from devtools.fakes.universign import DOWNLOAD_ROUTE, TRANSACTION_ROUTE, UniversignFake
from shared.errors import TerminalError, TransientError
from shared.http import HttpClient, RetryPolicy


class Keys:
    """The API key as the secret holds it, counting the re-reads a 401 asks for."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.refreshes = 0

    def __call__(self, refresh: bool) -> str:
        if refresh and len(self.values) > 1:
            self.values.pop(0)
        self.refreshes += refresh
        return self.values[0]


def api(fake: UniversignFake, keys: Keys | None = None) -> UniversignApi:
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01))
    return UniversignApi(fake.url, http, keys or Keys(fake.api_key))


# --- what each answer means ----------------------------------------------------------------------


def test_200_is_fine() -> None:
    raise_for_status(200, "/v1/transactions/tx_1")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_terminal(status: int) -> None:
    with pytest.raises(TerminalError, match="refused the API key") as caught:
        raise_for_status(status, "/v1/transactions/tx_1")
    assert (caught.value.code, caught.value.status) == (f"http_{status}", status)


def test_404_is_not_found() -> None:
    with pytest.raises(NotFound):
        raise_for_status(404, "/v1/transactions/tx_1")


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502, 503, 504])
def test_waiting_may_cure_these(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        raise_for_status(status, "/v1/transactions/tx_1")
    assert (caught.value.code, caught.value.status) == (f"http_{status}", status)


@pytest.mark.parametrize("status", [201, 204, 301, 400, 410, 422])
def test_anything_else_needs_a_person(status: int) -> None:
    with pytest.raises(TerminalError, match=f"HTTP {status}") as caught:
        raise_for_status(status, "/v1/transactions/tx_1")
    assert caught.value.status == status


# --- the calls -----------------------------------------------------------------------------------


def test_get_transaction(fake: UniversignFake) -> None:
    tx = fake.create_transaction(state="started").id
    body = api(fake).get_transaction(tx)
    assert body["id"] == tx and body["state"] == "started"


def test_unknown_transaction_is_not_found(fake: UniversignFake) -> None:
    with pytest.raises(NotFound):
        api(fake).get_transaction("tx_unknown")


def test_a_rotated_key_is_re_read_once(fake: UniversignFake) -> None:
    tx = fake.create_transaction(state="started").id
    keys = Keys("apikey_rotated_away", fake.api_key)
    assert api(fake, keys).get_transaction(tx)["id"] == tx
    assert keys.refreshes == 1 and fake.unauthorized == 1


def test_a_revoked_key_is_terminal_after_one_re_read(fake: UniversignFake) -> None:
    tx = fake.create_transaction(state="started").id
    keys = Keys("apikey_revoked")
    with pytest.raises(TerminalError) as caught:
        api(fake, keys).get_transaction(tx)
    assert caught.value.code == "http_401"
    assert keys.refreshes == 1 and fake.unauthorized == 2


def test_persistent_5xx_is_transient(fake: UniversignFake) -> None:
    tx = fake.create_transaction(state="started").id
    fake.inject(TRANSACTION_ROUTE, 502, count=2)
    with pytest.raises(TransientError):
        api(fake).get_transaction(tx)


def test_a_transaction_no_json_parser_takes_is_transient(fake: UniversignFake) -> None:
    from devtools.fakes.base import Response

    nested = b"[" * 100_000 + b"]" * 100_000
    fake.route("GET", "/nested/v1/transactions/{tx}", lambda _r: Response(raw=nested))
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=1))
    with pytest.raises(TransientError) as caught:
        UniversignApi(f"{fake.url}/nested", http, Keys(fake.api_key)).get_transaction("tx_1")
    assert caught.value.code == "malformed_response"


def test_download_from_the_transaction_endpoint(fake: UniversignFake) -> None:
    created = fake.create_transaction(state="completed", documents={"c.pdf": b"%PDF c"})
    download = api(fake).download_document(created.id, created.documents[0].id)
    assert (download.content, download.content_type) == (b"%PDF c", "application/pdf")
    assert fake.count(DOWNLOAD_ROUTE) == 1


def test_download_falls_back_to_the_archive_endpoint(fake: UniversignFake) -> None:
    created = fake.create_transaction(state="archived", documents={"c.pdf": b"%PDF c"})
    fake.inject(DOWNLOAD_ROUTE, 404, count=1)  # past the 60 days the transaction keeps them
    download = api(fake).download_document(created.id, created.documents[0].id)
    assert download.content == b"%PDF c"


def test_a_document_nobody_serves_is_not_found(fake: UniversignFake) -> None:
    created = fake.create_transaction(state="started")
    with pytest.raises(NotFound):
        api(fake).download_document(created.id, created.documents[0].id)
