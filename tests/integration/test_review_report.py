"""The review quality report on crafted reviews: counts per reviewer and model, since, plot and status."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.errors import ReviewError
from dataengine.review import (
    export_for_review,
    import_reviews,
    open_task_status,
    plot_edit_rate,
    report_summary,
    review_report,
)
from dataengine.review.platforms.local import done_key, read_task

# The clip maker and the Label Studio server.
pytest_plugins = ["review_fixtures"]


def _review(ctx: Context, clip_id: str, reviewer: str, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    """A reviewer's done file: the task's pre-labels with ``edit`` applied to its frames."""
    doc: dict[str, Any] = read_task(ctx.store, clip_id, 1)["annotations"]
    edit(doc["frames"])
    doc["producer"] = {"reviewers": [reviewer]}
    ctx.store.write_bytes(done_key(clip_id, 1), json.dumps(doc).encode())


def _accept_all(frames: list[dict[str, Any]]) -> None:
    del frames  # the reviewer changes nothing


def _heavy_edit(frames: list[dict[str, Any]]) -> None:
    frame0, frame5, frame10 = frames
    frame0["boxes"][0]["xyxy"] = [6.0, 4.0, 22.0, 40.0]  # moved: IoU 14/18 ~= 0.78
    frame0["boxes"][1]["xyxy"] = [30.5, 20.0, 60.5, 44.0]  # nudged: IoU ~= 0.97, accepted
    frame5["boxes"] = []  # deleted
    frame10["boxes"] = [
        {"track": 9, "label": "wheelchair", "xyxy": [10, 10, 30, 30], "score": None, "origin": "human"},
        {"track": 10, "label": "bed", "xyxy": [40, 10, 60, 30], "score": None, "origin": "human"},
    ]


@pytest.fixture
def reviewed(ctx: Context, make_clip: Callable[..., str]) -> dict[str, str]:
    """Three clips from two model versions, reviewed by two people, one not reviewed yet."""
    clips = {
        "old": make_clip(ctx, 0, model="m-0001"),
        "new": make_clip(ctx, 20, model="m-0002"),
        "open": make_clip(ctx, 40, model="m-0002"),
    }
    export_for_review(ctx)
    _review(ctx, clips["old"], "ann-1", _heavy_edit)
    _review(ctx, clips["new"], "ann-2", _accept_all)
    assert sorted(import_reviews(ctx).imported) == sorted([clips["old"], clips["new"]])
    return clips


def test_report_counts_per_reviewer_and_model_on_crafted_reviews(
    ctx: Context, reviewed: dict[str, str]
) -> None:
    report = review_report(ctx)
    assert (report.reviews, report.boxes_changed) == (2, 4)
    heavy = report.by_reviewer["ann-1"]
    counts = (heavy.reviews, heavy.accepted, heavy.moved, heavy.deleted, heavy.added, heavy.relabelled)
    assert counts == (1, 1, 1, 1, 2, 0)
    # 3 pre-labels, 2 kept (1 accepted + 1 moved); 4 reviewed boxes, 2 of them found by the model.
    assert heavy.precision == pytest.approx(2 / 3)
    assert heavy.recall == pytest.approx(2 / 4)
    assert heavy.edit_rate == pytest.approx(4 / 3)
    assert heavy.seconds is None
    assert heavy.boxes_per_hour is None
    light = report.by_reviewer["ann-2"]
    assert (light.accepted, light.precision, light.recall, light.edit_rate) == (3, 1.0, 1.0, 0.0)
    assert report.by_model["m-0001"].edit_rate == pytest.approx(4 / 3)
    assert report.by_model["m-0002"].edit_rate == 0.0  # the newer model needed no edits
    assert report.to_dict()["by_reviewer"]["ann-1"]["added"] == 2
    summary = report_summary(report)
    assert "reviewer ann-1: 1 review(s), accepted 1, moved 1, deleted 1, added 2" in summary
    assert "model m-0002" in summary
    assert "edit rate 0%" in summary


def test_report_since_leaves_older_reviews_out(ctx: Context, reviewed: dict[str, str]) -> None:
    later = review_report(ctx, since=datetime.now(UTC) + timedelta(minutes=5))
    assert (later.reviews, later.by_reviewer, later.by_model) == (0, {}, {})
    assert len(later.open) == 1  # open tasks are listed whatever the date
    earlier = review_report(ctx, since=datetime.now(UTC) - timedelta(days=1))
    assert earlier.reviews == 2


def test_report_cli_plots_the_edit_rate_per_model(
    ctx: Context, reviewed: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    out = tmp_path / "report.png"
    result = CliRunner().invoke(app, ["review", "report", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["plot"] == str(out)
    assert doc["reviews"] == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    since = CliRunner().invoke(app, ["review", "report", "--since", "2999-01-01"])
    assert since.exit_code == 0
    assert "0 review(s) imported since 2999-01-01" in since.stdout
    status = CliRunner().invoke(app, ["review", "status", "--json"])
    ((row,),) = [json.loads(status.stdout)]
    assert (row["clip_id"], row["status"]) == (reviewed["open"], "pending")
    assert row["url"].endswith(f"review/local/tasks/{reviewed['open']}/v0001.json")


def test_status_and_plot_without_reviews(ctx: Context, make_clip: Callable[..., str], tmp_path: Path) -> None:
    clip_id = make_clip(ctx, 0)
    assert open_task_status(ctx) == []
    export_for_review(ctx)
    assert [r["status"] for r in open_task_status(ctx)] == ["pending"]
    _review(ctx, clip_id, "ann-1", _accept_all)
    assert [r["status"] for r in open_task_status(ctx)] == ["completed"]
    with pytest.raises(ReviewError, match="nothing to plot"):
        plot_edit_rate(review_report(ctx), tmp_path / "x.png")
