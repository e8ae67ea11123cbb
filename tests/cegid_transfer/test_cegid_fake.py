"""The Cegid fake runs standalone for demos and switches error modes over its admin API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_standalone_fake_prints_ready_and_takes_a_mode() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.fakes.cegid", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = re.match(r"ready url=(http://127\.0\.0\.1:\d+) ", process.stdout.readline())
        assert ready, "no ready line"
        url = ready.group(1)
        request = urllib.request.Request(
            f"{url}/_admin/mode",
            data=json.dumps({"mode": "expired_sas"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204
        with urllib.request.urlopen(f"{url}/_admin/schedulers", timeout=5) as response:
            names = {s["query"]["name"] for s in json.load(response)}
        assert names == {"ECRITURES", "TIERS", "BALANCE_ANALYTIQUE"}
    finally:
        process.terminate()
        process.wait(timeout=10)
