"""Read a current access token from another service, with a cache.

    from shared.tokens import AccessTokenReader
    bitrix = AccessTokenReader("b24-access-token")
    token = bitrix.get()   # Secret Manager is read again only shortly before expires-at

The token and its ``expires-at`` annotation are written by the refresh functions; between
reads the token is served from memory, which keeps Secret Manager access costs flat.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from shared import clock
from shared.secrets import SecretStore

# When the writer recorded no expiry, trust a cached token this long.
UNKNOWN_EXPIRY_TTL = timedelta(minutes=1)


class AccessTokenReader:
    def __init__(
        self,
        secret_id: str,
        *,
        store: SecretStore | None = None,
        skew: timedelta = timedelta(minutes=2),
    ) -> None:
        self.secret_id = secret_id
        self._store = store
        self.skew = skew
        self._token: str | None = None
        self._valid_until: datetime | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> SecretStore:
        if self._store is None:
            self._store = SecretStore()
        return self._store

    def get(self) -> str:
        with self._lock:
            now = clock.now()
            if self._token is not None and self._valid_until and now < self._valid_until:
                return self._token
            # Annotations first: a refresh landing in between then only shortens the cache.
            expires_at = clock.parse_time(
                self.store.info(self.secret_id).annotations.get("expires-at")
            )
            self._token = self.store.read(self.secret_id).value
            if expires_at is None:
                self._valid_until = now + UNKNOWN_EXPIRY_TTL
            else:
                self._valid_until = expires_at - self.skew
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token, for example after the provider answered 401."""
        with self._lock:
            self._token = None
            self._valid_until = None
