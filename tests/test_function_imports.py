"""Every import a function's archive holds resolves from what its requirements.txt installs.

The static half of "functions tested as they ship" (the served half is devtools.stack serving
each function from its own venv): tools/import_check.py reads every shipped module with ast,
so an import that only runs on a rare path (inside a function, after a try) is caught too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools import shipenv
from tools import import_check
from tools.import_check import Problem, Requirement

# A venv is built from PyPI the first time (seconds to a minute each); make builds them first.
pytestmark = pytest.mark.timeout(900)

MUTANT = """
from typing import TYPE_CHECKING

import importlib

from google.cloud import storage  # required by this folder: fine
from shared import clock  # shipped: fine
import helper  # a sibling module: fine
import google_crc32c  # not named, but google-cloud-storage declares it: fine

if TYPE_CHECKING:
    import mypy_extensions  # never runs: not checked

try:
    from google.cloud import pubsub_v1  # google.cloud exists, pubsub_v1 is not required
except ImportError:
    pubsub_v1 = None


def later():
    import yaml  # only when called, still shipped

    return yaml, importlib.import_module("azure.storage.blob")


def uses_a_test_module():
    import test_support  # in the folder; shipped only if the archive keeps test_*.py

    return test_support
"""


def site_of(name: str) -> Path:
    python = shipenv.ensure(shipenv.function_dir(name))
    return shipenv.site_packages(python.parent.parent)


def found(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.file, p.module) for p in problems}


def copy_function(name: str, destination: Path) -> Path:
    folder = destination / name
    shutil.copytree(
        shipenv.function_dir(name), folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    return folder


@pytest.mark.parametrize("name", shipenv.function_names())
def test_every_import_resolves_from_the_folders_requirements(name: str) -> None:
    problems = import_check.check_function(shipenv.function_dir(name))
    assert problems == [], "\n".join(str(p) for p in problems)


def test_an_import_the_requirements_miss_is_reported(tmp_path: Path) -> None:
    folder = copy_function("b24_token_refresh", tmp_path)
    (folder / "mutant.py").write_text(MUTANT)
    (folder / "helper.py").write_text("VALUE = 1\n")
    (folder / "test_support.py").write_text("VALUE = 2\n")
    app = shipenv.stage(folder, tmp_path / "app")

    problems = import_check.check_app(app, site_of("b24_token_refresh"))

    expected = {
        ("mutant.py", "google.cloud.pubsub_v1"),
        ("mutant.py", "yaml"),
        ("mutant.py", "azure.storage.blob"),
    }
    if not (app / "test_support.py").exists():  # the Terraform skip rule leaves it out
        expected.add(("mutant.py", "test_support"))
    assert found(problems) == expected, "\n".join(map(str, problems))
    pubsub = next(p for p in problems if p.module == "google.cloud.pubsub_v1")
    assert "google-cloud-pubsub provides it" in str(pubsub)


def test_graph_folder_before_its_fix_is_reported(tmp_path: Path) -> None:
    """functions/graph_webhook_renew/requirements.txt as it was: shared/ needs Cloud Storage
    and google-crc32c, which nothing it named declared. The fixed folder's venv has both
    installed; they still count only when the requirements reach them."""
    folder = copy_function("graph_webhook_renew", tmp_path)
    requirements = folder / "requirements.txt"
    lines = requirements.read_text().splitlines()
    old = [x for x in lines if not x.startswith(("google-cloud-storage", "google-crc32c"))]
    assert len(old) == len(lines) - 2
    requirements.write_text("\n".join(old) + "\n")
    app = shipenv.stage(folder, tmp_path / "app")

    problems = import_check.check_app(app, site_of("graph_webhook_renew"))

    assert found(problems) == {
        ("shared/gcs.py", "google.cloud.storage"),
        ("shared/lock.py", "google.cloud.storage"),
        ("shared/secrets.py", "google_crc32c"),
    }, "\n".join(map(str, problems))


def test_closure_follows_extras_only_when_asked() -> None:
    installed = import_check.installed_distributions(site_of("graph_webhook_renew"))
    plain, missing = import_check.closure(installed, [Requirement("google-api-core", frozenset())])
    assert missing == [] and "google-api-core" in plain and "grpcio" not in plain
    with_grpc, _ = import_check.closure(
        installed, [Requirement("google-api-core", frozenset({"grpc"}))]
    )
    assert "grpcio" in with_grpc
    _, missing = import_check.closure(installed, [Requirement("no-such-dist", frozenset())])
    assert missing == ["no-such-dist"]


def test_requirements_are_read_as_pip_reads_them(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("Google_Cloud.Storage[grpc]==3.17.1  # pinned\n")
    (tmp_path / "requirements.txt").write_text(
        "# comment\n-r base.txt\n--hash=sha256:00\nrequests>=2 ; python_version >= '3.11'\n"
        "https://example.invalid/x.whl\n-e ./local\n"
    )
    found_, unknown = import_check.read_requirements(tmp_path / "requirements.txt")
    assert found_ == [
        Requirement("google-cloud-storage", frozenset({"grpc"})),
        Requirement("requests", frozenset()),
    ]
    assert unknown == ["https://example.invalid/x.whl", "-e ./local"]


def test_relative_and_conditional_imports_are_collected(tmp_path: Path) -> None:
    package = tmp_path / "shared"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from . import b\nfrom .c import d\nfrom .. import beyond\n"
        "if TYPE_CHECKING:\n    import skipped\nelse:\n    import kept\n"
    )
    imports, broken = import_check.imports_in(package / "a.py", tmp_path)
    assert [(i.module, i.names) for i in imports] == [
        ("shared", ("b",)),
        ("shared.c", ("d",)),
        ("kept", ()),
    ]
    assert [p.line for p in broken] == [3]
