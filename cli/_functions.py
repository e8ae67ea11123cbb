"""Lets commands import helper modules that live in a function's folder.

A function folder is deployed on its own (main.py, its helper modules and shared/), so its
helpers are top-level modules there. Their names start with the integration's name
(``cegid_api``, ``hubspot_accounts``) so several folders can share one ``sys.path`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def use_function_folder(name: str) -> None:
    folder = str(FUNCTIONS / name)
    if folder not in sys.path:
        sys.path.append(folder)
