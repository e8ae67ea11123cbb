"""Keep credentials out of every log line and exception text.

Two layers: every secret value the process reads or receives is registered and replaced
wherever it appears, and patterns catch credentials the process never registered (query
parameters such as ``client_secret=`` or an Azure SAS ``sig=``, bearer headers, JSON fields
named like tokens, passwords in URLs).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from urllib.parse import urlsplit, urlunsplit

MASK = "[REDACTED]"

# Shorter values are too likely to be ordinary words or numbers to mask everywhere; the
# index below keys every value by this many leading characters.
_MIN_REGISTERED_LENGTH = 6
# A long-lived instance refreshing thousands of accounts registers values without end; the
# oldest ones (long expired tokens) are forgotten first.
_MAX_REGISTERED = 50_000

_lock = threading.Lock()
_registered: OrderedDict[str, None] = OrderedDict()
# Registered values by their first characters, longest first: registering is O(1) and masking
# is one pass over the text however many values there are.
_index: dict[str, list[str]] = {}

_SENSITIVE_NAME = (
    r"[A-Za-z0-9_.\-]*(?:token|secret|password|passwd|pwd|api[_\-]?key|apikey|signature|sig|"
    r"credential|assertion|auth|code|client[_\-]?state)[A-Za-z0-9_.\-]*"
)
_QUERY_PARAM = re.compile(rf"(?i)([?&;]{_SENSITIVE_NAME}=)[^&\s\"'#<>]+")
# Whole key names only, so ``secret_id=`` or ``error code:`` stay readable.
_SENSITIVE_KEY = (
    r"(?:access_?token|refresh_?token|id_?token|token|client_?secret|secret|password|passwd|"
    r"api[_\-]?key|sig|signature|client_?state|assertion|sas_?token|sas_?url)"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?<![A-Za-z0-9_\-])([\"']?{_SENSITIVE_KEY}[\"']?\s*[:=]\s*[\"']?)"
    rf"(?!\[REDACTED\])[^\"'\s,&}}\]]{{4,}}"
)
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+@")


def register(*values: str | None) -> None:
    """Remember secret values so they are masked wherever they appear later."""
    fresh = [v for v in values if v and len(v) >= _MIN_REGISTERED_LENGTH and v not in _registered]
    if not fresh:
        return
    with _lock:
        for value in fresh:
            if value in _registered:
                continue
            _registered[value] = None
            bucket = _index.setdefault(value[:_MIN_REGISTERED_LENGTH], [])
            bucket.append(value)
            bucket.sort(key=len, reverse=True)
        while len(_registered) > _MAX_REGISTERED:
            old, _ = _registered.popitem(last=False)
            bucket = _index.get(old[:_MIN_REGISTERED_LENGTH], [])
            if old in bucket:
                bucket.remove(old)
            if not bucket:
                _index.pop(old[:_MIN_REGISTERED_LENGTH], None)


def _mask_registered(text: str) -> str:
    if not _index:
        return text
    key = _MIN_REGISTERED_LENGTH
    parts: list[str] = []
    start = i = 0
    last = len(text) - key
    while i <= last:
        bucket = _index.get(text[i : i + key])
        hit = next((v for v in bucket if text.startswith(v, i)), None) if bucket else None
        if hit is None:
            i += 1
            continue
        parts += [text[start:i], MASK]
        i = start = i + len(hit)
    parts.append(text[start:])
    return "".join(parts)


def redact(text: str) -> str:
    """Mask registered secrets and credential-shaped substrings in ``text``."""
    if not text:
        return text
    text = _mask_registered(text)
    text = _QUERY_PARAM.sub(rf"\1{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\1 {MASK}", text)
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    return _KEY_VALUE.sub(rf"\1{MASK}", text)


def safe_url(url: str) -> str:
    """The URL without query string, fragment or user info: safe to log and to raise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
