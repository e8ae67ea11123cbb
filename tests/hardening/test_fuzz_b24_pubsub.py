"""A few hundred unusable Pub/Sub messages, delivered as CloudEvents, to b24_token_refresh (the
dedicated command, ``python -m devtools.fuzz --endpoint b24``, sends 10,000): pathological data
(deep nesting, huge integers, lone surrogates, invalid UTF-8, NaN/Infinity, in every JSON
position), attributes Pub/Sub never sends, data that is not base64, a publish time out of
range, messages too old. Each is acknowledged (200, so Pub/Sub does not redeliver it) with a
WARNING naming its message id and never quoting its payload; nothing is refreshed, stored or
locked; and a genuine trigger still refreshes the token."""

from __future__ import annotations

from typing import Any

from devtools import fuzz

SAMPLE = 300
WHERE = ("Pub/Sub data", "attributes", "old message", "publish time", "data field")


def test_b24_token_refresh_acknowledges_every_unusable_message(stack: Any) -> None:
    endpoint = fuzz.make_endpoint("b24")
    try:
        result = fuzz.fuzz(endpoint, SAMPLE)
    finally:
        endpoint.close()
    summary = result.summary()
    assert result.requests == SAMPLE
    sent = summary["pathological_inputs"]
    assert all(sent[p] > 0 for p in fuzz.PATHOLOGIES), sent
    assert all(any(k.startswith(w) for k in result.kinds) for w in WHERE), result.kinds
    assert summary["statuses"] == {"200": SAMPLE}, summary["examples_failed_checks"]
    assert summary["failed_checks"] == 0, summary["examples_failed_checks"]
    assert summary["unhandled_exceptions"] == 0, summary["examples_unhandled"]
    assert summary["stored_without_valid_secret"] == 0, summary["examples_stored"]
    assert summary["provider_calls"] == 0
    assert summary["positive_control"] == "ok"
    assert result.ok
