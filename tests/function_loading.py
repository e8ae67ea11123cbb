"""The two ways the function folders' tests load function code, written once:

* :func:`boot` executes a folder's main.py afresh under functions_framework, as the runtime
  does, and returns that module;
* :func:`bare_import` imports one module in a fresh interpreter with no environment variables
  and functions_framework made unimportable, as a pure module must survive it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import functions_framework
import pytest
from functions_framework import _function_registry

REPO = Path(__file__).resolve().parent.parent


def boot(source: str | Path, target: str, signature_type: str = "cloudevent") -> ModuleType:
    """Execute ``source`` (a main.py) afresh under functions_framework with the environment as
    it is now; returns that module, its Flask app as ``module.app``.

    The framework keeps the module it executes only under sys.modules["main"], a name every
    function's tests share; taking the object from its loader as it hands it over means a test
    always drives the module this call executed. (The loader is private to functions-framework
    3.10: if an upgrade renames it, this fails loudly, not silently.)
    """
    loaded: list[ModuleType] = []
    load = _function_registry.load_function_module

    def keep(path: str) -> tuple[ModuleType, Any]:
        module, spec = load(path)
        loaded.append(module)
        return module, spec

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_function_registry, "load_function_module", keep)
        app = functions_framework.create_app(target, str(source), signature_type)
    (module,) = loaded
    module.app = app  # type: ignore[attr-defined]
    return module


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
