"""Cloud Scheduler, locally: run a job the way ``gcloud scheduler jobs run JOB`` does.

A Pub/Sub job's run publishes its configured message body to its topic, once, now. The jobs
below mirror the ``google_cloud_scheduler_job`` resources in terraform/ (a test holds the two
together), so the demo and a person at the shell trigger exactly what production would.

    python -m devtools.scheduler run b24-token-refresh-job     # PUBSUB_EMULATOR_HOST must be set
    python -m devtools.scheduler list                          # schedules and time zones
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from devtools import gcp


@dataclass(frozen=True)
class Job:
    name: str
    topic: str
    body: bytes
    schedule: str
    time_zone: str = "Etc/UTC"


JOBS: dict[str, Job] = {
    job.name: job
    for job in [
        Job("b24-token-refresh-job", "b24-token-refresh-trigger", b"{}", "*/30 * * * *"),
        Job("hubspot-token-refresh-job", "hubspot-token-refresh-trigger", b"{}", "*/15 * * * *"),
        Job(
            "graph-webhook-renew-job",
            "graph-webhook-renew-trigger",
            b"{}",
            "0 * * * *",
            "Europe/Paris",
        ),
        Job("cegid-transfer-job", "cegid-transfer-trigger", b"{}", "0 * * * *"),
        Job("universign-poll-job", "universign-poll-trigger", b"{}", "*/5 * * * *", "Europe/Paris"),
    ]
}


def run(name: str, *, project: str | None = None) -> str:
    """Publish the job's body to its topic on the emulator; returns the message id."""
    try:
        job = JOBS[name]
    except KeyError:
        raise SystemExit(f"unknown job {name!r}; known: {', '.join(sorted(JOBS))}") from None
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "local-project"
    gcp.create_topic(project, job.topic)
    client = gcp.publisher()
    try:
        message_id: str = client.publish(gcp.topic_path(project, job.topic), job.body).result(30)
    finally:
        client.transport.close()
    return message_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.scheduler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="publish a job's message now")
    run_parser.add_argument("job", choices=sorted(JOBS))
    sub.add_parser("list", help="list the jobs: name, schedule, time zone, topic, body")
    args = parser.parse_args(argv)
    if args.command == "list":
        # The time zone the schedule is read in, as Cloud Scheduler reads it.
        for job in JOBS.values():
            print(
                f"{job.name:27} {job.schedule:14} {job.time_zone:14} -> {job.topic}  "
                f"{job.body.decode()}"
            )
        return 0
    message_id = run(args.job)
    print(f"{args.job}: published to {JOBS[args.job].topic} (message {message_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
