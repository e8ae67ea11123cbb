"""The Scheduler jobs of ``python -m cli status`` (Cloud Scheduler API, served by a fake built
from its documented shapes), and ``python -m devtools.scheduler list`` locally."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from google_fake import GoogleApisFake

from cli import status as cli_status
from cli.__main__ import main
from devtools import scheduler
from shared import clock

REGION = "europe-west1"


@pytest.fixture
def project(stack: Any) -> str:
    return f"jobs-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleApisFake]:
    with GoogleApisFake() as fake:
        monkeypatch.setenv("CLOUD_SCHEDULER_API_URL", fake.url)
        monkeypatch.setenv("CLOUD_FUNCTIONS_API_URL", fake.url)
        monkeypatch.delenv("REGION", raising=False)
        yield fake


def add_healthy_jobs(google: GoogleApisFake, project: str) -> None:
    now = clock.now()
    for name, job in scheduler.JOBS.items():
        google.add_job(
            project,
            REGION,
            name,
            schedule=job.schedule,
            timeZone=job.time_zone,
            state="ENABLED",
            lastAttemptTime=clock.format_time(now - timedelta(minutes=4)),
            scheduleTime=clock.format_time(now + timedelta(minutes=26)),
        )


def test_each_deployment_job_is_read_from_cloud_scheduler(capsys, project, google) -> None:
    add_healthy_jobs(google, project)
    google.add_job(project, REGION, "someone-elses-job", schedule="0 0 * * *", state="PAUSED")
    google.add_job(project, "us-central1", "b24-token-refresh-job", state="PAUSED")
    google.max_page = 2  # every page is read

    code = main(["status", "--project", project, "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0, report
    assert report["jobs_error"] is None
    jobs = {job["job"]: job for job in report["jobs"]}
    assert list(jobs) == list(cli_status.JOB_NAMES)  # the deployment's, in order, no other
    graph = jobs["graph-webhook-renew-job"]
    assert (graph["schedule"], graph["time_zone"], graph["state"]) == (
        "0 * * * *",
        "Europe/Paris",
        "enabled",
    )
    assert graph["result"] == "ok" and graph["attention"] is False
    last = clock.parse_time(graph["last_attempt"])
    following = clock.parse_time(graph["next_run"])
    assert last is not None and following is not None and last < clock.now() < following
    # A plain-http endpoint (this fake) is never sent a bearer token.
    assert all("Authorization" not in headers for _, headers in google.requests)
    assert any(
        path.endswith(f"/locations/{REGION}/jobs?pageSize=500") for path, _ in google.requests
    )


def test_the_table_shows_time_zone_state_last_attempt_and_next_run(capsys, project, google) -> None:
    add_healthy_jobs(google, project)
    code = main(["status", "--project", project])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("JOB "))
    assert header.split() == [
        "JOB", "SCHEDULE", "TIME", "ZONE", "STATE", "LAST", "ATTEMPT", "NEXT", "RUN", "RESULT"
    ]  # fmt: skip
    graph = next(line for line in lines if line.startswith("graph-webhook-renew-job"))
    assert "Europe/Paris" in graph and " enabled " in graph
    assert "4m ago" in graph and ("in 25m" in graph or "in 26m" in graph)
    assert graph.rstrip().endswith("ok")
    assert lines[-1] == "nothing needs attention"


def test_a_paused_job_or_a_failed_attempt_needs_attention(capsys, project, google) -> None:
    now = clock.format_time(clock.now())
    google.add_job(
        project, REGION, "b24-token-refresh-job", schedule="*/30 * * * *", state="PAUSED"
    )
    google.add_job(
        project,
        REGION,
        "cegid-transfer-job",
        schedule="0 * * * *",
        timeZone="Etc/UTC",
        state="ENABLED",
        lastAttemptTime=now,
        status={"code": 5, "message": "Topic projects/p/topics/cegid-transfer-trigger not found"},
    )
    code = main(["status", "--project", project])
    out = capsys.readouterr().out
    assert code == 1
    b24 = next(line for line in out.splitlines() if line.startswith("b24-token-refresh-job"))
    assert " paused " in b24 and b24.rstrip().endswith("-")  # never attempted
    cegid = next(line for line in out.splitlines() if line.startswith("cegid-transfer-job"))
    assert "failed: code 5 Topic" in cegid
    assert out.splitlines()[-1].startswith("2 item(s) need attention")


def test_jobs_that_cannot_be_read_need_attention(capsys, project, google) -> None:
    google.refuse = (403, "The caller does not have permission")
    code = main(["status", "--project", project, "--json", "--region", "europe-west9"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["jobs"] == []
    assert "europe-west9" in report["jobs_error"] and "HTTP 403" in report["jobs_error"]
    assert report["attention"] == 1


def test_on_the_local_stack_the_jobs_are_devtools_scheduler_s(capsys, project, monkeypatch) -> None:
    monkeypatch.delenv("CLOUD_SCHEDULER_API_URL", raising=False)
    code = main(["status", "--project", project])
    out = capsys.readouterr().out
    assert code == 0
    assert "Scheduler jobs: " + cli_status.LOCAL_JOBS in out


def test_the_jobs_status_reads_are_those_terraform_creates() -> None:
    # devtools.scheduler.JOBS is held equal to terraform/ by tests/terraform.
    assert set(cli_status.JOB_NAMES) == set(scheduler.JOBS)


def test_devtools_scheduler_list_prints_each_time_zone(capsys) -> None:
    assert scheduler.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(scheduler.JOBS)
    for line, job in zip(lines, scheduler.JOBS.values(), strict=True):
        assert line.split()[0] == job.name
        assert f" {job.time_zone} " in line and job.schedule in line
