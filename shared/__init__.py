"""Small library shared by every function: settings, logging, secrets, HTTP, OAuth, events,
per-instance runtime helpers, locks.

It holds what two or more functions need and no provider logic. It is copied next to each
function's main.py in the deploy archive, so it depends only on packages every function
already installs (see each functions/<name>/requirements.txt).
"""
