"""The local scheduler (devtools/scheduler.py, used by the demo and at the shell) runs the
same jobs Terraform creates: same names, topics, schedules and time zones."""

from __future__ import annotations

from tf_agreement import REPO_ROOT, load_inventory

from devtools.scheduler import JOBS


def test_local_jobs_match_terraform() -> None:
    inventory = load_inventory(REPO_ROOT / "terraform")
    deployed = {
        job["name"]: (job["topic"], job["schedule"], job["time_zone"])
        for job in inventory["scheduler_jobs"]
    }
    local = {job.name: (job.topic, job.schedule, job.time_zone) for job in JOBS.values()}
    assert local == deployed
