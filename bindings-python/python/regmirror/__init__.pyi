"""Type stubs for regmirror (the native module regmirror._native, re-exported)."""

import builtins
from collections.abc import Iterable, Sequence
from typing import Final, Literal

__version__: str

DEFAULT_CONCURRENCY: Final[int]
"""The default of ``concurrency``: blob copies in flight at once (small reads such as manifest HEADs have their own allowance of four per copy, up to 32)."""

DEFAULT_MAX_TAGS: Final[int]
"""The default of ``max_tags``: a registry listing more tags than this fails the run (an endless tag list stops there)."""

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

class SyncReport:
    """What one sync run did. A failed tag is reported here, not raised."""

    mirror_id: str
    """The destination repository the run was named after."""
    source: str
    outcome: Literal["success", "failed", "cancelled"]
    error: str | None
    """Why the run failed or was cancelled; ``None`` when it succeeded."""
    note: str | None
    """A remark on a successful run, such as "no tags matched"."""
    partial: bool
    """A failed run whose successful tags and pruning stand (``failed_tags_only``)."""
    rolled_back: bool
    """The destination was put back as it was (``all_or_nothing``)."""
    tags_synced: list[str]
    tags_current: list[str]
    tags_failed: list[tuple[str, str]]
    """``(tag, reason)`` pairs."""
    tags_deleted: list[str]
    tags_skipped: list[str]
    tags_rewritten: list[tuple[str, str, str]]
    """``(tag, source_digest, digest)`` of indexes rewritten to the selected platforms."""
    blobs_copied: int
    blobs_mounted: int
    blobs_present: int
    bytes_copied: int
    referrers_copied: int
    """Signatures, SBOMs and attestations newly copied with their images."""
    duration_ms: int
    @property
    def success(self) -> bool:
        """Whether every selected tag is current now."""

class Mirror:
    """One mirror: ``source``'s tags selected by ``tags``, kept in ``to``.

    ``source`` and ``to`` are registry repositories (``host[:port]/path``) or OCI image layout
    directories (``oci:PATH``). The destination's tags end up exactly the selected ones unless
    ``keep_unselected``. ``referrers`` says which signatures, SBOMs and attestations travel
    with the images: ``"all"``, ``"none"`` or comma-separated artifact types. Settings are
    checked here: an invalid pattern raises
    ``InvalidPatternError``, a bad reference ``InvalidReferenceError``, a bad option
    ``InvalidConfigError``. Credentials are ``(username, password)`` and never shown.
    """

    def __init__(
        self,
        source: str,
        to: str,
        tags: str | Sequence[str],
        *,
        architectures: Sequence[str] = (),
        rollback: Literal["failed_tags_only", "all_or_nothing"] = "failed_tags_only",
        platform_index: Literal["sparse", "rewrite"] = "sparse",
        referrers: str = "all",
        keep_unselected: bool = False,
        source_credentials: tuple[str, str] | None = None,
        source_tls_verify: bool = True,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        docker_config: bool = False,
        concurrency: int = 8,
        timeout: float = 3600.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    def sync(self) -> SyncReport:
        """Run one sync, blocking (the GIL is released meanwhile).

        Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` at once and cancels the run, which stops
        in the background after the blob copies and requests in flight; it is not rolled back,
        so the destination may hold some of the selected tags.
        """
    @property
    def source(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...

class AsyncMirror:
    """``Mirror`` for asyncio: the same arguments; ``await mirror.sync()``."""

    def __init__(
        self,
        source: str,
        to: str,
        tags: str | Sequence[str],
        *,
        architectures: Sequence[str] = (),
        rollback: Literal["failed_tags_only", "all_or_nothing"] = "failed_tags_only",
        platform_index: Literal["sparse", "rewrite"] = "sparse",
        referrers: str = "all",
        keep_unselected: bool = False,
        source_credentials: tuple[str, str] | None = None,
        source_tls_verify: bool = True,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        docker_config: bool = False,
        concurrency: int = 8,
        timeout: float = 3600.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    async def sync(self) -> SyncReport:
        """Run one sync on regmirror's tokio runtime (a coroutine; the run starts when it is
        first awaited).

        Cancelling the task awaiting it (``task.cancel()``, ``asyncio.timeout``) raises
        ``asyncio.CancelledError`` in that task at once and cancels the run, which stops in
        the background after the blob copies and requests in flight; it is not rolled back,
        so the destination may hold some of the selected tags.
        """
    @property
    def source(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...

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
class TimeoutError(MirrorError, builtins.TimeoutError):
    """Also the builtin ``TimeoutError`` (an ``OSError``), so ``except TimeoutError`` catches it
    under either name; not in ``__all__``, so ``from regmirror import *`` leaves the builtin
    name alone."""

class TlsError(MirrorError): ...
class ConflictError(MirrorError): ...
class CancelledError(MirrorError): ...
class StateError(MirrorError): ...
class IoError(MirrorError): ...
class InternalError(MirrorError): ...

__all__ = [
    "AsyncMirror",
    "CancelledError",
    "ConflictError",
    "DEFAULT_CONCURRENCY",
    "DigestMismatchError",
    "ForbiddenError",
    "InternalError",
    "InvalidConfigError",
    "InvalidManifestError",
    "InvalidPatternError",
    "InvalidReferenceError",
    "IoError",
    "Mirror",
    "MirrorError",
    "NetworkError",
    "NotFoundError",
    "RateLimitedError",
    "StateError",
    "SyncReport",
    "TagFilter",
    "TlsError",
    "UnauthorizedError",
    "UnsupportedError",
    "__version__",
]
