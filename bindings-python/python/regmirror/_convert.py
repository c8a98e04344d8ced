"""Keyword arguments as JSON for the core's serde types (``[[mirror]]`` settings): the names
pass through unchanged, the core refuses unknown ones and checks the values. Paths become
strings, ``timedelta`` seconds, ``datetime`` RFC 3339."""

import datetime
import json
import os
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"a setting cannot be a {type(value).__name__}: {value!r}")


def settings(id: str, kwargs: dict[str, Any] | None) -> str:
    """A mirror's settings: ``id`` and the keyword arguments."""
    kwargs = kwargs or {}
    if "id" in kwargs:
        raise TypeError("id is given as the first argument, not as a keyword")
    return json.dumps({"id": id, **kwargs}, default=_plain)


def changes(kwargs: dict[str, Any] | None) -> str:
    """The settings an update replaces."""
    kwargs = kwargs or {}
    if "id" in kwargs:
        raise TypeError("a mirror's id cannot change; add a new mirror and delete this one")
    return json.dumps(kwargs, default=_plain)
