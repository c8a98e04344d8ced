"""Type-checked with `mypy --strict` (scripts/test.sh), never run: the stubs as a typed caller
meets them. A line marked `# type: ignore[...]` must be an error (strict mode reports an ignore
that is not needed), so the stubs keep refusing what they refuse."""

import asyncio

import regmirror
from regmirror import AsyncMirror, Mirror, MirrorError, NotFoundError, SyncReport, TagFilter


def select(tags: list[str]) -> list[str]:
    return TagFilter(["v3.*", "!*beta*"]).select(tags)


def blocking() -> SyncReport:
    mirror = Mirror(
        "127.0.0.1:5000/library/app",
        "oci:./out",
        "v1.*",
        rollback="all_or_nothing",
        referrers="none",
        source_credentials=("robot", "secret"),
        source_tls_verify=False,
        concurrency=regmirror.DEFAULT_CONCURRENCY,
        timeout=60.0,
        ssrf_guard=True,
        ssrf_allow=["10.0.0.0/8", "registry.corp"],
    )
    try:
        return mirror.sync()
    except NotFoundError as e:
        kind: str = e.kind
        raise RuntimeError(kind) from e


def timed_out(e: regmirror.TimeoutError) -> tuple[MirrorError, TimeoutError, OSError]:
    # regmirror's TimeoutError is also the builtin one.
    return e, e, e


async def concurrent() -> list[SyncReport]:
    mirrors = [AsyncMirror(f"oci:./src{i}", f"oci:./dst{i}", ["v*"]) for i in range(2)]
    task: asyncio.Task[SyncReport] = asyncio.create_task(mirrors[0].sync())
    outcome: str = (await task).outcome
    print(outcome)
    return list(await asyncio.gather(*(m.sync() for m in mirrors)))


def refused() -> None:
    Mirror("a", "b", "v*", rollback="sometimes")  # type: ignore[arg-type]
    Mirror("a", "b", "v*", concurrency="8")  # type: ignore[arg-type]
    Mirror("a", "b", "v*", unknown_option=1)  # type: ignore[call-arg]
    failed: int = Mirror("a", "b", "v*").sync().tags_failed  # type: ignore[assignment]
    try:
        TagFilter("v3.[12")
    except MirrorError as e:
        e.kind = 1  # type: ignore[assignment]
    print(failed)


def parity(token: regmirror.CancelToken) -> int:
    mirror = Mirror(
        "127.0.0.1:5000/library/app",
        "oci:./out",
        ["v1.*"],
        source_cert_dir="/etc/docker/certs.d/127.0.0.1:5000",
        auth_file="auth.json",
        https_proxy="http://proxy:3128",
        keep_unselected=True,
    )
    plan: regmirror.SyncPreview = mirror.preview()
    moving: int = sum(t.bytes for t in plan.tags if t.action == "copy")

    def on_progress(event: regmirror.Progress) -> None:
        if event.type == "blob_bytes":
            print(event.done, event.total)

    report = mirror.sync(progress=on_progress, cancel=token)
    kinds: list[str] = [f.kind for f in report.tags_failed]
    data: dict[str, object] = report.to_dict()
    run_failure: regmirror.Failure | None = report.failure
    side: str | None = run_failure.side if run_failure is not None else None
    print(kinds, data, side)
    token.cancel()
    return moving


def refused_parity() -> None:
    Mirror("a", "b", "v*").sync(progress="print")  # type: ignore[arg-type]
    Mirror("a", "b", "v*").sync(cancel=True)  # type: ignore[arg-type]


def stored(notify: regmirror.Notifier) -> list[str]:
    events: list[regmirror.Event] = []
    mirrors = regmirror.Mirrors(
        "sqlite:/var/lib/regmirror/state.db",
        destination="127.0.0.1:5000",
        dest_tls_verify=False,
        notifiers=[events.append, notify],
    )
    view = mirrors.add("mirror/app", source="quay.io/app/app", tags=["v1.*"], interval="1h", tls_verify=False)
    status: str = view.status
    mirrors.update("mirror/app", interval=3600, architectures=["amd64"])
    report = mirrors.sync("mirror/app", progress=print)
    print(status, report.outcome, mirrors.preview("mirror/app").bytes_to_copy, mirrors.get("mirror/app").next_run)
    for entry in mirrors.logs("mirror/app", limit=10, before=None):
        print(entry.kind, entry.seq)
    mirrors.sync_now("mirror/app")
    mirrors.cancel("mirror/app")
    mirrors.run_worker(stop=__import__("threading").Event(), poll_interval=5.0)
    mirrors.delete("mirror/app")
    return [m.id for m in mirrors.list()] + [e.mirror_id for e in events if e.event == "sync_failed"]


async def stored_async() -> None:
    mirrors = regmirror.AsyncMirrors("memory:", destination="oci:/srv/mirrors")
    await mirrors.add("mirror/app", source="quay.io/app/app", tags="v*")
    worker: asyncio.Task[None] = asyncio.create_task(mirrors.run_worker(max_concurrent_syncs=2))
    report: regmirror.SyncReport = await mirrors.sync("mirror/app")
    worker.cancel()
    print(report.success, [v.status for v in await mirrors.list()])


def refused_stored() -> None:
    mirrors = regmirror.Mirrors("memory:")
    mirrors.add("mirror/app", tags="v*")  # type: ignore[call-arg]
    mirrors.add("mirror/app", source="a/b", tags="v*", intervl="1h")  # type: ignore[call-arg]
    mirrors.update("mirror/app", enabled="yes")  # type: ignore[arg-type]
    regmirror.Mirrors("memory:", notifiers=[42])  # type: ignore[list-item]
    status: int = mirrors.get("m").status  # type: ignore[assignment]
    print(status)
