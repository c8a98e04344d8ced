"""Type stubs for regmirror (the native module regmirror._native, re-exported)."""

import builtins
import datetime
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Literal, Protocol, TypedDict

from typing_extensions import Required, Unpack

from regmirror._records import (
    Event as Event,
    Failure as Failure,
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
"""The default of ``concurrency``: blob copies in flight at once (small reads such as manifest HEADs have their own allowance of four per copy, up to 32 per registry, and up to 8 times that to a far one)."""

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

class Notifier(Protocol):
    """An object with ``notify(event)``; a plain callable taking the event works too."""

    def notify(self, event: Event) -> object: ...

class StopFlag(Protocol):
    """What ``Mirrors.run_worker(stop=...)`` polls, such as a ``threading.Event``."""

    def is_set(self) -> bool: ...

class _Settings(TypedDict, total=False):
    """A mirror's settings: the names of a ``[[mirror]]`` table in the worker's
    ``regmirror.toml``. Durations are strings (``"6h"``, ``"30s"``), seconds, or a
    ``timedelta``; ``start`` is RFC 3339 (or a ``datetime`` with a time zone)."""

    architectures: Sequence[str]
    interval: str | int | float | datetime.timedelta
    """Time between scheduled syncs (default ``"24h"``)."""
    start: str | datetime.datetime
    retry_backoff: str | int | float | datetime.timedelta
    enabled: bool
    tls_verify: bool
    """Verify the source's TLS certificate (default ``True``); ``False`` also permits plain HTTP."""
    verify_tls: bool
    cert_dir: str | os.PathLike[str]
    ca_file: str | os.PathLike[str]
    timeout: str | int | float | datetime.timedelta
    rollback: Literal["failed_tags_only", "all_or_nothing"]
    platform_index: Literal["sparse", "rewrite"]
    referrers: str
    robot: str
    username: str
    password: str
    http_proxy: str
    https_proxy: str
    no_proxy: str

class _Changes(_Settings, total=False):
    """``update``'s changes: any setting, ``source`` and ``tags`` included."""

    source: str
    """The repository to mirror, ``host[:port]/path``."""
    tags: str | Sequence[str]
    """Tag patterns: a list, or one comma-separated string."""

class _MirrorSettings(_Settings, total=False):
    """``add``'s settings: ``source`` and ``tags`` are required."""

    source: Required[str]
    """The repository to mirror, ``host[:port]/path``."""
    tags: Required[str | Sequence[str]]
    """Tag patterns: a list, or one comma-separated string."""

class Mirrors:
    """Mirrors kept in a state store (``"sqlite:PATH"``, ``"postgres://USER@HOST:PORT/DB"``,
    ``"memory:"``) and synced into ``destination`` (``"HOST[:PORT]"`` with the robot's
    ``dest_credentials``, or ``"oci:DIR"``); the same store ``regmirror worker`` and
    ``regmirror mirror`` use. Methods block, the GIL released.

    Without a destination the mirrors can be managed but not synced or previewed. Each
    notifier (a callable, or an object with ``notify(event)``) receives every run's events on
    a thread of its own: what it raises goes to ``sys.unraisablehook``, and one that blocks or
    is slow loses events rather than holding up a sync. The store opens (and its schema is
    created or migrated) here.
    """

    def __init__(
        self,
        state: str,
        *,
        destination: str | None = None,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        dest_cert_dir: str | os.PathLike[str] | None = None,
        notifiers: Sequence[Notifier | Callable[[Event], object]] = (),
        concurrency: int = 8,
        lease: float = 60.0,
        default_rollback: Literal["failed_tags_only", "all_or_nothing"] = "failed_tags_only",
        retry_backoff: float = 60.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    def add(self, id: str, /, **settings: Unpack[_MirrorSettings]) -> MirrorView:
        """Create mirror ``id`` (its destination repository) from ``[[mirror]]`` settings;
        ``source`` and ``tags`` are required. Unknown names raise ``InvalidConfigError``."""
    def update(self, id: str, /, **changes: Unpack[_Changes]) -> MirrorView:
        """Change the settings given; the rest stay. A running sync finishes with the old ones."""
    def get(self, id: str) -> MirrorView:
        """Settings (never a password), status, retries left, last and next run, last report;
        ``NotFoundError`` if there is no such mirror."""
    def list(self) -> builtins.list[MirrorView]:
        """Every mirror, ordered by id."""
    def delete(self, id: str) -> None:
        """Remove the mirror, its status and its log (the destination's images stay)."""
    def enable(self, id: str) -> MirrorView: ...
    def disable(self, id: str) -> MirrorView:
        """Keep the schedule from running it (``sync_now`` still does)."""
    def sync_now(self, id: str) -> MirrorView:
        """Run it at a worker's next poll, even if disabled or not due."""
    def cancel(self, id: str) -> MirrorView:
        """Stop its pending or running sync (after the tags in flight); no runs until ``sync_now``."""
    def logs(self, id: str, limit: int = 50, before: int | None = None) -> builtins.list[LogEntry]:
        """The usage log, newest first; ``before`` a sequence number to page back from."""
    def sync(
        self, id: str, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> SyncReport:
        """Run it now in this process and return the report (status, schedule and log are
        updated as a worker's run does). Ctrl-C or ``cancel.cancel()`` cancels the run."""
    def preview(self, id: str) -> SyncPreview:
        """What a sync would do, changing nothing."""
    def run_worker(
        self,
        *,
        stop: StopFlag | None = None,
        poll_interval: float = 30.0,
        max_concurrent_syncs: int = 4,
        shutdown_deadline: float = 30.0,
        first_run_spread: float = 180.0,
    ) -> None:
        """Run the worker here, as ``regmirror worker`` does, until ``stop.is_set()`` or Ctrl-C
        (which then raises ``KeyboardInterrupt``). Stopping lets the runs in flight finish
        within ``shutdown_deadline``; a second Ctrl-C releases them at once."""

class AsyncMirrors:
    """``Mirrors`` for asyncio: the same arguments (the store opens in the constructor);
    every method is a coroutine."""

    def __init__(
        self,
        state: str,
        *,
        destination: str | None = None,
        dest_credentials: tuple[str, str] | None = None,
        dest_tls_verify: bool = True,
        dest_cert_dir: str | os.PathLike[str] | None = None,
        notifiers: Sequence[Notifier | Callable[[Event], object]] = (),
        concurrency: int = 8,
        lease: float = 60.0,
        default_rollback: Literal["failed_tags_only", "all_or_nothing"] = "failed_tags_only",
        retry_backoff: float = 60.0,
        ssrf_guard: bool = False,
        ssrf_allow: Sequence[str] = (),
        max_tags: int = 1000000,
    ) -> None: ...
    async def add(self, id: str, /, **settings: Unpack[_MirrorSettings]) -> MirrorView: ...
    async def update(self, id: str, /, **changes: Unpack[_Changes]) -> MirrorView: ...
    async def get(self, id: str) -> MirrorView: ...
    async def list(self) -> builtins.list[MirrorView]: ...
    async def delete(self, id: str) -> None: ...
    async def enable(self, id: str) -> MirrorView: ...
    async def disable(self, id: str) -> MirrorView: ...
    async def sync_now(self, id: str) -> MirrorView: ...
    async def cancel(self, id: str) -> MirrorView: ...
    async def logs(self, id: str, limit: int = 50, before: int | None = None) -> builtins.list[LogEntry]: ...
    async def sync(
        self, id: str, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> SyncReport:
        """Cancelling the task awaiting it cancels the run, as ``cancel.cancel()`` does."""
    async def preview(self, id: str) -> SyncPreview: ...
    async def run_worker(
        self,
        *,
        poll_interval: float = 30.0,
        max_concurrent_syncs: int = 4,
        shutdown_deadline: float = 30.0,
        first_run_spread: float = 180.0,
    ) -> None:
        """Run the worker until the task awaiting it is cancelled; the runs in flight then
        finish (within ``shutdown_deadline``) before the cancellation completes."""

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
    "AsyncMirrors",
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
    "Mirrors",
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
