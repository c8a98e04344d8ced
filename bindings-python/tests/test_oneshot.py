"""One-shot parity with `regmirror sync`: previews, progress callbacks that raise, block or are
slow, a cancel from another thread, reports as plain data, and the settings' errors."""

import asyncio
import inspect
import json
import pickle
import subprocess
import threading
import time
from pathlib import Path

import pytest

import regmirror
from regmirror import AsyncMirror, CancelToken, InvalidConfigError, InvalidReferenceError, Mirror
from kit import cli
from test_cancel import StalledRegistry
from test_mirror import MAKE_LAYOUT, layout_tags

@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    subprocess.run(["bash", str(MAKE_LAYOUT), str(path), "v1", "v2", "latest"], check=True)
    return path


def test_preview_plans_and_changes_nothing(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    mirror = Mirror(f"oci:{source}", f"oci:{dest}", "v*")
    preview = mirror.preview()
    assert [(t.tag, t.action) for t in preview.tags] == [("v1", "copy"), ("v2", "copy")]
    assert preview.bytes_to_copy > 0 and preview.blobs_to_copy == 4
    assert not dest.exists() or layout_tags(dest) == {}
    mirror.sync()
    again = mirror.preview()
    assert [t.action for t in again.tags] == ["current", "current"]
    assert again.bytes_to_copy == 0
    assert asyncio.run(AsyncMirror(f"oci:{source}", f"oci:{dest}", "v1").preview()).tags_to_delete == ["v2"]


def test_reports_are_plain_data_with_the_cli_json_field_names(source: Path, tmp_path: Path) -> None:
    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'a'}", "v*").sync()
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert pickle.loads(pickle.dumps(report)) == report
    assert data["tags_synced"] == report.tags_synced == ["v1", "v2"]
    out = subprocess.run(
        [cli(), "sync", f"oci:{source}", "--to", f"oci:{tmp_path / 'b'}", "--tags", "v*", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cli_fields = set(json.loads(out)) - {"destination", "hint"}
    assert set(data) == cli_fields
    report.to_dict()["outcome"] = "changed"
    assert report.outcome == "success"
    with pytest.raises(AttributeError):
        report.outcome = "failed"  # type: ignore[misc]


def test_progress_reaches_the_callback(source: Path, tmp_path: Path) -> None:
    events: list[regmirror.Progress] = []
    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'dest'}", "v*").sync(progress=events.append)
    assert report.success
    kinds = [e.type for e in events]
    assert kinds[0] == "planned" and events[0].to_copy == 2
    assert [e.tag for e in events if e.type == "tag_finished"] == ["v1", "v2"]
    assert {e.status for e in events if e.type == "tag_finished"} == {"synced"}


def test_a_callback_that_raises_fails_nothing(source: Path, tmp_path: Path) -> None:
    seen: list[object] = []

    def hook(unraisable: object) -> None:
        seen.append(unraisable)

    def broken(event: regmirror.Progress) -> None:
        raise RuntimeError("callback bug")

    previous, __import__("sys").unraisablehook = __import__("sys").unraisablehook, hook
    try:
        report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'dest'}", "v*").sync(progress=broken)
    finally:
        __import__("sys").unraisablehook = previous
    assert report.success and report.tags_synced == ["v1", "v2"]
    assert seen, "the callback's exception was not reported"
    assert "callback bug" in str(getattr(seen[0], "exc_value"))


def test_a_blocked_or_slow_callback_stalls_nothing(source: Path, tmp_path: Path) -> None:
    release = threading.Event()
    calls = []

    def blocked(event: regmirror.Progress) -> None:
        calls.append(event)
        release.wait(60)

    started = time.monotonic()
    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'a'}", "v*").sync(progress=blocked)
    # The sync ends while the callback still holds its first event; only the bounded wait for
    # the last events (5 s) is spent on it.
    assert report.success
    assert time.monotonic() - started < 30
    assert len(calls) == 1
    release.set()

    def slow(event: regmirror.Progress) -> None:
        time.sleep(0.3)

    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'b'}", "v*").sync(progress=slow)
    assert report.success


def test_a_cancel_from_another_thread_stops_a_blocking_sync(tmp_path: Path) -> None:
    stalled = StalledRegistry()
    try:
        mirror = Mirror(f"{stalled.address}/app", f"oci:{tmp_path}", "v*", source_tls_verify=False, timeout=120)
        token = CancelToken()
        reports: list[regmirror.SyncReport] = []
        worker = threading.Thread(target=lambda: reports.append(mirror.sync(cancel=token)))
        worker.start()
        assert stalled.accepted.wait(30)
        token.cancel()
        worker.join(30)
        assert not worker.is_alive(), "cancel() did not stop the sync"
        assert token.cancelled
        assert reports[0].outcome == "cancelled"
    finally:
        stalled.stop()


def test_settings_errors_are_mirror_errors_naming_the_setting(tmp_path: Path) -> None:
    src, dst = "127.0.0.1:5000/app", f"oci:{tmp_path}"
    with pytest.raises(InvalidConfigError, match="concurrency must be greater than 0, not -1"):
        Mirror(src, dst, "v*", concurrency=-1)
    with pytest.raises(InvalidConfigError, match="max_tags"):
        Mirror(src, dst, "v*", max_tags=-5)
    with pytest.raises(InvalidConfigError, match="timeout"):
        Mirror(src, dst, "v*", timeout=-1)
    with pytest.raises(InvalidReferenceError) as raised:
        Mirror(src, "https://registry.example/app", "v*")
    assert str(raised.value).startswith('to: reference "https://registry.example/app" is not valid')
    with pytest.raises(TypeError, match="progress: expected a callable"):
        Mirror(src, dst, "v*").sync(progress=42)  # type: ignore[arg-type]


def test_a_sub_second_timeout_says_so_once(tmp_path: Path) -> None:
    stalled = StalledRegistry()
    try:
        report = Mirror(f"{stalled.address}/app", f"oci:{tmp_path}", "v*", source_tls_verify=False, timeout=0.5).sync()
    finally:
        stalled.stop()
    assert report.outcome == "failed"
    assert report.error is not None
    assert report.error.startswith("Timeout: the sync took longer than its timeout of 500ms (while listing the tags of ")
    assert report.error.count("Timeout") == 1 and report.error.count("500ms") == 1, report.error
    assert report.to_dict()["failure"]["detail"] == "run_timeout"
    assert isinstance(report.failure, regmirror.Failure)
    assert report.failure.kind == "Timeout" and report.failure.side is None


def test_help_shows_real_signatures_and_plain_docstrings() -> None:
    assert inspect.signature(AsyncMirror) == inspect.signature(Mirror)
    assert "auth_file" in inspect.signature(Mirror).parameters
    assert list(inspect.signature(Mirror.sync).parameters) == ["self", "progress", "cancel"]
    for cls in (Mirror, AsyncMirror, CancelToken, regmirror.TagFilter, regmirror.Mirrors, regmirror.AsyncMirrors):
        for name, member in [("", cls), *inspect.getmembers(cls)]:
            doc = getattr(member, "__doc__", None) or ""
            assert "[`" not in doc, f"{cls.__name__}.{name}: {doc}"



def test_a_failed_tag_carries_its_error_kind(source: Path, tmp_path: Path) -> None:
    # A layer of v2 goes missing from the source layout: v2 fails, v1 is copied.
    index = json.loads((source / "index.json").read_text())
    v2 = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v2")
    manifest = json.loads((source / "blobs" / "sha256" / v2["digest"].split(":")[1]).read_text())
    (source / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]).unlink()
    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'dest'}", "v*").sync()
    assert report.outcome == "failed" and report.tags_synced == ["v1"]
    [failure] = report.tags_failed
    assert failure.tag == "v2"
    assert failure.kind == "NotFound", failure.to_dict()
    assert failure.reason.startswith("NotFound: ")
    assert report.to_dict()["tags_failed"][0]["kind"] == "NotFound"
