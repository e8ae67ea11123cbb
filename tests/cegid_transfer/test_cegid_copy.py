"""cegid_copy, driven by whole runs: a fault at each step (list, download, upload, verify,
publish, delete), as an error the run survives and as a crash that ends it, then a clean rerun:
no source is ever deleted without a verified copy, and in the end every file is in the bucket
exactly once."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import cegid_copy
import cegid_run
import pytest
from cegid_testlib import World, load_function, run_once
from google.api_core import exceptions as gexc

# Typed loosely: the storage package's partial type information confuses mypy here.
Blob: Any = importlib.import_module("google.cloud.storage").Blob
ResumableUpload: Any = importlib.import_module(
    "google.cloud.storage._media.requests.upload"
).ResumableUpload

# The second file (the one the faults hit) is above 8 MiB, so its upload is resumable (smaller
# objects go up in one request): with 1 MiB upload chunks it takes nine PUTs.
SIZES = [2_300_000, 9_000_000, 1_500_000, 700_000]
FILES = {f"exports/{i:02d}/part-{i}.csv": os.urandom(size) for i, size in enumerate(SIZES)}


class Crash(BaseException):
    """Stands for the process dying: no except-Exception handler in the function catches it."""


def failing(
    original: Callable[..., Any],
    kind: str,
    fire_on: int = 2,
    error: type[Exception] = gexc.ServiceUnavailable,
) -> Callable[..., Any]:
    """``original`` except that its ``fire_on``-th call fails (an error or a crash)."""
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == fire_on:
            raise Crash("injected") if kind == "crash" else error("injected")
        return original(*args, **kwargs)

    return wrapper


def inject(step: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if step == "list":
        monkeypatch.setattr(cegid_run, "list_source", failing(cegid_copy.list_source, kind, 1))
    elif step == "download":
        real_pipe = cegid_copy.HashingPipe

        def broken_chunks(chunks: Any) -> Any:
            for index, chunk in enumerate(chunks):
                if index == 1:
                    raise Crash("injected") if kind == "crash" else ConnectionError("reset")
                yield chunk

        calls = {"n": 0}

        def pipe(chunks: Any, depth: int = 2) -> Any:
            calls["n"] += 1
            return real_pipe(broken_chunks(chunks) if calls["n"] == 2 else chunks, depth)

        monkeypatch.setattr(cegid_copy, "HashingPipe", pipe)
    elif step == "upload":
        # The fourth PUT of the second file: it is half uploaded when it fails. (A 503 would
        # be retried by the client and heal; a 403 does not.)
        monkeypatch.setattr(
            ResumableUpload,
            "transmit_next_chunk",
            failing(ResumableUpload.transmit_next_chunk, kind, 4, gexc.Forbidden),
        )
    elif step == "verify":
        # The bytes read differ from what Cloud Storage stored: verification must notice.
        real_finish = cegid_copy.HashingPipe.finish
        calls = {"n": 0}

        def finish(self: Any) -> Any:
            digest = real_finish(self)
            calls["n"] += 1
            if calls["n"] == 2:
                if kind == "crash":
                    raise Crash("injected")
                return cegid_copy.Digest(digest.size, b"\0" * 16, digest.crc32c)
            return digest

        monkeypatch.setattr(cegid_copy.HashingPipe, "finish", finish)
    elif step == "publish":
        monkeypatch.setattr(Blob, "rewrite", failing(Blob.rewrite, kind))
    elif step == "delete":
        monkeypatch.setattr(cegid_copy, "delete_source", failing(cegid_copy.delete_source, kind))
    else:  # pragma: no cover
        raise AssertionError(step)


def assert_no_unverified_deletion(world: World) -> None:
    gone = set(FILES) - set(world.source_names())
    landed = world.landed()
    for name in gone:
        assert landed.get(f"cegid/{name}") == FILES[name], f"{name} deleted without its copy"
    # Whatever landed under its final name is complete and correct.
    for obj_name, data in landed.items():
        assert data == FILES[obj_name.removeprefix("cegid/")]


@pytest.mark.parametrize("kind", ["error", "crash"])
@pytest.mark.parametrize("step", ["list", "download", "upload", "verify", "publish", "delete"])
def test_fault_then_rerun_copies_everything_once(
    world: World, monkeypatch: pytest.MonkeyPatch, step: str, kind: str
) -> None:
    for name, data in FILES.items():
        world.put(name, data)
    module = load_function(monkeypatch, world.env)

    with monkeypatch.context() as patch:
        inject(step, kind, patch)
        if kind == "crash" or step == "list":
            with pytest.raises((Crash, gexc.ServiceUnavailable)):
                run_once(module)
        else:
            summary = run_once(module)
            # One file failed, the others went through.
            assert (summary.failed, summary.files) == (1, len(FILES) - 1)
    assert_no_unverified_deletion(world)
    assert world.source_names(), "the fault left nothing to finish, so it tested nothing"

    rerun = run_once(module)

    assert rerun.failed == 0
    assert world.source_names() == []
    assert world.landed() == {f"cegid/{name}": data for name, data in FILES.items()}
    assert world.all_objects() == sorted(f"cegid/{n}" for n in FILES)  # staging cleaned up
