"""regmirror: keep a repository in your registry in sync with one in an external registry.

Quay's "repository mirroring" as an embeddable engine. The behaviour lives in Rust; this
package re-exports the native module ``regmirror._native``.
"""

from regmirror._native import (
    AsyncMirror,
    CancelledError,
    ConflictError,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_TAGS,
    DigestMismatchError,
    ForbiddenError,
    InternalError,
    InvalidConfigError,
    InvalidManifestError,
    InvalidPatternError,
    InvalidReferenceError,
    IoError,
    Mirror,
    MirrorError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    StateError,
    SyncReport,
    TagFilter,
    TimeoutError,
    TlsError,
    UnauthorizedError,
    UnsupportedError,
    __version__,
)

# TimeoutError is left out of `from regmirror import *`: that would shadow the builtin, and
# `except TimeoutError` would then miss the builtin ones (asyncio.timeout, sockets). It derives
# from the builtin, so that name catches regmirror's as well.
__all__ = [
    "AsyncMirror",
    "CancelledError",
    "ConflictError",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_TAGS",
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
