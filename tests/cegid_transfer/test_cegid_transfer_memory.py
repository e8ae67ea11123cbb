"""A file much larger than the copy's buffers goes through with bounded memory: the peak of
Python allocations during a run does not grow with the file's size."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

from cegid_testlib import World, load_function, run_once

MIB = 1024 * 1024


def put_large(world: World, tmp_path: Path, name: str, size: int) -> bytes:
    """Write ``size`` bytes to disk and upload them in blocks; returns their MD5."""
    source = tmp_path / "large.bin"
    digest = hashlib.md5(usedforsecurity=False)
    block = bytes(range(256)) * 4096  # 1 MiB
    with source.open("wb") as handle:
        for index in range(size // MIB):
            piece = block[index % 256 :] + block[: index % 256]
            digest.update(piece)
            handle.write(piece)
    with source.open("rb") as handle:
        world.fake.container().upload_blob(name, handle, length=size, max_concurrency=1)
    source.unlink()
    return digest.digest()


def measured_run(module: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        summary = run_once(module)
        return summary, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_file_is_streamed_with_bounded_memory(world: World, monkeypatch, tmp_path) -> None:
    module = load_function(
        monkeypatch,
        {**world.env, "CEGID_DOWNLOAD_CHUNK_MIB": "4", "CEGID_UPLOAD_CHUNK_MIB": "8"},
    )
    module.clients()  # the clients exist before measuring: only the copy is measured
    sizes = {"small": 16 * MIB, "large": 192 * MIB}
    peaks: dict[str, int] = {}
    for label, size in sizes.items():
        md5 = put_large(world, tmp_path, f"big/{label}.bin", size)
        summary, peaks[label] = measured_run(module)
        assert (summary.files, summary.failed, summary.bytes) == (1, 0, size)
        obj = world.bucket.get_blob(f"cegid/big/{label}.bin")
        assert obj is not None and obj.size == size
        assert obj.md5_hash is not None and base64.b64decode(obj.md5_hash) == md5

    assert world.source_names() == []
    report = {k: f"{v / MIB:.1f} MiB" for k, v in peaks.items()}
    # Buffering the file would take at least its size; streaming takes a few chunks.
    assert peaks["large"] < sizes["large"] / 2, report
    # Twelve times the bytes, about the same memory (seen: 48 and 60 MiB for 16 and 128 MiB).
    assert peaks["large"] < peaks["small"] + 24 * MIB, report
