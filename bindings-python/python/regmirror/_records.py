"""Plain-data results: reports, previews, mirrors' views, log entries, events and progress.

The native module hands each over as the core's JSON (the field names of the CLI's ``--json``);
a record reads its fields as attributes, nested objects as records of their own. ``to_dict()``
gives the plain data back, and records pickle and compare by value."""

import copy
import json
from typing import Any, ClassVar


class Record:
    """Fields as attributes, from the engine's JSON."""

    __slots__ = ("_data",)
    _nested: ClassVar[dict[str, type["Record"]]] = {}

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None
        nested = self._nested.get(name)
        if nested is None or value is None:
            return copy.deepcopy(value)
        if isinstance(value, list):
            return [nested(v) for v in value]
        return nested(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._data))

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (a copy), as the CLI's ``--json`` prints them."""
        return copy.deepcopy(self._data)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._data == self._data  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(json.dumps(self._data, sort_keys=True))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{type(self).__name__}({fields})"


class Failure(Record):
    """A failure as data: the error's ``.kind``, ``.side`` (``"source"`` / ``"destination"``),
    ``.phase``, registry ``.host``, ``.detail`` and ``.message`` — what hints decide from."""

    __slots__ = ()


class TagFailure(Record):
    """A tag that failed: ``.tag``, ``.reason``, and the error's ``.kind`` when known."""

    __slots__ = ()


class RewrittenTag(Record):
    __slots__ = ()


class SyncReport(Record):
    """What one sync run did. A failed tag is reported here, not raised."""

    __slots__ = ()
    _nested = {"tags_failed": TagFailure, "tags_rewritten": RewrittenTag, "failure": Failure}

    @property
    def success(self) -> bool:
        """Whether every selected tag is current now."""
        return bool(self._data["outcome"] == "success")

    def __repr__(self) -> str:
        failed = [f["tag"] for f in self._data["tags_failed"]]
        return (
            f"<SyncReport {self._data['outcome']}: {len(self._data['tags_synced'])} synced, "
            f"{len(self._data['tags_current'])} current, {len(failed)} failed {failed}, "
            f"{len(self._data['tags_deleted'])} deleted>"
        )


class PreviewTag(Record):
    __slots__ = ()
    _nested = {"failure": Failure}


class SyncPreview(Record):
    """What a sync would do, nothing changed: per tag ``copy`` / ``current`` / ``delete`` / … and
    the bytes to move."""

    __slots__ = ()
    _nested = {"tags": PreviewTag}


class MirrorView(Record):
    """A stored mirror as ``regmirror mirror show --json`` prints it: settings (never a
    password), status (Quay's names), retries left, last and next run, last report."""

    __slots__ = ()


class LogEntry(Record):
    """One entry of a mirror's usage log (``regmirror mirror logs --json``)."""

    __slots__ = ()
    _nested = {"failure": Failure}


class Event(Record):
    """What a notifier receives: the webhook's payload (``.event`` is ``"sync_started"``,
    ``"sync_succeeded"``, ``"sync_failed"`` or ``"sync_cancelled"``; ``.mirror_id`` …)."""

    __slots__ = ()
    _nested = {"failure": Failure, "tag_failures": TagFailure}


class Progress(Record):
    """One progress event of a sync: ``.type`` is ``"planned"``, ``"tag_started"``,
    ``"tag_finished"``, ``"blob_bytes"`` or ``"blob_finished"``."""

    __slots__ = ()


def load(cls: type[Record], text: str) -> Any:
    """A record of ``cls`` (or a list of them) from the engine's JSON."""
    data = json.loads(text)
    if isinstance(data, list):
        return [cls(d) for d in data]
    return cls(data)
