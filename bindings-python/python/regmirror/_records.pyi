"""Plain-data results, as the engine's JSON has them (the field names of the CLI's ``--json``).
Each record's fields are read-only attributes; ``to_dict()`` gives the plain data, records
pickle and compare by value."""

from typing import Any, Literal

class Record:
    def __init__(self, data: dict[str, Any]) -> None: ...
    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (a copy), as the CLI's ``--json`` prints them."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class Failure(Record):
    """A failure as data, what hints decide from (never message text)."""

    kind: str
    """The error kind's name (``"Unauthorized"``, ``"Network"`` …), as ``MirrorError.kind``."""
    side: Literal["source", "destination"] | None
    phase: Literal["list", "read", "stage", "publish", "prune", "rollback"] | None
    host: str | None
    detail: str | None
    """A recognised case: ``"plain_http"``, ``"ssrf_guard"``, ``"dns"``, ``"sparse_index"``,
    ``"sparse_source"`` or ``"run_timeout"``."""
    message: str

class TagFailure(Record):
    """A tag that failed, and why."""

    tag: str
    reason: str
    """``Kind: message``, one line."""
    kind: str
    """The error kind's name (``"Unauthorized"``, ``"Network"`` …), as ``MirrorError.kind``."""
    side: Literal["source", "destination"] | None
    phase: Literal["list", "read", "stage", "publish", "prune", "rollback"] | None
    host: str | None
    detail: str | None
    message: str

class RewrittenTag(Record):
    """A tag whose index was rewritten to the selected platforms (``platform_index="rewrite"``)."""

    tag: str
    source_digest: str
    digest: str

class SyncReport(Record):
    """What one sync run did. A failed tag is reported here, not raised."""

    mirror_id: str
    source: str
    outcome: Literal["success", "failed", "cancelled"]
    error: str | None
    """Why the run failed or was cancelled; ``None`` when it succeeded."""
    failure: Failure | None
    """The same as data; ``None`` when it succeeded."""
    note: str | None
    """A remark on a successful run, such as "no tags matched"."""
    partial: bool
    """A failed run whose successful tags and pruning stand (``failed_tags_only``)."""
    rolled_back: bool
    """The destination was put back as it was (``all_or_nothing``)."""
    tags_synced: list[str]
    tags_current: list[str]
    tags_failed: list[TagFailure]
    tags_deleted: list[str]
    tags_skipped: list[str]
    tags_rewritten: list[RewrittenTag]
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

class PreviewTag(Record):
    tag: str
    action: Literal["copy", "current", "skip", "fail"]
    digest: str | None
    bytes: int
    """Bytes of blobs this tag needs that the destination lacks (and no earlier tag brings)."""
    reason: str | None
    """Why the tag would fail or be skipped."""
    failure: Failure | None
    """Why the tag would fail, as data."""

class SyncPreview(Record):
    """What a sync would do, nothing changed."""

    mirror_id: str
    source: str
    tags: list[PreviewTag]
    tags_to_delete: list[str]
    blobs_to_copy: int
    bytes_to_copy: int
    note: str | None

class MirrorView(Record):
    """A stored mirror as ``regmirror mirror show --json`` prints it (never a password)."""

    id: str
    source: str
    source_username: str | None
    tags: list[str]
    architectures: list[str]
    sync_interval_secs: int
    enabled: bool
    verify_tls: bool
    source_ca_certs: list[str]
    http_proxy: str | None
    https_proxy: str | None
    no_proxy: str | None
    timeout_secs: int
    retry_backoff_secs: int
    rollback: Literal["failed_tags_only", "all_or_nothing"]
    platform_index: Literal["sparse", "rewrite"]
    referrers: str
    robot: str | None
    status: Literal["NEVER_RUN", "SYNC_NOW", "SYNCING", "SUCCESS", "FAIL", "CANCEL"]
    """Quay's status names."""
    retries_remaining: int
    start_date: str
    next_start: str
    last_started: str | None
    last_finished: str | None
    last_error: str | None
    lease_owner: str | None
    lease_expires: str | None
    lease_token: int
    next_run: str | None
    """RFC 3339; ``None`` while it runs or when nothing will run it."""
    next_run_at_next_poll: bool
    last_report: str | None
    """The summary line of the newest finished run."""

class LogEntry(Record):
    """One entry of a mirror's usage log, newest first (``regmirror mirror logs --json``)."""

    seq: int
    mirror_id: str
    time: str
    """RFC 3339."""
    kind: Literal[
        "sync_started",
        "tag_synced",
        "tag_failed",
        "tag_deleted",
        "tag_restored",
        "sync_succeeded",
        "sync_failed",
        "sync_cancelled",
    ]
    tag: str | None
    digest: str | None
    message: str
    failure: Failure | None
    """For ``tag_failed``, ``sync_failed`` and ``sync_cancelled``: the failure as data."""

class Event(Record):
    """What a notifier receives: the webhook's payload."""

    event: Literal["sync_started", "sync_succeeded", "sync_failed", "sync_cancelled"]
    mirror_id: str
    source: str
    patterns: list[str]
    tags_synced: list[str]
    tags_failed: list[str]
    tags_deleted: list[str]
    bytes_copied: int
    referrers_copied: int
    duration_ms: int
    error: str | None
    note: str | None
    failure: Failure | None
    """The run's failure as data; ``None`` for a success."""
    tag_failures: list[TagFailure]
    """Each failed tag with its failure as data."""

class Progress(Record):
    """One progress event of a sync; which fields it has depends on ``type``: ``planned``
    (``selected``, ``to_copy``), ``tag_started`` (``tag``), ``tag_finished`` (``tag``,
    ``status``, ``digest``, ``error``), ``blob_bytes`` (``digest``, ``done``, ``total``; at
    most five a second), ``blob_finished`` (``digest``, ``transfer``)."""

    type: Literal["planned", "tag_started", "tag_finished", "blob_bytes", "blob_finished"]
    selected: int
    to_copy: int
    tag: str
    status: Literal["synced", "current", "failed", "skipped"]
    digest: str | None
    error: str | None
    done: int
    total: int
    transfer: Literal["copied", "mounted", "present"]

def load(cls: type[Record], text: str) -> Any: ...
