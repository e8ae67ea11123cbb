"""The ``archive_file`` data source of hashicorp/archive, for real: the zip is built and written
to ``output_path`` when Terraform reads the data source (at plan time), with its checksums.

Other resources name their objects by these checksums and upload the file at
``output_path``, so it must exist, and the same inputs must give the same bytes on every run
(or the re-plan after apply would not be empty): entries are sorted, their timestamps fixed.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

# The earliest time a zip entry can carry: any fixed time makes the archive reproducible.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class ArchiveError(Exception):
    """The configuration cannot be archived; the message is the diagnostic's summary."""


def _excluded(relative: str, excludes: list[str]) -> bool:
    return any(
        relative == pattern or fnmatch.fnmatchcase(relative, pattern) for pattern in excludes
    )


def _dir_entries(
    source_dir: Path, excludes: list[str], skip_symlink_dirs: bool, output: Path
) -> list[tuple[str, bytes, int]]:
    if not source_dir.is_dir():
        raise ArchiveError(f"could not archive missing directory: {source_dir}")
    entries: list[tuple[str, bytes, int]] = []
    for root, dirs, files in os.walk(source_dir, followlinks=not skip_symlink_dirs):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(source_dir).as_posix()
            # The archive never packs itself when it is written inside its own source.
            if _excluded(relative, excludes) or path.resolve() == output.resolve():
                continue
            entries.append((relative, path.read_bytes(), path.stat().st_mode & 0o777))
    return entries


def _entries(config: dict[str, Any], output: Path) -> list[tuple[str, bytes, int]]:
    """(name in the archive, content, mode) for each file, from whichever source is set."""
    if config.get("source_content_filename") is not None:
        content = config.get("source_content") or ""
        return [(config["source_content_filename"], content.encode(), 0o644)]
    if config.get("source_file") is not None:
        path = Path(config["source_file"])
        if not path.is_file():
            raise ArchiveError(f"could not archive missing file: {path}")
        return [(path.name, path.read_bytes(), path.stat().st_mode & 0o777)]
    if config.get("source_dir") is not None:
        return _dir_entries(
            Path(config["source_dir"]),
            list(config.get("excludes") or []),
            bool(config.get("exclude_symlink_directories")),
            output,
        )
    sources = config.get("source") or []
    if sources:
        return [(s["filename"], s["content"].encode(), 0o644) for s in sources]
    raise ArchiveError(
        "one of 'source_content_filename', 'source_file', 'source_dir' or 'source' must be set"
    )


def build(config: dict[str, Any]) -> dict[str, Any]:
    """Write the archive the data source's configuration describes; return the computed
    attributes (``id`` and every ``output_*`` checksum and size)."""
    if config.get("type") != "zip":
        raise ArchiveError(f"archive type not supported by the stand-in: {config.get('type')!r}")
    output = Path(config["output_path"])
    file_mode = config.get("output_file_mode")
    entries = sorted(_entries(config, output))
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is read
            info.external_attr = (int(file_mode, 8) if file_mode else mode) << 16
            archive.writestr(info, content)
    data = output.read_bytes()
    # Checksums the schema names, not security: usedforsecurity=False says so.
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(data)
    sha512 = hashlib.sha512(data)
    return {
        "id": sha1,
        "output_size": len(data),
        "output_md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "output_sha": sha1,
        "output_sha256": sha256.hexdigest(),
        "output_base64sha256": base64.b64encode(sha256.digest()).decode(),
        "output_sha512": sha512.hexdigest(),
        "output_base64sha512": base64.b64encode(sha512.digest()).decode(),
    }
