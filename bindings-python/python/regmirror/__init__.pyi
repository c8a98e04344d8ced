"""Type stubs for regmirror (the native module regmirror._native, re-exported)."""

import builtins
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

from regmirror._records import (
    Event as Event,
    LogEntry as LogEntry,
    MirrorView as MirrorView,
    PreviewTag as PreviewTag,
    Progress as Progress,
    RewrittenTag as RewrittenTag,
    SyncPreview as SyncPreview,
    SyncReport as SyncReport,
    TagFailure as TagFailure,
)

ProgressCallback = Callable[[Progress], object]
"""Receives each progress event of a sync, on a thread of regmirror's (never the engine's),
rate-limited; what it raises is reported by ``sys.unraisablehook`` and never fails the sync."""

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

class CancelToken:
    """Cancels a sync from another thread: ``mirror.sync(cancel=token)`` in one,
    ``token.cancel()`` in the other. The run stops after the units of work in flight and its
    report says ``"cancelled"``."""

    def __init__(self) -> None: ...
    def cancel(self) -> None:
        """Cancel every run given this token (and those given it later). Thread-safe."""
    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""

class Mirror:
    """One mirror: ``source``'s tags selected by ``tags``, kept in ``to``.

    ``source`` and ``to`` are registry repositories (``host[:port]/path``) or OCI image layout
    directories (``oci:PATH``). The destination's tags end up exactly the selected ones unless
    ``keep_unselected``. ``referrers`` says which signatures, SBOMs and attestations travel
    with the images: ``"all"``, ``"none"`` or comma-separated artifact types. Settings are
    checked here: an invalid pattern raises
    ``InvalidPatternError``, a bad reference ``InvalidReferenceError``, a bad option
    ``InvalidConfigError``. Credentials are ``(username, password)`` and never shown.

    ``*_cert_dir`` is a CA certificate file (PEM) or a directory as docker's ``certs.d/HOST``
    (``*.crt`` CAs, ``client.cert`` + ``client.key``). ``auth_file`` holds logins (docker's
    ``config.json`` / podman's ``auth.json``) for both sides, as skopeo's ``--authfile``;
    ``docker_config`` reads the default ones. The proxies are for the source (unset: the
    ``*_proxy`` environment variables). ``timeout`` bounds the run, in seconds.
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
        source_cert_dir: str | os.PathLike[str] | None = None,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        dest_cert_dir: str | os.PathLike[str] | None = None,
        docker_config: bool = False,
        auth_file: str | os.PathLike[str] | None = None,
        http_proxy: str | None = None,
        https_proxy: str | None = None,
        no_proxy: str | None = None,
        concurrency: int = 8,
        timeout: float = 3600.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    def sync(self, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> SyncReport:
        """Run one sync, blocking (the GIL is released meanwhile).

        Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` at once and cancels the run, which stops
        in the background after the blob copies and requests in flight; it is not rolled back,
        so the destination may hold some of the selected tags. ``cancel.cancel()`` from another
        thread stops it the same way, and the report then says ``"cancelled"``.
        """
    def preview(self) -> SyncPreview:
        """What ``sync()`` would do, changing nothing: each selected tag's action (``copy``,
        ``current``, ``skip``, ``fail``), the tags it would delete and the bytes to move."""
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
        source_cert_dir: str | os.PathLike[str] | None = None,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        dest_cert_dir: str | os.PathLike[str] | None = None,
        docker_config: bool = False,
        auth_file: str | os.PathLike[str] | None = None,
        http_proxy: str | None = None,
        https_proxy: str | None = None,
        no_proxy: str | None = None,
        concurrency: int = 8,
        timeout: float = 3600.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    async def sync(
        self, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> SyncReport:
        """Run one sync on regmirror's tokio runtime (a coroutine; the run starts when it is
        first awaited).

        Cancelling the task awaiting it (``task.cancel()``, ``asyncio.timeout``) raises
        ``asyncio.CancelledError`` in that task at once and cancels the run, which stops in
        the background after the blob copies and requests in flight; it is not rolled back,
        so the destination may hold some of the selected tags.
        """
    async def preview(self) -> SyncPreview:
        """What ``sync()`` would do, changing nothing (see ``Mirror.preview``)."""
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
    "CancelToken",
    "CancelledError",
    "ConflictError",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_TAGS",
    "DigestMismatchError",
    "Event",
    "ForbiddenError",
    "InternalError",
    "InvalidConfigError",
    "InvalidManifestError",
    "InvalidPatternError",
    "InvalidReferenceError",
    "IoError",
    "LogEntry",
    "Mirror",
    "MirrorError",
    "MirrorView",
    "NetworkError",
    "NotFoundError",
    "PreviewTag",
    "Progress",
    "RateLimitedError",
    "RewrittenTag",
    "StateError",
    "SyncPreview",
    "SyncReport",
    "TagFailure",
    "TagFilter",
    "TlsError",
    "UnauthorizedError",
    "UnsupportedError",
    "__version__",
]
