"""cegid_run: the transfer against Azurite (behind the Cegid fake) and fake-gcs-server, both modes."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import cegid_copy
import cegid_run
import pytest
from alerting import alerts, feeds
from cegid_testlib import World, load_function, md5_b64, run_once

from shared.lock import LeaseLost

ENTRY = "cegid_transfer"
# What every failed transfer run feeds: the run counters, and the failure metric of its own.
FAILED_RUN = {
    "keepalive_cegid_transfer_bytes": 1,
    "keepalive_cegid_transfer_failures": 1,
    "keepalive_needs_reauth": 1,
    "keepalive_run_duration_seconds": 1,
    "keepalive_run_failed": 1,
    "keepalive_runs": 1,
    "keepalive_secret_reads": 1,
}

FILES = {
    "DB508603/DB508603-cpa-analytiq-20210830094213.csv": b"compte;montant\n411000;12.50\n" * 50,
    "DB508603/sub/deeper/ecritures 2026-01.csv": os.urandom(300_000),
    "racine.txt": b"top level file",
    "dossier \u00e9t\u00e9/fichier (1).csv": "\u00e9l\u00e8ve;caf\u00e9\n".encode() * 10,
    "empty/zero-bytes.csv": b"",
    "a/b/c/d/e/f.bin": os.urandom(2_500_000),  # several 1 MiB chunks and upload PUTs
}


def summaries(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "run_summary"]


def test_api_mode_moves_every_nested_file_exactly_once(world: World, monkeypatch, capsys) -> None:
    for name, data in FILES.items():
        world.put(name, data, content_md5=name.endswith(".txt"))
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    assert world.landed() == {f"cegid/{name}": data for name, data in FILES.items()}
    assert world.source_names() == []
    assert world.all_objects() == sorted(f"cegid/{n}" for n in FILES)  # no staging left
    assert (summary.files, summary.already_present, summary.failed) == (len(FILES), 0, 0)
    assert summary.bytes == sum(len(d) for d in FILES.values())
    obj = world.bucket.get_blob("cegid/racine.txt")
    assert obj is not None and obj.md5_hash == md5_b64(FILES["racine.txt"])
    out = capsys.readouterr().out
    [line] = summaries(out)
    assert line["provider"] == "cegid" and line["files"] == len(FILES)
    assert {"bytes", "duration_seconds", "already_present", "failed"} <= set(line)
    assert line["entry_point"] == ENTRY
    assert "sig=" not in out.replace("sig=[REDACTED]", "")

    # A second run finds nothing to do and changes nothing.
    again = run_once(module)
    assert (again.listed, again.files, again.failed) == (0, 0, 0)
    assert world.landed() == {f"cegid/{name}": data for name, data in FILES.items()}
    out += capsys.readouterr().out
    # Key id, key secret and subscription key, read by every run (api mode).
    assert [s["secret_reads"] for s in summaries(out)] == [3, 3]
    # Both runs succeeded, the one that moved nothing included.
    assert feeds(out, entry_point=ENTRY) == {
        "keepalive_cegid_transfer_bytes": 2,
        "keepalive_run_duration_seconds": 2,
        "keepalive_run_ok": 2,
        "keepalive_runs": 2,
        "keepalive_secret_reads": 2,
    }
    assert alerts(out, entry_point=ENTRY) == {'no_success["120"]'}


def test_sas_url_mode_reads_the_url_from_its_secret(world: World, monkeypatch, capsys) -> None:
    world.put("export/one.csv", b"1;2;3\n")
    sas_url = world.fake.container_sas_url("rdl")
    secret = world.env["CEGID_SAS_URL_SECRET"]
    world.store.create(secret)
    world.store.add_version(secret, sas_url)
    module = load_function(monkeypatch, {**world.env, "CEGID_MODE": "sas_url"})

    summary = run_once(module)

    assert summary.files == 1 and world.source_names() == []
    assert world.landed() == {"cegid/export/one.csv": b"1;2;3\n"}
    assert world.fake.count("/tokenprovider/Token") == 0  # no API call in this mode
    out = capsys.readouterr().out
    signature = sas_url.split("sig=")[1].split("&")[0]
    assert signature not in out and sas_url not in out


def test_same_content_already_in_bucket_deletes_source_only(world: World, monkeypatch) -> None:
    data = b"already there\n" * 100
    world.bucket.blob("cegid/dup/file.csv").upload_from_string(data)
    world.put("dup/file.csv", data)
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    assert (summary.files, summary.already_present) == (0, 1)
    assert world.source_names() == []
    assert world.landed() == {"cegid/dup/file.csv": data}


def test_same_name_other_content_keeps_both(world: World, monkeypatch) -> None:
    old, new = b"old export\n", b"new export, different\n"
    world.bucket.blob("cegid/ECR/ecritures.csv").upload_from_string(old)
    world.put("ECR/ecritures.csv", new)
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    tag = hashlib.md5(new, usedforsecurity=False).hexdigest()[:12]
    assert summary.files == 1
    assert world.landed() == {
        "cegid/ECR/ecritures.csv": old,
        f"cegid/ECR/ecritures.{tag}.csv": new,
    }
    assert world.source_names() == []

    # The same name and content dropped again: recognised, not a third copy.
    world.put("ECR/ecritures.csv", new)
    again = run_once(module)
    assert (again.files, again.already_present) == (0, 1)
    assert len(world.landed()) == 2 and world.source_names() == []


@pytest.mark.parametrize("mode", ["api", "sas_url"])
def test_expired_sas_is_named_and_nothing_moves(world: World, monkeypatch, capsys, mode) -> None:
    world.put("keep/me.csv", b"x")
    if mode == "api":
        world.fake.mode = "expired_sas"
    else:
        secret = world.env["CEGID_SAS_URL_SECRET"]
        world.store.create(secret)
        expired = datetime.now(UTC) - timedelta(hours=1)
        world.store.add_version(secret, world.fake.container_sas_url("rdl", expired))
    module = load_function(monkeypatch, {**world.env, "CEGID_MODE": mode})

    summary = run_once(module)

    assert summary.result == "sas_invalid"
    assert world.source_names() == ["keep/me.csv"] and world.landed() == {}
    out = capsys.readouterr().out
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    [error] = [x for x in lines if x.get("event") == "needs_reauth"]
    assert error["severity"] == "ERROR" and "expired" in error["message"]
    assert error["error_code"] == "sas_expired"
    # api mode reads its three API credentials, sas_url mode the SAS URL alone.
    assert [s["secret_reads"] for s in summaries(out)] == [3 if mode == "api" else 1]
    assert feeds(out, entry_point=ENTRY) == FAILED_RUN
    assert alerts(out, entry_point=ENTRY) == {"failing[0]", "needs_reauth[0]"}


def test_read_only_sas_names_delete_and_nothing_moves(world: World, monkeypatch, capsys) -> None:
    world.put("keep/me.csv", b"x")
    world.fake.mode = "read_only_sas"
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    assert summary.result == "sas_invalid"
    assert world.source_names() == ["keep/me.csv"] and world.landed() == {}
    out = capsys.readouterr().out
    [error] = [json.loads(x) for x in out.splitlines() if '"needs_reauth"' in x]
    assert "delete permission" in error["message"] and error["error_code"] == (
        "sas_missing_permission"
    )


def test_wrong_api_key_needs_a_person(world: World, monkeypatch, capsys) -> None:
    world.put("keep/me.csv", b"x")
    world.fake.mode = "invalid_key"
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    assert summary.result == "needs_reauth"
    assert world.source_names() == ["keep/me.csv"]
    out = capsys.readouterr().out
    assert '"event": "needs_reauth"' in out
    assert world.fake.api_key_secret not in out and world.fake.subscription_key not in out
    # A refused key is a person's job, not a transfer failure: no cegid_failures increment.
    expected = {k: n for k, n in FAILED_RUN.items() if k != "keepalive_cegid_transfer_failures"}
    assert feeds(out, entry_point=ENTRY) == expected
    assert alerts(out, entry_point=ENTRY) == {"failing[0]", "needs_reauth[0]"}


def test_missing_sas_url_secret_needs_a_person(world: World, monkeypatch, capsys) -> None:
    world.put("keep/me.csv", b"x")
    module = load_function(monkeypatch, {**world.env, "CEGID_MODE": "sas_url"})

    summary = run_once(module)

    assert summary.result == "needs_reauth"
    assert world.source_names() == ["keep/me.csv"] and world.landed() == {}
    assert '"error_code": "secret_missing"' in capsys.readouterr().out


def test_blob_replaced_after_listing_is_not_mixed_or_deleted(world: World, monkeypatch) -> None:
    world.put("race/file.csv", b"first version\n")
    module = load_function(monkeypatch, world.env)
    real_list = cegid_run.list_source

    def list_then_replace(container):
        listed = real_list(container)
        world.put("race/file.csv", b"second version, written by Cegid meanwhile\n")
        return listed

    with monkeypatch.context() as patch:
        patch.setattr(cegid_run, "list_source", list_then_replace)
        summary = run_once(module)

    # The listed version is gone: nothing half-copied, the new version kept for the next run.
    assert (summary.files, summary.failed) == (0, 1)
    assert world.landed() == {} and world.source_names() == ["race/file.csv"]
    again = run_once(module)
    assert again.files == 1
    assert world.landed() == {
        "cegid/race/file.csv": b"second version, written by Cegid meanwhile\n"
    }


def test_files_that_do_not_fit_in_the_run_wait_for_the_next(world: World, monkeypatch) -> None:
    world.put("small.csv", b"x" * 10)
    world.put("zbig.bin", os.urandom(3 * 1024 * 1024))
    # Planning at 1 MiB/s, a file needs 5 s + its size: the small one fits in 7.9 s, the
    # 3 MiB one (8 s) never does, so it is left in Azure for the next run.
    module = load_function(monkeypatch, {**world.env, "CEGID_PLAN_MIB_PER_SECOND": "1"})

    summary = run_once(module, deadline_seconds=7.9)

    assert (summary.files, summary.deferred) == (1, 1)
    assert world.source_names() == ["zbig.bin"]
    assert run_once(module).files == 1 and world.source_names() == []


# -- Azure's Content-MD5 is a claim, not a proof (issue 18, item 5) ----------------------------


def test_a_forged_content_md5_never_deletes_the_source(world: World, monkeypatch, capsys) -> None:
    """A blob uploaded in blocks whose Content-MD5 was set to the MD5 of the file already in
    the bucket (same name, same size, other bytes): the bytes read decide, not the property."""
    in_bucket = b"ledger;2026-01;closed\n" * 40
    dropped = b"ledger;2026-02;opened\n" * 40
    assert len(in_bucket) == len(dropped) and in_bucket != dropped
    world.bucket.blob("cegid/forged/ledger.csv").upload_from_string(in_bucket)
    forged = hashlib.md5(in_bucket, usedforsecurity=False).digest()
    world.put_in_blocks("forged/ledger.csv", dropped, content_md5=forged)
    module = load_function(monkeypatch, world.env)

    summary = run_once(module)

    # Neither file lost: the source stays in Azure, the bucket's file is untouched.
    assert world.source_names() == ["forged/ledger.csv"]
    assert world.landed() == {"cegid/forged/ledger.csv": in_bucket}
    assert (summary.already_present, summary.failed) == (0, 1)
    [failed] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"file_failed"' in x]
    assert "Content-MD5" in failed["message"]


@pytest.mark.parametrize("content_md5", ["none", "correct"])
def test_a_file_already_in_the_bucket_is_verified_against_the_bytes_read(
    world: World, monkeypatch, content_md5: str
) -> None:
    """The same bytes already in the bucket (put there by hand, no source ETag): the source is
    deleted only after its bytes were read and compared, and nothing is written twice."""
    data = os.urandom(700_000)
    world.bucket.blob("cegid/by-hand/export.bin").upload_from_string(data)
    md5 = hashlib.md5(data, usedforsecurity=False).digest() if content_md5 == "correct" else None
    world.put_in_blocks("by-hand/export.bin", data, content_md5=md5)
    module = load_function(monkeypatch, world.env)
    streamed: list[str] = []
    real_stream = cegid_copy.stream_to_gcs

    def stream(container, blob, target, config):
        streamed.append(blob.name)
        return real_stream(container, blob, target, config)

    with monkeypatch.context() as patch:
        patch.setattr(cegid_copy, "stream_to_gcs", stream)
        summary = run_once(module)

    assert streamed == ["by-hand/export.bin"]  # read, not taken on Content-MD5's word
    assert (summary.files, summary.already_present, summary.failed) == (0, 1, 0)
    assert world.source_names() == []
    assert world.landed() == {"cegid/by-hand/export.bin": data}
    assert world.all_objects() == ["cegid/by-hand/export.bin"]  # no second copy, no staging


# -- lock fencing before the source delete (issue 18, item 4) ----------------------------------


def test_a_lease_run_short_stops_before_the_source_is_deleted(world: World, monkeypatch) -> None:
    """The run stalls while copying its first file until less than the fence margin of its
    lease is left (measured on the lock's monotonic clock): it must not delete that source nor
    start the next file, and must fail so Pub/Sub delivers again; the next run finishes, each
    file landing once."""
    files = {"lease/a-first.csv": os.urandom(400_000), "lease/b-second.csv": b"b;2\n" * 100}
    for name, data in files.items():
        world.put(name, data)
    module = load_function(monkeypatch, world.env)
    lease = module.SETTINGS.lock_lease.total_seconds()
    clock = {"now": 5_000.0}
    real_lock, real_stream = cegid_run.LeaseLock, cegid_copy.stream_to_gcs

    def lock_on_test_clock(*args, **kwargs):
        return real_lock(*args, monotonic=lambda: clock["now"], **kwargs)

    def stalled_stream(*args, **kwargs):
        digest = real_stream(*args, **kwargs)
        clock["now"] += lease - 30  # 30 s of lease left: under the 60 s margin
        return digest

    with monkeypatch.context() as patch:
        patch.setattr(cegid_run, "LeaseLock", lock_on_test_clock)
        patch.setattr(cegid_copy, "stream_to_gcs", stalled_stream)
        with pytest.raises(LeaseLost) as raised:
            run_once(module)

    assert raised.value.code == "lease_lost" and not raised.value.terminal
    assert world.source_names() == sorted(files)  # nothing deleted, the second not started
    landed = world.landed()
    assert set(landed) <= {"cegid/lease/a-first.csv"}
    assert all(data == files[name.removeprefix("cegid/")] for name, data in landed.items())

    again = run_once(module)

    assert (again.files, again.already_present, again.failed) == (1, 1, 0)
    assert world.source_names() == []
    assert world.landed() == {f"cegid/{name}": data for name, data in files.items()}
    assert world.all_objects() == sorted(f"cegid/{n}" for n in files)  # once each, no staging
