"""Inputs that cannot be read: each is quarantined with its reason, and the rest of the batch goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_process import run_cli
from dataengine.context import Context
from dataengine.ingest import discovery, hashcache, ingest, prepare, probe
from dataengine.lineage.quarantine import list_quarantine
from dataengine.synthetic import SyntheticScene, render_video, write_landing


def _good(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / "inputs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    render_video(path, scene=SyntheticScene(seed=seed, n_frames=10, fps=10.0))
    return path


def test_folders_links_pipes_and_vanishing_files_are_quarantined(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "inputs"
    first = _good(tmp_path, "first.mp4", 51)
    folder = inputs / "folder.mp4"
    folder.mkdir()
    link = inputs / "link.mp4"
    link.symlink_to(inputs / "gone.mp4")
    pipe = inputs / "pipe.mp4"
    os.mkfifo(pipe)
    vanishing = _good(tmp_path, "vanishing.mp4", 52)
    last = _good(tmp_path, "last.mp4", 53)
    real_sniff = probe.sniff

    def vanish_first(path: Path, *, name: str) -> None:
        if path == vanishing:
            path.unlink()  # gone between hashing it and reading it for the cut
        real_sniff(path, name=name)

    monkeypatch.setattr(prepare, "sniff", vanish_first)
    named = [str(p) for p in (first, folder, link, pipe, vanishing, last)]

    report = ingest(ctx, named, clip_seconds=1.0)

    assert len(report.videos) == 2
    assert len(report.clips) == 2
    reasons = {item.input: item.reason for item in report.quarantined}
    assert reasons == {
        str(folder): f"{folder} is a directory, not a video file",
        str(link): f"{link} is a broken symbolic link (to {inputs / 'gone.mp4'})",
        str(pipe): f"{pipe} is not a regular file (a pipe, socket or device)",
        f"file://{vanishing}": f"file://{vanishing} disappeared before it could be read",
    }
    with ctx.db.session() as session:
        assert sorted(item.input for item in list_quarantine(session)) == sorted(reasons)


def test_a_landing_file_gone_since_the_listing_is_quarantined(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = write_landing(ctx.store, n_videos=3, seed=54, seconds=1.0, with_events=False)
    real = hashcache.listing

    def listed_then_deleted(store: object, prefix: str) -> dict[str, str | None]:
        found = real(ctx.store, prefix)
        ctx.store.delete(keys[1])
        return found

    monkeypatch.setattr(discovery, "listing", listed_then_deleted)
    report = ingest(ctx, clip_seconds=1.0)
    assert len(report.videos) == 2
    [refused] = report.quarantined
    assert refused.input == keys[1]
    assert "does not exist" in refused.reason


def test_files_without_read_permission_are_quarantined_and_the_batch_goes_on(tmp_path: Path) -> None:
    """In a child process that obeys file permissions (root too): the case of the issue."""
    store_root = tmp_path / "store"
    env = {
        "DATAENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}",
        "DATAENGINE_STORAGE_URL": f"file://{store_root}",
        "DATAENGINE_CLIP_SECONDS": "1",
    }
    landing = store_root / "landing" / "cam01" / "2026-11-22"
    landing.mkdir(parents=True)
    for name, seed in (("080000.mp4", 55), ("090000.mp4", 56), ("100000.mp4", 57)):
        render_video(landing / name, scene=SyntheticScene(seed=seed, n_frames=10, fps=10.0))
    (landing / "080000.mp4").chmod(0)
    outside = _good(tmp_path, "outside.mp4", 58)
    outside.chmod(0)

    run = run_cli(["ingest", "--json"], env, obey_permissions=True)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert len(report["videos"]) == 2
    [refused] = report["quarantined"]
    key_uri = f"file://{landing / '080000.mp4'}"
    assert refused["input"] in (key_uri, "landing/cam01/2026-11-22/080000.mp4")
    assert refused["reason"].endswith("cannot be read: Permission denied"), refused

    named = run_cli(["ingest", str(outside)], env, obey_permissions=True)
    assert named.returncode == 1  # nothing of what was asked could be done
    assert "Traceback" not in named.stdout + named.stderr
    assert f"file://{outside} cannot be read: Permission denied" in named.stdout
