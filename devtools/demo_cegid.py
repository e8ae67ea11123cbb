"""The Cegid story of ``make demo``: cegid_transfer (behind cegid-transfer-trigger) moves three
exports from the Azure container (Azurite) to the bucket, verified, and deletes the sources;
cegid_queries (behind cegid-queries) forces one scheduled query."""

from __future__ import annotations

import base64
import hashlib
import os

import google_crc32c

from devtools import gcp, scheduler
from devtools.demo_kit import Demo, say
from devtools.fakes.cegid import CegidFake

TITLE = "Cegid: cegid_transfer every hour, cegid_queries on request"
SERVICES = ("pubsub", "gcs", "secretmanager", "azurite")
JOB = "cegid-transfer-job"
QUERIES_TOPIC = "cegid-queries"
EXPORTS = {
    "exports/ECRITURES_2026-01-01.csv": b"journal;compte;debit;credit\nVT;411000;120.00;0\n",
    "exports/TIERS_2026-01-01.csv": b"code;nom\nC001;Client un\n",
    # Over a chunk: streamed in parts, checked whole.
    "exports/BALANCE_ANALYTIQUE_2026-W01.csv": os.urandom(1_500_000),
}


def checksums(data: bytes) -> tuple[str, str]:
    """MD5 and CRC32C as Cloud Storage reports them (base64 of the digests)."""
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    crc32c = google_crc32c.value(data).to_bytes(4, "big")
    return base64.b64encode(md5).decode(), base64.b64encode(crc32c).decode()


def run(demo: Demo) -> None:
    with demo.step("start the Cegid fake (Data Access API; its SAS URLs point at Azurite)"):
        fake = demo.start_fake(CegidFake(azurite_url=demo.stack_env["AZURITE_BLOB_URL"]))
    bucket_name = f"{demo.project}-cegid-exports"
    with demo.step(
        "seed cegid-api-key-id, cegid-api-key-secret and cegid-subscription-key as deploy.sh "
        f"does; create bucket {bucket_name}"
    ):
        for secret_id, value in (
            ("cegid-api-key-id", fake.api_key_id),
            ("cegid-api-key-secret", fake.api_key_secret),
            ("cegid-subscription-key", fake.subscription_key),
        ):
            demo.store.create(secret_id, labels={"integration": "cegid"})
            demo.store.add_version(secret_id, value)
        gcp.create_bucket(demo.state_bucket, project=demo.project)
        bucket = gcp.create_bucket(bucket_name, project=demo.project)
    with demo.step(f"Cegid drops {len(EXPORTS)} exports into its Azure container (Azurite)"):
        container = fake.container()
        for name, data in EXPORTS.items():
            container.upload_blob(name, data, overwrite=True)
    env = demo.env(
        CEGID_MODE="api",
        CEGID_API_URL=fake.url,
        CEGID_TENANT_ID=fake.tenant_id,
        CEGID_PROVIDER_ID=fake.provider_id,
        CEGID_BUCKET=bucket_name,
    )
    transfer = demo.serve(
        "cegid_transfer", "cegid_transfer", env, trigger=scheduler.JOBS[JOB].topic
    )
    queries = demo.serve("cegid_transfer", "cegid_queries", env, trigger=QUERIES_TOPIC)

    summary = demo.run_job(JOB, transfer)
    say(
        f"  cegid: run {summary['result']}: {summary['files']} files ({summary['bytes']} bytes) "
        f"moved, {summary['failed']} failed"
    )
    with demo.step(
        "compare each landed object's MD5 and CRC32C with the export's; list the Azure container"
    ):
        for name, data in EXPORTS.items():
            blob = bucket.get_blob(f"cegid/{name}")
            assert blob is not None, f"gs://{bucket_name}/cegid/{name} is missing"
            assert (blob.md5_hash, blob.crc32c) == checksums(data), f"{name} differs"
        left = [b.name for b in container.list_blobs()]
        assert not left, f"still in Azure: {left}"
    for name, data in EXPORTS.items():
        say(f"  cegid: gs://{bucket_name}/cegid/{name}: {len(data)} bytes, MD5 and CRC32C match")
    say("  cegid: the Azure container is empty: each source deleted once its copy was verified")

    def next_tiers() -> str:
        return next(
            str(s["nextExecution"]) for s in fake.schedulers if s["query"]["name"] == "TIERS"
        )

    before = next_tiers()
    summary = demo.publish_run(queries, QUERIES_TOPIC, {"action": "force", "name": "TIERS"})
    say(
        f"  cegid: force {summary['result']}: scheduled query TIERS runs next at {next_tiers()} "
        f"(was {before}); its cron is unchanged"
    )
