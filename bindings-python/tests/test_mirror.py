"""regmirror.Mirror and AsyncMirror: one-shot syncs between real OCI image layouts on disk."""

import json
import subprocess
from pathlib import Path

import pytest

from regmirror import (
    AsyncMirror,
    InvalidConfigError,
    InvalidPatternError,
    InvalidReferenceError,
    Mirror,
)

MAKE_LAYOUT = Path(__file__).resolve().parents[2] / "scripts" / "make-test-layout.sh"
SOURCE_TAGS = ["v1.0", "v1.1", "v2.0-rc1", "latest"]


def layout_tags(path: Path) -> dict[str, str]:
    """The layout's tags and the manifest digest each points at."""
    index = json.loads((path / "index.json").read_text())
    return {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
        if "org.opencontainers.image.ref.name" in m.get("annotations", {})
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    subprocess.run(["bash", str(MAKE_LAYOUT), str(path), *SOURCE_TAGS], check=True)
    return path


def test_sync_copies_the_selected_tags_with_their_digests(source: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    mirror = Mirror(f"oci:{source}", f"oci:{dest}", ["v1.*", "!*-rc*"])
    report = mirror.sync()
    assert report.success, report
    assert report.outcome == "success"
    assert report.tags_synced == ["v1.0", "v1.1"]
    assert report.tags_failed == []
    assert report.error is None and report.note is None
    assert report.blobs_copied == 4  # a config and a layer per tag
    assert report.referrers_copied == 0
    want = {t: d for t, d in layout_tags(source).items() if t in ("v1.0", "v1.1")}
    assert layout_tags(dest) == want

    again = mirror.sync()
    assert again.tags_synced == []
    assert again.tags_current == ["v1.0", "v1.1"]
    assert again.blobs_copied == 0


def test_narrowed_patterns_prune_the_destination(source: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    Mirror(f"oci:{source}", f"oci:{dest}", "v1.*").sync()
    report = Mirror(f"oci:{source}", f"oci:{dest}", "v1.0").sync()
    assert report.tags_deleted == ["v1.1"]
    assert set(layout_tags(dest)) == {"v1.0"}

    kept = Mirror(f"oci:{source}", f"oci:{dest}", "latest", keep_unselected=True).sync()
    assert kept.tags_deleted == []
    assert set(layout_tags(dest)) == {"v1.0", "latest"}


def test_a_source_that_cannot_be_listed_fails_the_run_and_prunes_nothing(tmp_path: Path, source: Path):
    dest = tmp_path / "dest"
    Mirror(f"oci:{source}", f"oci:{dest}", "latest").sync()
    report = Mirror(f"oci:{tmp_path / 'missing'}", f"oci:{dest}", "v*").sync()
    assert not report.success
    assert report.outcome == "failed"
    assert report.error
    assert set(layout_tags(dest)) == {"latest"}


def test_matching_no_tag_is_a_success_with_a_note_not_an_error(source: Path, tmp_path: Path):
    report = Mirror(f"oci:{source}", f"oci:{tmp_path / 'dest'}", "nomatch*").sync()
    assert report.success, report
    # `if report.error: alert()` must not fire on a success.
    assert report.error is None
    assert report.note is not None
    assert report.note.startswith("no tags matched (the source has 4 tags"), report.note


@pytest.mark.asyncio
async def test_async_mirror_syncs(source: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    mirror = AsyncMirror(f"oci:{source}", f"oci:{dest}", ["latest", "v2.*"])
    report = await mirror.sync()
    assert report.tags_synced == ["latest", "v2.0-rc1"]
    assert set(layout_tags(dest)) == {"latest", "v2.0-rc1"}
    assert mirror.tags == ["latest", "v2.*"]


def test_invalid_settings_raise_when_the_mirror_is_created(tmp_path: Path):
    src, dst = f"oci:{tmp_path}/a", f"oci:{tmp_path}/b"
    with pytest.raises(InvalidPatternError, match=r"v3\.\[12"):
        Mirror(src, dst, "v3.[12")
    with pytest.raises(InvalidPatternError):
        AsyncMirror(src, dst, [])
    with pytest.raises(InvalidReferenceError, match="quay.io/app:v1"):
        Mirror("quay.io/app:v1", dst, "v*")
    with pytest.raises(InvalidReferenceError, match="names one image"):
        Mirror(src, f"{dst}:v1", "v*")
    with pytest.raises(InvalidConfigError, match="sometimes"):
        Mirror(src, dst, "v*", rollback="sometimes")
    with pytest.raises(InvalidConfigError, match="architecture"):
        Mirror(src, dst, "v*", architectures=["z80"])
    with pytest.raises(InvalidConfigError, match="concurrency"):
        Mirror(src, dst, "v*", concurrency=0)
    with pytest.raises(InvalidConfigError, match='referrers: "signed"'):
        Mirror(src, dst, "v*", referrers="signed")
    Mirror(src, dst, "v*", referrers="none")
    Mirror(src, dst, "v*", referrers="application/spdx+json, application/vnd.in-toto+json")
    with pytest.raises(InvalidConfigError, match="nothing to sync"):
        Mirror(src, src, "v*")
    with pytest.raises(TypeError):
        Mirror(src, dst, "v*", unknown_option=1)


def test_credentials_never_show(tmp_path: Path):
    mirror = Mirror(
        "127.0.0.1:5000/app",
        f"oci:{tmp_path}",
        "v*",
        source_credentials=("robot", "s3cr3t-pa55"),
    )
    assert "s3cr3t" not in repr(mirror)
    assert repr(mirror) == f"Mirror('127.0.0.1:5000/app' -> 'oci:{tmp_path}', tags=['v*'])"


def test_the_ssrf_guard_is_off_by_default_and_when_on_refuses_a_loopback_source(tmp_path: Path):
    source, dest = "127.0.0.1:9/src/app", f"oci:{tmp_path / 'out'}"
    report = Mirror(source, dest, "v1", ssrf_guard=True).sync()
    assert report.outcome == "failed"
    assert "SSRF guard refused 127.0.0.1: 127.0.0.1 is 127.0.0.1 (loopback)" in report.error
    assert "allow-list" in report.error
    with pytest.raises(InvalidConfigError, match=r'ssrf_allow: SSRF guard allow-list entry "10.0.0.0/99"'):
        Mirror(source, dest, "v1", ssrf_guard=True, ssrf_allow=["10.0.0.0/99"])
    with pytest.raises(InvalidConfigError, match="while the guard is off"):
        Mirror(source, dest, "v1", ssrf_allow=["127.0.0.1"])
    # Allowed, the address is contacted (nothing listens there): the failure is not the guard's.
    allowed = Mirror(source, dest, "v1", ssrf_guard=True, ssrf_allow=["127.0.0.0/8"]).sync()
    assert allowed.outcome == "failed"
    assert "SSRF guard" not in allowed.error
