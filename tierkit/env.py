"""Typed values from the environment, with errors that name the variable.

Each reader takes the mapping explicitly so settings are read once, in one place, and tests can
pass their own environment.
"""

from collections.abc import Mapping
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """An environment variable has a value we cannot use; the message names it."""


def env_str(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip()
    return value or default


def env_choice(
    environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]
) -> str:
    value = env_str(environ, name, default)
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def env_int(environ: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
    return value


def env_float(
    environ: Mapping[str, str], name: str, default: float, *, low: float, high: float
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:  # also rejects nan
        raise SettingsError(f"{name} must be from {low:g} to {high:g}, got {raw}")
    return value


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def env_url(environ: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(environ, name, default)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value


def env_port(environ: Mapping[str, str], name: str, default: int) -> int:
    return env_int(environ, name, default, low=1, high=65535)


def env_optional_url(environ: Mapping[str, str], name: str) -> str | None:
    if not environ.get(name, "").strip():
        return None
    return env_url(environ, name, "")
