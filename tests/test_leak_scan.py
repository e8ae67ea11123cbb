"""The leak scan itself must catch a leak, wherever in the captured output it sits."""

from __future__ import annotations

import leak_scan
import pytest


def test_finds_a_leaked_value_and_ignores_short_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # The value is assembled at run time so this file's source never holds it verbatim.
    secret = "leak-" + "probe-" + "7f3a9c"
    monkeypatch.setattr(leak_scan, "captured", [("somewhere", f"prefix {secret} suffix")])
    monkeypatch.setattr(leak_scan, "ISSUED_SECRETS", {secret, "short"})
    monkeypatch.setattr(leak_scan, "stored_secrets", set())
    leaks = leak_scan.find_leaks()
    assert leaks == ["somewhere: contains a provider fake issued (17 characters)"]

    monkeypatch.setattr(leak_scan, "captured", [("log", "nothing here, short")])
    assert leak_scan.find_leaks() == []


def test_stored_secrets_count_but_identifiers_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leak_scan, "ISSUED_SECRETS", set())
    monkeypatch.setattr(leak_scan, "stored_secrets", {"stored-" + "value-1234"})
    monkeypatch.setattr(leak_scan, "captured", [("out", "x stored-value-1234 y")])
    assert len(leak_scan.find_leaks()) == 1
