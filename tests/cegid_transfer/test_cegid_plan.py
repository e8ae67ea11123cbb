"""cegid_plan: the rules of a run, imported bare (no environment, no framework, no services)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cegid_plan import (
    MIB,
    SOURCE_ETAG_KEY,
    BadForceRequest,
    Digest,
    SasError,
    SourceBlob,
    Summary,
    alternate_name,
    check_sas,
    final_name,
    fits_in_run,
    force_request,
    force_time,
    forced,
    is_copy_of,
    is_folder_marker,
    matching,
    mismatches,
    parse_force,
    parse_hhmm,
    parse_trigger,
    run_id,
    sas_advice,
    scheduler_name,
    staging_name,
)

from shared import events

NOW = datetime(2026, 3, 10, 13, 0, 30, tzinfo=UTC)
DATA = b"compte;montant\n411000;12.50\n"
MD5 = hashlib.md5(DATA, usedforsecurity=False).digest()
DIGEST = Digest(len(DATA), MD5, b"\x01\x02\x03\x04")


@dataclass
class Stored:
    """A Cloud Storage object as the rules see it (cegid_plan.StoredObject)."""

    size: int | None
    md5_hash: str | None = None
    crc32c: str | None = None
    metadata: dict[str, Any] | None = None


def sas(**query: str) -> str:
    return "https://acct.blob.core.windows.net/export?" + "&".join(
        f"{k}={v}" for k, v in query.items()
    )


# -- messages --------------------------------------------------------------------------------


def test_the_trigger_is_an_empty_object() -> None:
    assert parse_trigger({}) == {}
    with pytest.raises(events.BadMessage, match=r"takes \{\} \(force requests go to cegid-q"):
        parse_trigger({"action": "force"})


def test_a_force_message_names_action_and_optionally_name_and_time() -> None:
    assert parse_force({"action": "force"}) == (None, None)
    assert parse_force({"action": "force", "name": "ECR", "time": "14:30"}) == ("ECR", "14:30")
    assert parse_force({"action": "force", "name": "", "time": ""}) == (None, None)
    for bad, why in [
        ({"action": "force", "x": 1}, "unknown fields"),
        ({"action": "delete"}, "action must be"),
        ({}, "action must be"),
        ({"action": "force", "name": 3}, "name must be a string"),
        ({"action": "force", "time": 1430}, "time must be HH:MM"),
    ]:
        with pytest.raises(events.BadMessage, match=why):
            parse_force(bad)


def test_force_request_is_name_and_when(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import clock

    monkeypatch.setattr(clock, "now", lambda: NOW)
    assert force_request({"action": "force", "name": "T", "time": "14:30"}, None) == (
        "T",
        datetime(2026, 3, 10, 14, 30, tzinfo=UTC),
    )
    assert force_request({"action": "force"}, "06:00")[1] == datetime(2026, 3, 11, 6, 0, tzinfo=UTC)
    with pytest.raises(BadForceRequest, match="HH:MM"):
        force_request({"action": "force", "time": "noon"}, None)


def test_times_are_hh_mm_utc_and_always_in_the_future() -> None:
    assert parse_hhmm(" 06:05 ").hour == 6
    for bad in ("1430", "25:00", "ab:cd", ""):
        with pytest.raises(BadForceRequest):
            parse_hhmm(bad)
    assert force_time("13:00", None, NOW) == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    assert force_time("13:01", "09:00", NOW) == datetime(2026, 3, 10, 13, 1, tzinfo=UTC)


# -- scheduled queries ---------------------------------------------------------------------


def test_scheduler_names_and_matching() -> None:
    schedulers: list[dict[str, Any]] = [
        {"id": "1", "query": {"name": "ECRITURES"}},
        {"id": "2", "name": "Tiers"},
        {"id": "3"},
    ]
    assert [scheduler_name(s) for s in schedulers] == ["ECRITURES", "Tiers", "3"]
    assert matching(schedulers, None) == schedulers
    assert matching(schedulers, "tIeR") == [schedulers[1]]
    assert matching(schedulers, "nothing") == []


def test_forced_changes_only_next_execution_on_a_copy() -> None:
    scheduler = {"cron": "0 6 * * *", "query": {"name": "X"}, "nextExecution": "old"}
    updated = forced(scheduler, datetime(2026, 3, 10, 14, 30, tzinfo=UTC))
    assert updated == {**scheduler, "nextExecution": "2026-03-10T14:30:00.000Z"}
    assert scheduler["nextExecution"] == "old"
    assert updated["query"] is not scheduler["query"]


# -- the SAS ---------------------------------------------------------------------------------


def test_a_sas_must_be_signed_unexpired_and_read_list_delete() -> None:
    future = "2026-03-11T00:00:00Z"
    check_sas(sas(sp="rld", se=future, sig="x"), NOW)
    check_sas(sas(sp="racwdl", sig="x"), NOW)  # no expiry given
    check_sas(sas(si="policy", sig="x"), NOW)  # permissions in a stored access policy
    cases = [
        (sas(sp="rld", se=future), "sas_malformed", "no signature"),
        (sas(sp="rld", se="2026-03-10T12:00:00Z", sig="x"), "sas_expired", "expired at"),
        (sas(sp="rl", sig="x"), "sas_missing_permission", "lacks delete permission"),
        (sas(sp="d", sig="x"), "sas_missing_permission", "lacks read and list permission"),
    ]
    for url, code, text in cases:
        with pytest.raises(SasError, match=text) as caught:
            check_sas(url, NOW)
        assert caught.value.code == code and caught.value.terminal


def test_sas_advice_says_where_the_sas_came_from() -> None:
    assert "new version of secret cegid-sas-url" in sas_advice("sas_url", "cegid-sas-url", "/p")
    advice = sas_advice("api", "cegid-sas-url", "/storage/x")
    assert "/storage/x" in advice and "CEGID_SAS_PATH" in advice


# -- which files -----------------------------------------------------------------------------


def test_folder_markers_are_not_files() -> None:
    assert is_folder_marker("dir/", 0) and is_folder_marker("dir/", None)
    assert not is_folder_marker("dir/", 3) and not is_folder_marker("dir/file", 0)


def test_a_file_fits_when_five_seconds_plus_its_size_at_the_planned_rate_remain() -> None:
    assert fits_in_run(0, 20, now=100.0, deadline=105.0)
    assert not fits_in_run(0, 20, now=100.0, deadline=104.9)
    # 3 MiB at 1 MiB/s: 8 s.
    assert fits_in_run(3 * MIB, 1, now=0.0, deadline=8.0)
    assert not fits_in_run(3 * MIB, 1, now=0.0, deadline=7.9)


def test_an_existing_object_is_a_copy_by_source_etag_only() -> None:
    blob = SourceBlob("a.csv", len(DATA), '"etag-1"', MD5, None)
    md5_b64 = base64.b64encode(MD5).decode()
    assert is_copy_of(Stored(len(DATA), metadata={SOURCE_ETAG_KEY: '"etag-1"'}), blob)
    assert not is_copy_of(Stored(len(DATA) + 1, metadata={SOURCE_ETAG_KEY: '"etag-1"'}), blob)
    assert not is_copy_of(Stored(len(DATA), metadata={SOURCE_ETAG_KEY: '"etag-2"'}), blob)
    # Azure's Content-MD5 is the uploader's claim (not validated for blobs put in blocks,
    # settable on any blob): the same MD5 in the bucket is no reason to skip reading the bytes.
    assert not is_copy_of(Stored(len(DATA), md5_hash=md5_b64), blob)


def test_mismatches_name_each_difference() -> None:
    same = Stored(DIGEST.size, DIGEST.md5_b64, DIGEST.crc32c_b64)
    assert mismatches(same, DIGEST) == []
    assert mismatches(Stored(DIGEST.size, None, DIGEST.crc32c_b64), DIGEST) == []
    assert mismatches(Stored(1, None, None), DIGEST) == [
        f"size 1 != {DIGEST.size} bytes read",
        "Cloud Storage reported no checksum",
    ]
    assert mismatches(Stored(DIGEST.size, "x", "y"), DIGEST) == [
        "MD5 differs from the bytes read",
        "CRC32C differs from the bytes read",
    ]


# -- names -----------------------------------------------------------------------------------


def test_names_of_landed_staging_and_alternate_objects() -> None:
    assert run_id(NOW, "0123456789abcdef") == "20260310T130030-01234567"
    assert final_name("cegid/", "DB/x y.csv") == "cegid/DB/x y.csv"
    key = hashlib.sha256(b"DB/x.csv").hexdigest()[:32]
    assert staging_name("_cegid-staging/", "run", "DB/x.csv") == f"_cegid-staging/run/{key}"
    tag = MD5.hex()[:12]
    assert alternate_name("dir/file.csv", DIGEST) == f"dir/file.{tag}.csv"
    assert alternate_name("a/b/archive.tar.gz", DIGEST) == f"a/b/archive.tar.{tag}.gz"
    assert alternate_name("README", DIGEST) == f"README.{tag}"
    assert alternate_name("dir/.env", DIGEST) == f"dir/.env.{tag}"


def test_a_summary_starts_done_and_empty() -> None:
    summary = Summary()
    assert (summary.result, summary.listed, summary.files, summary.failed_names) == (
        "done",
        0,
        0,
        [],
    )
    assert (summary.bytes, summary.already_present, summary.failed, summary.deferred) == (
        0,
        0,
        0,
        0,
    )
