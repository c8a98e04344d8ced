"""Calling the user's notifiers and progress callbacks. The native module calls these on a
thread of its own (never on the engine's), one event at a time; what a callback raises is
reported through ``sys.unraisablehook`` by the native side and never reaches the sync."""

import json
from typing import Any

from regmirror._records import Event, Progress


def notify(target: Any, text: str) -> None:
    """Deliver an event to a callable or to an object's ``notify(event)``."""
    method = getattr(target, "notify", None)
    (method if callable(method) else target)(Event(json.loads(text)))


def progress(target: Any, text: str) -> None:
    target(Progress(json.loads(text)))


def check(target: Any, what: str) -> Any:
    """Refuse at once what cannot be called (rather than on the first event)."""
    if what == "notifier" and callable(getattr(target, "notify", None)):
        return target
    if callable(target):
        return target
    wanted = "a callable or an object with notify(event)" if what == "notifier" else "a callable"
    raise TypeError(f"{what}: expected {wanted}, not {type(target).__name__}")
