"""Type stubs for regmirror (the native module regmirror._native, re-exported)."""

from collections.abc import Iterable, Sequence

__version__: str

class TagFilter:
    """A compiled list of tag patterns (SEMANTICS.md §2).

    Shell-style globs matched against the whole tag, case-sensitively (``*``, ``?``,
    ``[seq]``, ``[!seq]``), plus ``regex:`` (anchored), ``semver:`` ranges and ``!``
    exclusions. Raises ``InvalidPatternError`` naming the pattern when one is invalid or
    none is given.
    """

    def __init__(self, patterns: str | Sequence[str]) -> None:
        """``patterns``: one comma-separated string, or a sequence of patterns."""

    def matches(self, tag: str) -> bool:
        """Whether ``tag`` is selected."""

    def select(self, tags: Iterable[str]) -> list[str]:
        """The selected tags, sorted and deduplicated."""

    @property
    def patterns(self) -> list[str]:
        """The patterns, split and trimmed, in the order given."""

class MirrorError(Exception):
    """Base class of every regmirror error."""

    kind: str
    """The error kind's name, e.g. ``"InvalidPattern"``."""

class InvalidConfigError(MirrorError): ...
class InvalidPatternError(MirrorError): ...
class InvalidReferenceError(MirrorError): ...
class UnauthorizedError(MirrorError): ...
class ForbiddenError(MirrorError): ...
class NotFoundError(MirrorError): ...
class DigestMismatchError(MirrorError): ...
class InvalidManifestError(MirrorError): ...
class UnsupportedError(MirrorError): ...
class RateLimitedError(MirrorError): ...
class NetworkError(MirrorError): ...
class TimeoutError(MirrorError): ...
class TlsError(MirrorError): ...
class ConflictError(MirrorError): ...
class CancelledError(MirrorError): ...
class StateError(MirrorError): ...
class IoError(MirrorError): ...
class InternalError(MirrorError): ...

__all__ = [
    "CancelledError",
    "ConflictError",
    "DigestMismatchError",
    "ForbiddenError",
    "InternalError",
    "InvalidConfigError",
    "InvalidManifestError",
    "InvalidPatternError",
    "InvalidReferenceError",
    "IoError",
    "MirrorError",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "StateError",
    "TagFilter",
    "TimeoutError",
    "TlsError",
    "UnauthorizedError",
    "UnsupportedError",
    "__version__",
]
