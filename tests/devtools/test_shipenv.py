"""devtools.shipenv: the archive layout follows the Terraform module's skip rule, and a venv is
rebuilt exactly when its requirements change, once even when asked for concurrently."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devtools import shipenv

JOINED = r"""
locals {
  # comment with skip = "not this"
  skip = join("|", [
    "(^|/)(__pycache__|tests?)(/|$)", // caches and tests
    "\\.py[cod]$",
    "(^|/)\\.env[^/]*$",
    /* editor litter */ "(~|\\.sw[a-p])$",
  ])
  other = "x"
}
"""
SINGLE = r"""
locals {
  skip = "(^|/)(__pycache__|\\.pytest_cache|\\.mypy_cache)(/|$)|\\.pyc$"
}
"""


def module_tf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "main.tf"
    path.write_text(text)
    return path


def test_skip_rule_read_from_a_join_and_from_a_string(tmp_path: Path) -> None:
    assert shipenv.skip_rule(module_tf(tmp_path, JOINED)) == (
        r"(^|/)(__pycache__|tests?)(/|$)|\.py[cod]$|(^|/)\.env[^/]*$|(~|\.sw[a-p])$"
    )
    assert shipenv.skip_rule(module_tf(tmp_path, SINGLE)) == (
        r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache)(/|$)|\.pyc$"
    )


@pytest.mark.parametrize(
    "text",
    ["locals {\n  skip = var.rule\n}\n", 'locals {\n  skip = "${var.x}"\n}\n', "locals {}\n"],
)
def test_a_skip_rule_it_cannot_read_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(shipenv.ShipEnvError):
        shipenv.skip_rule(module_tf(tmp_path, text))


def test_the_real_module_skips_bytecode_and_keeps_code() -> None:
    files = shipenv.shipped_files(shipenv.function_dir("b24_token_refresh"))
    assert {"main.py", "requirements.txt", "shared/__init__.py", "shared/secrets.py"} <= set(files)
    assert not [n for n in files if "__pycache__" in n or n.endswith(".pyc")]


def test_shipped_files_as_the_archive_holds_them(tmp_path: Path) -> None:
    folder, shared = tmp_path / "fn", tmp_path / "shared"
    for relative, content in {
        "fn/main.py": b"",
        "fn/requirements.txt": b"",
        "fn/pkg/mod.py": b"",
        "fn/.config": b"",
        "fn/__pycache__/main.cpython-311.pyc": b"",
        "fn/tests/test_main.py": b"",
        "fn/.env.local": b"SECRET=1",
        "fn/main.py.swp": b"",
        "fn/notes~": b"",
        "fn/logo.png": b"\x89PNG\xff\xfe",
        "shared/__init__.py": b"",
        "shared/lock.py": b"",
        "shared/lock.pyc": b"",
    }.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    files = shipenv.shipped_files(folder, shared, module_tf(tmp_path, JOINED))
    assert list(files) == [
        ".config",
        "main.py",
        "pkg/mod.py",
        "requirements.txt",
        "shared/__init__.py",
        "shared/lock.py",
    ]


def test_stage_lays_out_the_folder_with_shared(tmp_path: Path) -> None:
    app = shipenv.stage(shipenv.function_dir("graph_webhook_renew"), tmp_path / "app")
    assert (app / "main.py").is_file() and (app / "graph_api.py").is_file()
    assert (app / "shared" / "lock.py").read_text() == (shipenv.SHARED_DIR / "lock.py").read_text()
    with pytest.raises(FileExistsError):
        shipenv.stage(shipenv.function_dir("graph_webhook_renew"), app)


def test_functions_framework_is_added_only_when_not_named(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("Functions_Framework==3.10.2\nrequests\n")
    assert shipenv.install_arguments(tmp_path)[2:] == []
    (tmp_path / "requirements.txt").write_text("requests\n")
    assert shipenv.install_arguments(tmp_path)[2:] == ["functions-framework"]


def test_a_venv_is_rebuilt_only_when_its_requirements_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []

    def fake_build(folder: Path, venv: Path, stamp: str) -> None:
        time.sleep(0.3)  # holds the lock long enough for the other caller to queue on it
        builds.append(folder.name)
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        (venv / "bin" / "python").write_text("")
        (venv / shipenv.STAMP).write_text(stamp)

    monkeypatch.setattr(shipenv, "_build", fake_build)
    monkeypatch.setattr(shipenv, "FUNCTIONS_DIR", tmp_path / "functions")
    folder = tmp_path / "functions" / "fn"
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text("requests==2.34.2\n")
    venvs = tmp_path / "venvs"

    def ensure() -> Path:
        return shipenv.ensure(folder, venvs_dir=venvs, log=lambda _m: None)

    racers = [threading.Thread(target=ensure) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(10)
    assert builds == ["fn"]  # the second caller found the first one's stamp

    assert ensure() == venvs / "fn" / "bin" / "python"
    assert builds == ["fn"]
    (folder / "requirements.txt").write_text("requests==2.34.2\nidna==3.10\n")
    ensure()
    assert builds == ["fn", "fn"]
    (venvs / "fn" / shipenv.STAMP).unlink()  # a build cut short leaves no stamp
    ensure()
    assert builds == ["fn", "fn", "fn"]


def test_folders_outside_functions_get_a_venv_per_requirements(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, requirements in ((one, "requests\n"), (two, "requests\n")):
        folder.mkdir()
        (folder / "requirements.txt").write_text(requirements)
    assert shipenv.venv_dir(one) == shipenv.venv_dir(two)
    assert shipenv.venv_dir(one).parent == shipenv.VENVS_DIR / shipenv.OTHER_VENVS
    (two / "requirements.txt").write_text("idna\n")
    assert shipenv.venv_dir(one) != shipenv.venv_dir(two)
    assert shipenv.venv_dir(shipenv.function_dir("b24_token_refresh")) == (
        shipenv.VENVS_DIR / "b24_token_refresh"
    )
