"""Settings read from the environment.

A missing or malformed variable fails at start-up with an error that names it, so a bad deploy
shows up in the first log line rather than as a wrong behaviour hours later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """A string setting; without a default the variable is required."""
    value = _raw(name, env)
    if value is not None:
        return value
    if default is None:
        raise ConfigError(f"environment variable {name} is required but not set")
    return default


def env_optional(name: str, *, env: Mapping[str, str] | None = None) -> str | None:
    return _raw(name, env)


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer: {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"environment variable {name} must be <= {maximum}, got {number}")
    return number


def env_float(
    name: str, default: float, *, minimum: float = 0.0, env: Mapping[str, str] | None = None
) -> float:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, got {number}")
    return number


def env_bool(name: str, default: bool, *, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"environment variable {name} must be true or false, got {value!r}")


def env_choice(
    name: str, choices: tuple[str, ...], default: str, *, env: Mapping[str, str] | None = None
) -> str:
    value = _raw(name, env) or default
    if value not in choices:
        raise ConfigError(f"environment variable {name} must be one of {', '.join(choices)}")
    return value


def env_json(name: str, default: Any, *, env: Mapping[str, str] | None = None) -> Any:
    value = _raw(name, env)
    if value is None:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ConfigError(f"environment variable {name} is not valid JSON: {error.msg}") from None


def project_id(env: Mapping[str, str] | None = None) -> str:
    """The Google Cloud project the function runs in (set by Terraform on every function)."""
    return env_str("GOOGLE_CLOUD_PROJECT", env=env)
