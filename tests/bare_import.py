"""Import one module of a function folder the way a pure module must survive it: in a fresh
interpreter, with no environment variables and functions_framework made unimportable.

Shared by the folders whose tests check that their decision and provider modules need neither
the platform nor the function's settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bare_import(folder: Path, module: str, *, absent: tuple[str, ...] = ()) -> str:
    """What went wrong importing ``module`` from ``folder`` ("" if nothing), including any
    module of ``absent`` that the import loaded."""
    code = (
        "import sys\n"
        "sys.modules['functions_framework'] = None\n"
        f"import {module}\n"
        f"loaded = [m for m in {absent!r} if m in sys.modules]\n"
        "assert loaded == [], f'loaded {loaded}'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{REPO}{os.pathsep}{folder}"},
        timeout=60,
        check=False,
    )
    return "" if done.returncode == 0 else done.stderr
