"""A hello-world HTTP function: the baseline a benchmark serves beside a real function.

Same framework, same server, no work: whatever a real function costs above this is its own.
"""

from __future__ import annotations

import flask
import functions_framework


@functions_framework.http
def hello(request: flask.Request) -> tuple[str, int, dict[str, str]]:
    token = request.args.get("validationToken")
    if token is not None:
        return token, 200, {"Content-Type": "text/plain; charset=utf-8"}
    request.get_data()
    return "", 202, {"Content-Type": "text/plain; charset=utf-8"}
