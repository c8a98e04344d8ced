"""regmirror.Mirrors and AsyncMirrors against real registries (docker-registry) and real state
stores (SQLite, PostgreSQL): mirrors added from Python, run by the worker in-process, seen by
the `regmirror` CLI on the same store and the other way round; notifiers and progress that
raise, block or are slow; sync-now, cancel and a cancel from another thread."""

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import regmirror
from kit import Postgres, Registry, cli
from regmirror import AsyncMirrors, CancelToken, Event, Mirrors
from test_cancel import StalledRegistry


@pytest.fixture
def source(registry: Registry, tmp_path: Path) -> Registry:
    registry.seed("library/app", ["v1", "v2", "v3-rc"], tmp_path)
    registry.seed("library/db", ["15", "16"], tmp_path)
    return registry


@pytest.fixture
def dest() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'state.db'}"
    postgres: Postgres = request.getfixturevalue("postgres")
    return postgres.url()


def until(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def run_worker_until(mirrors: Mirrors, done: Callable[[], bool], what: str) -> None:
    """Run the worker in this thread until `done()` holds, stopped from another thread."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            until(done, what)
        except BaseException as e:  # reported below, after the worker stopped
            failure.append(e)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    mirrors.run_worker(stop=stop, poll_interval=0.5, first_run_spread=0.5)
    if failure:
        raise failure[0]


def cli_json(*args: str) -> object:
    out = subprocess.run([cli(), *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_mirrors_added_from_python_run_in_process_and_the_cli_sees_them(
    source: Registry, dest: Registry, state: str
) -> None:
    events: list[Event] = []
    mirrors = Mirrors(state, destination=dest.host, dest_tls_verify=False, notifiers=[events.append])
    app = mirrors.add("mirror/app", source=f"{source.host}/library/app", tags=["v*", "!*-rc"], interval="1h", tls_verify=False)
    assert app.status == "NEVER_RUN"
    assert app.sync_interval_secs == 3600
    mirrors.add("mirror/db", source=f"{source.host}/library/db", tags="1*", tls_verify=False, username="u", password="s3cret-pw")

    preview = mirrors.preview("mirror/app")
    assert [(t.tag, t.action) for t in preview.tags] == [("v1", "copy"), ("v2", "copy")]
    assert dest.tags("mirror/app") == []

    run_worker_until(
        mirrors, lambda: {m.status for m in mirrors.list()} == {"SUCCESS"}, "both mirrors to succeed"
    )
    assert dest.tags("mirror/app") == ["v1", "v2"]
    assert dest.tags("mirror/db") == ["15", "16"]
    views = {m.id: m for m in mirrors.list()}
    assert views["mirror/app"].last_report is not None
    assert views["mirror/db"].source_username == "u"
    assert "s3cret-pw" not in json.dumps([m.to_dict() for m in views.values()])

    until(lambda: len([e for e in events if e.event == "sync_succeeded"]) == 2, "the events")
    started = sorted(e.mirror_id for e in events if e.event == "sync_started")
    assert started == ["mirror/app", "mirror/db"]
    succeeded = next(e for e in events if e.event == "sync_succeeded" and e.mirror_id == "mirror/app")
    assert succeeded.tags_synced == ["v1", "v2"] and succeeded.error is None

    # A second process on the same store sees the same mirrors and statuses.
    listed = cli_json("mirror", "list", "--state", state)
    assert isinstance(listed, list)
    assert {(m["id"], m["status"]) for m in listed} == {("mirror/app", "SUCCESS"), ("mirror/db", "SUCCESS")}
    assert [m.to_dict()["id"] for m in mirrors.list()] == sorted(m["id"] for m in listed)

    logs = mirrors.logs("mirror/app", limit=2)
    assert [entry.kind for entry in logs][0] == "sync_succeeded"
    older = mirrors.logs("mirror/app", 50, logs[-1].seq)
    assert older and all(entry.seq < logs[-1].seq for entry in older)

    # A mirror added by the CLI is run by the Python worker.
    subprocess.run(
        [cli(), "mirror", "add", "mirror/cli", "--source", f"{source.host}/library/db", "--tags", "16",
         "--src-tls-verify=false", "--state", state],
        check=True,
        capture_output=True,
    )
    run_worker_until(mirrors, lambda: mirrors.get("mirror/cli").status == "SUCCESS", "the CLI's mirror")
    assert dest.tags("mirror/cli") == ["16"]

    mirrors.delete("mirror/db")
    assert [m.id for m in mirrors.list()] == ["mirror/app", "mirror/cli"]
    with pytest.raises(regmirror.NotFoundError):
        mirrors.get("mirror/db")


def test_update_enable_disable_and_sync_now(source: Registry, dest: Registry, tmp_path: Path) -> None:
    mirrors = Mirrors(f"sqlite:{tmp_path / 's.db'}", destination=dest.host, dest_tls_verify=False)
    mirrors.add("mirror/app", source=f"{source.host}/library/app", tags="v1", tls_verify=False, interval="6h")
    report = mirrors.sync("mirror/app")
    assert report.outcome == "success" and report.tags_synced == ["v1"]

    updated = mirrors.update("mirror/app", tags=["v1", "v2"], interval=7200)
    assert updated.tags == ["v1", "v2"] and updated.sync_interval_secs == 7200
    assert updated.verify_tls is False  # what the update left out stays
    assert mirrors.disable("mirror/app").enabled is False
    assert mirrors.sync_now("mirror/app").status == "SYNC_NOW"
    assert mirrors.enable("mirror/app").enabled is True

    events: list[regmirror.Progress] = []
    report = mirrors.sync("mirror/app", progress=events.append)
    assert report.tags_synced == ["v2"] and report.tags_current == ["v1"]
    assert [e.tag for e in events if e.type == "tag_finished"] == ["v1", "v2"]
    assert report.to_dict() == json.loads(json.dumps(report.to_dict()))

    with pytest.raises(regmirror.InvalidConfigError, match="unknown field `intervl`"):
        mirrors.update("mirror/app", intervl="1h")
    with pytest.raises(regmirror.InvalidConfigError, match="interval"):
        mirrors.add("mirror/bad", source=f"{source.host}/library/app", tags="v1", interval="soon")
    with pytest.raises(TypeError, match="id"):
        mirrors.update("mirror/app", id="other")


def test_sync_now_and_cancel_a_slow_mirror(dest: Registry, tmp_path: Path) -> None:
    stalled = StalledRegistry()
    try:
        # The run, stuck on the silent source, sees the cancel at its next lease renewal (every
        # third of the lease): 3 s here rather than the default lease's 20 s.
        mirrors = Mirrors(f"sqlite:{tmp_path / 's.db'}", destination=dest.host, dest_tls_verify=False, lease=9)
        mirrors.add("mirror/slow", source=f"{stalled.address}/app", tags="v*", tls_verify=False, timeout="10m")
        assert mirrors.sync_now("mirror/slow").status == "SYNC_NOW"
        stop = threading.Event()

        def cancel_once_running() -> None:
            until(lambda: mirrors.get("mirror/slow").status == "SYNCING", "the worker to claim it")
            assert stalled.accepted.wait(30)
            assert mirrors.cancel("mirror/slow").status == "CANCEL"
            until(lambda: stalled.closed.wait(0), "the run to stop")
            stop.set()

        watcher = threading.Thread(target=cancel_once_running, daemon=True)
        watcher.start()
        started = time.monotonic()
        mirrors.run_worker(stop=stop, poll_interval=0.5, shutdown_deadline=30)
        assert time.monotonic() - started < 60
        assert mirrors.get("mirror/slow").status == "CANCEL"
        assert [e.kind for e in mirrors.logs("mirror/slow")][0] == "sync_cancelled"
    finally:
        stalled.stop()


def test_a_cancel_from_another_thread_stops_a_stored_sync(dest: Registry, tmp_path: Path) -> None:
    stalled = StalledRegistry()
    try:
        mirrors = Mirrors(f"sqlite:{tmp_path / 's.db'}", destination=dest.host, dest_tls_verify=False)
        mirrors.add("mirror/slow", source=f"{stalled.address}/app", tags="v*", tls_verify=False)
        token = CancelToken()
        reports: list[regmirror.SyncReport] = []
        runner = threading.Thread(target=lambda: reports.append(mirrors.sync("mirror/slow", cancel=token)))
        runner.start()
        assert stalled.accepted.wait(30)
        token.cancel()
        runner.join(30)
        assert not runner.is_alive()
        assert reports[0].outcome == "cancelled"
    finally:
        stalled.stop()


def test_notifiers_that_raise_block_or_are_slow_fail_and_stall_nothing(
    source: Registry, dest: Registry, tmp_path: Path
) -> None:
    release = threading.Event()
    blocked: list[Event] = []
    heard: list[Event] = []
    raised: list[object] = []

    def raises(event: Event) -> None:
        raise RuntimeError("notifier bug")

    def blocks(event: Event) -> None:
        blocked.append(event)
        release.wait(120)

    class Slow:
        def notify(self, event: Event) -> None:
            time.sleep(0.5)
            heard.append(event)

    import sys

    previous, sys.unraisablehook = sys.unraisablehook, raised.append
    try:
        mirrors = Mirrors(
            f"sqlite:{tmp_path / 's.db'}",
            destination=dest.host,
            dest_tls_verify=False,
            notifiers=[raises, blocks, Slow()],
        )
        mirrors.add("mirror/app", source=f"{source.host}/library/app", tags="v1", tls_verify=False)
        started = time.monotonic()
        for _ in range(3):
            assert mirrors.sync("mirror/app").outcome == "success"
        # Three runs, each notifying three notifiers (one never returns): no run waited.
        assert time.monotonic() - started < 20
        until(lambda: len(heard) == 6, "the slow notifier's events")
        assert [e.event for e in heard] == ["sync_started", "sync_succeeded"] * 3
        assert len(blocked) == 1
        until(lambda: len(raised) == 6, "the raising notifier's errors")
        assert "notifier bug" in str(getattr(raised[0], "exc_value"))
    finally:
        sys.unraisablehook = previous
        release.set()
    with pytest.raises(TypeError, match="notifier"):
        Mirrors(f"sqlite:{tmp_path / 's.db'}", notifiers=[42])


def test_ctrl_c_stops_the_blocking_worker(source: Registry, dest: Registry, tmp_path: Path) -> None:
    mirrors = Mirrors(f"sqlite:{tmp_path / 's.db'}", destination=dest.host, dest_tls_verify=False)
    mirrors.add("mirror/app", source=f"{source.host}/library/app", tags="v1", tls_verify=False)

    def press_ctrl_c() -> None:
        until(lambda: mirrors.get("mirror/app").status == "SUCCESS", "the first run")
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            mirrors.run_worker(poll_interval=0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert dest.tags("mirror/app") == ["v1"]


@pytest.mark.asyncio
async def test_async_mirrors_and_a_cancelled_worker_task(source: Registry, dest: Registry, tmp_path: Path) -> None:
    events: list[Event] = []
    mirrors = AsyncMirrors(f"sqlite:{tmp_path / 's.db'}", destination=dest.host, dest_tls_verify=False, notifiers=[events.append])
    await mirrors.add("mirror/app", source=f"{source.host}/library/app", tags="v*", tls_verify=False)
    await mirrors.add("mirror/db", source=f"{source.host}/library/db", tags="16", tls_verify=False)
    assert (await mirrors.get("mirror/app")).status == "NEVER_RUN"
    assert [t.tag for t in (await mirrors.preview("mirror/db")).tags] == ["16"]

    worker = asyncio.create_task(mirrors.run_worker(poll_interval=0.5, first_run_spread=0.5))
    deadline = time.monotonic() + 60
    while {m.status for m in await mirrors.list()} != {"SUCCESS"}:
        assert time.monotonic() < deadline, "the worker did not run both mirrors"
        await asyncio.sleep(0.1)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert dest.tags("mirror/app") == ["v1", "v2", "v3-rc"]
    report = await mirrors.sync("mirror/db")
    assert report.outcome == "success" and report.tags_current == ["16"]
    assert (await mirrors.sync_now("mirror/db")).status == "SYNC_NOW"
    assert (await mirrors.cancel("mirror/db")).status == "CANCEL"
    assert [e.kind for e in await mirrors.logs("mirror/db", 1)] == ["sync_succeeded"]
    await mirrors.delete("mirror/db")
    assert [m.id for m in await mirrors.list()] == ["mirror/app"]
    assert {e.mirror_id for e in events if e.event == "sync_succeeded"} == {"mirror/app", "mirror/db"}


def test_invalid_settings_name_what_was_wrong(tmp_path: Path) -> None:
    with pytest.raises(regmirror.InvalidConfigError, match="state"):
        Mirrors("mysql://db/x")
    with pytest.raises(regmirror.InvalidConfigError, match="destination"):
        Mirrors(f"sqlite:{tmp_path / 's.db'}", destination="https://registry.example/ns")
    with pytest.raises(regmirror.InvalidConfigError, match="concurrency must be greater than 0, not -1"):
        Mirrors(f"sqlite:{tmp_path / 's.db'}", concurrency=-1)
    manager = Mirrors(f"sqlite:{tmp_path / 's.db'}")
    manager.add("mirror/app", source="127.0.0.1:9/library/app", tags="v1")
    with pytest.raises(regmirror.InvalidConfigError, match="no destination"):
        manager.sync("mirror/app")
    assert repr(manager) == f'Mirrors("sqlite:{tmp_path / "s.db"}")'
    with pytest.raises(regmirror.MirrorError) as refused:
        Mirrors("postgres://robot:pw-not-shown@127.0.0.1:9/regmirror")
    assert "pw-not-shown" not in str(refused.value)
    with pytest.raises(regmirror.InvalidConfigError, match="limit"):
        manager.logs("mirror/app", 0)
