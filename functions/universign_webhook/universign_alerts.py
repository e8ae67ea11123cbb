"""The two failures waiting will not cure, logged as an ERROR that says what a person must do:
a refused API key (``needs_reauth``) and a Google Cloud refusal (``needs_config``). Both entry
points meet them (universign_delivery, universign_poll). Monitoring counts ERROR lines and the
``needs_reauth`` event, so both names and the severity are part of the contract.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc

from shared import logs
from shared.errors import ProviderError

if TYPE_CHECKING:
    # Types only: main imports this module, and its Settings read the environment.
    from main import Settings

# Lines go to main.py's logger, which logs.setup names after the entry point being served
# (settings.entry_point), so every line keeps its "logger" whichever module writes it.


def needs_reauth(settings: Settings, error: ProviderError) -> None:
    log = logging.getLogger(settings.entry_point)
    log.error(
        "Universign refused the API key (%s): a person must act. Create an API key in the "
        "Universign web app (Developer menu) and add it as a new version of secret %s; "
        "syncing resumes on its own: Pub/Sub redelivers the queued webhook events to "
        "universign_sync with backoff, and the poll re-checks pending transactions. Events "
        "given up on wait in subscription universign-sync-dead-letter to be replayed "
        "(docs/runbooks/universign-sync-dead-letters.md).",
        error.code,
        settings.api_key_secret,
        extra=logs.fields(event="needs_reauth", provider="universign", error_code=error.code),
    )


def config_problem(settings: Settings, error: Exception) -> bool:
    """Log an ERROR that says what to fix when Google Cloud refused for a reason waiting will
    not cure (a secret without a version, a missing bucket, a permission); True if so."""
    if not isinstance(error, gexc.NotFound | gexc.FailedPrecondition | gexc.PermissionDenied):
        return False
    log = logging.getLogger(settings.entry_point)
    log.error(
        "Google Cloud refused a call (%s: %s). Check that secret %s has an enabled version and "
        "that buckets %s and %s exist and the function's service account may use them.",
        type(error).__name__,
        error,
        settings.api_key_secret,
        settings.state_bucket,
        settings.archive_bucket,
        extra=logs.fields(
            event="needs_config", provider="universign", error_code=type(error).__name__
        ),
    )
    return True
