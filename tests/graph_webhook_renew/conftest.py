"""Shared by the Graph tests: the function folder on sys.path, so its sibling modules import
by bare name as main.py imports them; one loader for main.py itself; the Graph fake.

Pure modules (graph_plan, graph_notify, graph_reconcile, graph_api) are imported directly and
need no environment. main.py reads its settings when it is executed, so a test that needs the
whole function gets a freshly executed module from ``load_main`` (tests/function_loading.py
``boot``), never one left in ``sys.modules`` by functions-framework or an earlier test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import function_loading
import pytest

from cli._functions import FUNCTIONS, use_function_folder
from devtools.fakes.graph import GraphFake
from shared.http import HttpClient, RetryPolicy

use_function_folder("graph_webhook_renew")

from graph_api import AppCredentials, AppToken, GraphClient  # noqa: E402

MAIN = FUNCTIONS / "graph_webhook_renew" / "main.py"
# main.py's two entry points, each with the signature type it is deployed with.
RENEW, NOTIFY = "graph_webhook_renew", "graph_webhook_notify"
SIGNATURE_TYPES = {RENEW: "cloudevent", NOTIFY: "http"}

LoadMain = Callable[..., ModuleType]
Logged = Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def load_main(monkeypatch: pytest.MonkeyPatch) -> LoadMain:
    """``load_main(entry_point=RENEW, **env)``: main.py executed afresh under
    functions-framework serving ``entry_point``, with ``env`` set (GOOGLE_CLOUD_PROJECT
    defaults to ``p``), returned as a module (see tests/function_loading.py ``boot``)."""

    def load(*, entry_point: str = RENEW, **env: str) -> ModuleType:
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        module: ModuleType = function_loading.boot(MAIN, entry_point, SIGNATURE_TYPES[entry_point])
        return module

    return load


@pytest.fixture
def fake() -> Iterator[GraphFake]:
    server = GraphFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


MakeGraph = Callable[..., GraphClient]


@pytest.fixture
def make_graph(fake: GraphFake) -> MakeGraph:
    """``make_graph(secret=None)``: a GraphClient on the fake (``secret`` replaces the right
    client secret); its ``credential_reads`` counts the credential look-ups."""

    def make(*, secret: str | None = None) -> GraphClient:
        reads: list[int] = []

        def credentials() -> AppCredentials:
            reads.append(1)
            return AppCredentials(fake.tenant_id, fake.client_id, secret or fake.client_secret)

        http = HttpClient(timeout=5, retry=RetryPolicy(attempts=2, base_delay=0.01))
        graph = GraphClient(http, fake.url, AppToken(http, fake.url, credentials))
        graph.credential_reads = reads
        return graph

    return make


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Logged:
    """``logged(event)``: the structured fields (``logs.fields``) of each record captured with
    that ``event``, in order."""

    def find(event: str) -> list[dict[str, Any]]:
        found = []
        for record in caplog.records:
            fields = getattr(record, "json_fields", None)
            if isinstance(fields, dict) and fields.get("event") == event:
                found.append(fields)
        return found

    return find
