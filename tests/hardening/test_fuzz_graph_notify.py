"""A few hundred generated requests against graph_webhook_notify (the dedicated command,
``python -m devtools.fuzz --endpoint graph``, sends 10,000): no 5xx, no unhandled exception,
nothing published without the real clientState, and a genuine notification still published.
Then pathological JSON alone (deep nesting, huge integers, lone surrogates, invalid UTF-8,
NaN/Infinity, in every JSON position) in batches that also carry one genuine notification:
every such body is refused whole with a 400, so nothing is published."""

from __future__ import annotations

from typing import Any

import pytest

from devtools import fuzz

SAMPLE = 300
PATHOLOGICAL_SAMPLE = 150


@pytest.mark.skipif(not fuzz.GRAPH_SOURCE.is_file(), reason=f"{fuzz.GRAPH_SOURCE} is missing")
def test_graph_notify_survives_generated_requests(stack: Any) -> None:
    endpoint = fuzz.make_endpoint("graph")
    result = fuzz.fuzz(endpoint, SAMPLE)
    summary = result.summary()
    assert result.requests == SAMPLE
    assert summary["responses_5xx"] == 0, summary["examples_5xx"]
    assert summary["unhandled_exceptions"] == 0, summary["examples_unhandled"]
    assert summary["published_without_valid_secret"] == 0
    assert summary["positive_control"] == "ok"
    assert result.ok


@pytest.mark.skipif(not fuzz.GRAPH_SOURCE.is_file(), reason=f"{fuzz.GRAPH_SOURCE} is missing")
def test_graph_notify_refuses_pathological_json_in_every_position(stack: Any) -> None:
    endpoint = fuzz.make_endpoint("graph")
    result = fuzz.fuzz(endpoint, PATHOLOGICAL_SAMPLE, pathological_only=True)
    summary = result.summary()
    assert result.requests == PATHOLOGICAL_SAMPLE
    sent = summary["pathological_inputs"]
    assert all(sent[p] > 0 for p in fuzz.PATHOLOGIES), sent
    assert summary["responses_5xx"] == 0, summary["examples_5xx"]
    assert summary["unhandled_exceptions"] == 0, summary["examples_unhandled"]
    # 413 only for the few nestings larger than the body limit; never a 202.
    assert set(result.statuses) <= {400, 413}, summary["statuses"]
    assert summary["published_without_valid_secret"] == 0
    assert summary["positive_control"] == "ok"
    assert result.ok
