"""Cloud Storage: the client every function builds its buckets from."""

from __future__ import annotations

from google.cloud import storage  # type: ignore[attr-defined]


def storage_client() -> storage.Client:
    """A Cloud Storage client; ``STORAGE_EMULATOR_HOST`` points it at an emulator."""
    return storage.Client()
