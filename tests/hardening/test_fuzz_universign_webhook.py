"""A few hundred generated requests against universign_webhook (the dedicated command,
``python -m devtools.fuzz --endpoint universign``, sends 10,000): no 5xx, no unhandled
exception, nothing published, stored or fetched from Universign without a valid signature,
and a genuinely signed event still processed. Then pathological JSON alone (deep nesting, huge
integers, lone surrogates, invalid UTF-8, NaN/Infinity, in every JSON position) in bodies and
in the signature's protected header: refused with a 4xx, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from devtools import fuzz

SAMPLE = 300
PATHOLOGICAL_SAMPLE = 150


@pytest.mark.skipif(
    not fuzz.UNIVERSIGN_SOURCE.is_file(),
    reason="functions/universign_webhook/main.py is missing (entry point universign_webhook)",
)
def test_universign_webhook_survives_generated_requests(stack: Any) -> None:
    endpoint = fuzz.make_endpoint("universign")
    assert isinstance(endpoint, fuzz.UniversignEndpoint)
    try:
        result = fuzz.fuzz(endpoint, SAMPLE)
    finally:
        endpoint.close()
    summary = result.summary()
    assert result.requests == SAMPLE
    assert summary["responses_5xx"] == 0, summary["examples_5xx"]
    assert summary["unhandled_exceptions"] == 0, summary["examples_unhandled"]
    assert summary["published_without_valid_secret"] == 0
    assert summary["stored_without_valid_secret"] == 0, summary["examples_stored"]
    assert summary["provider_calls"] == 0
    assert summary["positive_control"] == "ok"
    assert result.ok


@pytest.mark.skipif(
    not fuzz.UNIVERSIGN_SOURCE.is_file(),
    reason="functions/universign_webhook/main.py is missing (entry point universign_webhook)",
)
def test_universign_webhook_refuses_pathological_json_in_body_and_signature(stack: Any) -> None:
    endpoint = fuzz.make_endpoint("universign")
    try:
        result = fuzz.fuzz(endpoint, PATHOLOGICAL_SAMPLE, pathological_only=True)
    finally:
        endpoint.close()
    summary = result.summary()
    assert result.requests == PATHOLOGICAL_SAMPLE
    sent = summary["pathological_inputs"]
    assert all(sent[p] > 0 for p in fuzz.PATHOLOGIES), sent
    assert any(k.startswith("signature header: ") for k in result.kinds), result.kinds
    assert any(k.startswith("body: ") for k in result.kinds), result.kinds
    assert summary["responses_5xx"] == 0, summary["examples_5xx"]
    assert summary["unhandled_exceptions"] == 0, summary["examples_unhandled"]
    assert all(400 <= status < 500 for status in result.statuses), summary["statuses"]
    assert summary["published_without_valid_secret"] == 0
    assert summary["stored_without_valid_secret"] == 0, summary["examples_stored"]
    assert summary["provider_calls"] == 0
    assert summary["positive_control"] == "ok"
    assert result.ok
