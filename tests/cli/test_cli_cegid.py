"""``python -m cli cegid``: ``pull --to DIR`` against fake-gcs-server, the settings read from the
deployed function (Cloud Functions API fake) against the Cegid fake, and ``--project``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from google_fake import GoogleApisFake

from cli import cegid as cli_cegid
from cli.__main__ import main
from devtools import gcp
from devtools.fakes.cegid import CegidFake
from shared.secrets import SecretStore

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "europe-west1"


@pytest.fixture
def project(stack: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cegid-cli-{uuid.uuid4().hex[:8]}"
    for variable in ("CEGID_BUCKET", "CEGID_PREFIX", "CEGID_API_URL", "CEGID_TENANT_ID",
                     "CEGID_PROVIDER_ID", "CEGID_FORCE_TIME", "REGION"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    return name


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleApisFake]:
    with GoogleApisFake() as fake:
        monkeypatch.setenv("CLOUD_FUNCTIONS_API_URL", fake.url)
        yield fake


FILES = {
    "cegid/DB508603/ecritures-20260101.csv": b"compte;montant\n411000;12.50\n" * 40,
    "cegid/racine.txt": b"top level",
    "cegid/a/b/c/deep.bin": os.urandom(700_000),
    "cegid/vide.csv": b"",
}


def export_bucket(project: str) -> Any:
    bucket = gcp.create_bucket(f"cegid-pull-{uuid.uuid4().hex[:10]}", project=project)
    for name, data in FILES.items():
        bucket.blob(name).upload_from_string(data)
    bucket.blob("elsewhere/not-mine.csv").upload_from_string(b"x")
    return bucket


def state_of(bucket: Any) -> dict[str, int]:
    return {b.name: b.generation for b in bucket.list_blobs()}


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != cli_cegid.LOCK_NAME
    }


# --------------------------------------------------------------------------- pull


def test_pull_downloads_what_the_folder_lacks_and_never_touches_the_bucket(
    capsys, project, tmp_path
) -> None:
    bucket = export_bucket(project)
    before = state_of(bucket)
    target = tmp_path / "odoo-in"
    (target / "DB508603").mkdir(parents=True)
    (target / "DB508603" / "ecritures-20260101.csv").write_bytes(b"already here, kept as is")

    code = main(["cegid", "pull", "--to", str(target), "--project", project,
                 "--bucket", bucket.name])  # fmt: skip
    out = capsys.readouterr().out

    assert code == 0
    assert files_under(target) == {
        "DB508603/ecritures-20260101.csv": b"already here, kept as is",
        "racine.txt": FILES["cegid/racine.txt"],
        "a/b/c/deep.bin": FILES["cegid/a/b/c/deep.bin"],
        "vide.csv": b"",
    }
    assert len(out.splitlines()) == 3 and "cegid/a/b/c/deep.bin" in out
    assert state_of(bucket) == before  # nothing deleted, nothing rewritten

    # From cron every minute: nothing new, nothing printed.
    assert main(["cegid", "--project", project, "pull", "--to", str(target),
                 "--bucket", bucket.name]) == 0  # fmt: skip
    assert capsys.readouterr().out == ""


def test_pull_takes_the_bucket_from_the_deployed_function(
    capsys, project, tmp_path, google
) -> None:
    bucket = export_bucket(project)
    google.add_function(project, REGION, "cegid-transfer",
                        {"CEGID_BUCKET": bucket.name, "CEGID_PREFIX": "cegid/a/"})  # fmt: skip
    code = main(["cegid", "pull", "--to", str(tmp_path), "--project", project, "--verbose"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert files_under(tmp_path) == {"b/c/deep.bin": FILES["cegid/a/b/c/deep.bin"]}
    assert f"CEGID_BUCKET={bucket.name}  [deployed function cegid-transfer]" in captured.err
    assert "CEGID_PREFIX=cegid/a/  [deployed function cegid-transfer]" in captured.err


def test_pull_without_a_bucket_says_how_to_give_one(capsys, project, tmp_path, google) -> None:
    code = main(["cegid", "pull", "--to", str(tmp_path), "--project", project])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cegid: no bucket: give --bucket or set CEGID_BUCKET")
    assert "cegid-transfer" in err and "404" in err and len(err.splitlines()) == 1


@dataclass
class Listed:
    """An object as list_blobs and bucket.blob give it, holding ``data`` (a unit-test bucket)."""

    name: str
    data: bytes
    generation: int = 1
    stored_crc32c: str | None = None
    crc32c: str | None = None

    def __post_init__(self) -> None:
        if self.crc32c is None:
            digest = int(google_crc32c.value(self.data)).to_bytes(4, "big")
            self.crc32c = self.stored_crc32c or base64.b64encode(digest).decode()

    def download_to_file(self, file: Any, **_: Any) -> None:
        half = len(self.data) // 2
        file.write(self.data[:half])
        file.write(self.data[half:])


class ListedBucket:
    name = "unit"

    def __init__(self, *objects: Listed) -> None:
        self.objects = {o.name: o for o in objects}

    def list_blobs(self, prefix: str) -> list[Listed]:
        return [o for n, o in sorted(self.objects.items()) if n.startswith(prefix)]

    def blob(self, name: str, generation: int) -> Listed:
        found = self.objects[name]
        assert found.generation == generation
        return Listed(found.name, found.data, found.generation, crc32c=found.crc32c)


def test_a_download_that_does_not_match_its_crc32c_is_not_kept(tmp_path) -> None:
    wrong = base64.b64encode(b"\x00\x00\x00\x01").decode()
    bucket = ListedBucket(
        Listed("cegid/bad.csv", b"corrupted on the way", crc32c=wrong),
        Listed("cegid/good.csv", b"fine"),
    )
    result = cli_cegid.pull(bucket, "cegid/", tmp_path)
    assert result.pulled == ["cegid/good.csv"]
    assert [name for name, _ in result.failed] == ["cegid/bad.csv"]
    assert "CRC32C" in result.failed[0][1]
    assert files_under(tmp_path) == {"good.csv": b"fine"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(cli_cegid.PART_SUFFIX)]


def test_a_name_that_would_leave_the_folder_is_refused(tmp_path) -> None:
    target = tmp_path / "in"
    bucket = ListedBucket(
        Listed("cegid/../escaped.csv", b"x"),
        Listed("cegid//double.csv", b"x"),
        Listed("cegid/folder/", b""),
        Listed("cegid/ok.csv", b"y"),
    )
    result = cli_cegid.pull(bucket, "cegid/", target)
    assert result.pulled == ["cegid/ok.csv"]
    assert {name for name, _ in result.failed} == {"cegid//double.csv", "cegid/../escaped.csv"}
    assert not (tmp_path / "escaped.csv").exists()
    assert files_under(target) == {"ok.csv": b"y"}


def test_a_second_pull_while_one_runs_leaves_it_the_work(tmp_path) -> None:
    bucket = ListedBucket(Listed("cegid/a.csv", b"a"))
    with cli_cegid._pull_lock(tmp_path) as held:
        assert held
        result = cli_cegid.pull(bucket, "cegid/", tmp_path)
    assert result.busy and result.pulled == [] and files_under(tmp_path) == {}
    assert cli_cegid.pull(bucket, "cegid/", tmp_path).pulled == ["cegid/a.csv"]


def test_temporary_files_of_a_run_that_died_are_removed(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    leftover = tmp_path / "sub" / f".a.csv.1234abcd{cli_cegid.PART_SUFFIX}"
    leftover.write_bytes(b"half a fi")
    cli_cegid.pull(ListedBucket(Listed("cegid/sub/a.csv", b"half a file")), "cegid/", tmp_path)
    assert not leftover.exists()
    assert files_under(tmp_path) == {"sub/a.csv": b"half a file"}


# --------------------------------------------------------------------------- deployed settings


@pytest.fixture
def cegid_api(project: str) -> Iterator[tuple[CegidFake, dict[str, str]]]:
    """The Cegid fake, its API secrets in the project, and the environment Terraform gives the
    cegid-queries function."""
    fake = CegidFake(azurite_url="http://127.0.0.1:9", tenant_id="41500123")
    fake.start()
    store = SecretStore(project)
    for secret_id, value in (
        ("cegid-api-key-id", fake.api_key_id),
        ("cegid-api-key-secret", fake.api_key_secret),
        ("cegid-subscription-key", fake.subscription_key),
    ):
        store.create(secret_id)
        store.add_version(secret_id, value)
    deployed = {
        "GOOGLE_CLOUD_PROJECT": project,
        "CEGID_API_URL": fake.url,
        "CEGID_TENANT_ID": fake.tenant_id,
        "CEGID_PROVIDER_ID": fake.provider_id,
        "CEGID_FORCE_TIME": "06:00",
    }
    try:
        yield fake, deployed
    finally:
        fake.stop()


def test_list_reads_the_deployed_configuration_and_says_where_it_came_from(
    capsys, project, google, cegid_api
) -> None:
    fake, deployed = cegid_api
    google.add_function(project, REGION, "cegid-queries", deployed)
    code = main(["cegid", "list", "--project", project, "--verbose"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = {s["query"]["name"] for s in fake.schedulers}
    assert {line.split()[0] for line in captured.out.splitlines()[1:]} == names
    assert f"CEGID_TENANT_ID={fake.tenant_id}  [deployed function cegid-queries]" in captured.err
    assert f"CEGID_API_URL={fake.url}  [deployed function cegid-queries]" in captured.err
    assert "CEGID_FORCE_TIME=06:00  [deployed function cegid-queries]" in captured.err
    assert fake.api_key_secret not in captured.out + captured.err


def test_a_flag_wins_over_the_environment_which_wins_over_the_deployed_function(
    capsys, project, google, cegid_api, monkeypatch
) -> None:
    fake, deployed = cegid_api
    google.add_function(project, REGION, "cegid-queries",
                        {**deployed, "CEGID_TENANT_ID": "999", "CEGID_PROVIDER_ID": "nope"})  # fmt: skip
    monkeypatch.setenv("CEGID_PROVIDER_ID", fake.provider_id)
    code = main(["cegid", "list", "--tenant-id", fake.tenant_id, "--project", project,
                 "--verbose"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"CEGID_TENANT_ID={fake.tenant_id}  [flag]" in err
    assert f"CEGID_PROVIDER_ID={fake.provider_id}  [environment]" in err


def test_force_uses_the_deployed_force_time(capsys, project, google, cegid_api) -> None:
    fake, deployed = cegid_api
    google.add_function(project, "europe-west4", "cegid-queries", deployed)
    code = main(["cegid", "--region", "europe-west4", "force", "--name", "TIERS",
                 "--project", project])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("forced TIERS: next execution ") and out.rstrip().endswith("06:00 UTC")
    tiers = next(s for s in fake.schedulers if s["query"]["name"] == "TIERS")
    assert str(tiers["nextExecution"]).endswith("T06:00:00.000Z")


def test_without_a_tenant_anywhere_it_says_where_it_looked(capsys, project, google) -> None:
    code = main(["cegid", "list", "--project", project])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cegid: no tenant: give --tenant-id or set CEGID_TENANT_ID")
    assert "function cegid-queries in europe-west1" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- --project


@pytest.mark.parametrize(
    "argv",
    [
        ["cegid", "list"],
        ["cegid", "pull", "--to", "somewhere"],
        ["hubspot", "list"],
        ["status"],
    ],
)
def test_without_a_project_one_line_and_exit_2(argv, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_CLOUD_PROJECT"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"{argv[0]}: give --project or set GOOGLE_CLOUD_PROJECT"]
    assert result.stdout == ""
