"""Day one in review: labelling from scratch (empty pre-labels) and label export files row by row.

Clips are set up by hand (review_fixtures) in a local-folder store with SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from review_fixtures import CLASSES, HEIGHT, SAMPLED, WIDTH, add_autolabelled_clip, prelabels
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.errors import FormatError
from dataengine.formats import ClipAnnotations, list_versions, load_annotations, save_annotations
from dataengine.lineage.annotations import annotation_versions
from dataengine.lineage.clips import clip_events, get_clip
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.reviews import review_tasks
from dataengine.review import export_for_review, import_reviews
from dataengine.review.empty import empty_labels
from dataengine.review.platforms.labelstudio_regions import prediction_result
from dataengine.review.platforms.local import done_key, read_task

runner = CliRunner()


def _stage(ctx: Context, clip_id: str) -> str:
    with ctx.db.session() as session:
        return get_clip(session, clip_id).stage


def _reviewer_draws(ctx: Context, clip_id: str) -> None:
    """A person labels the empty task from scratch: two boxes on frame 0, one on frame 5."""
    doc: dict[str, Any] = read_task(ctx.store, clip_id, 0)["annotations"]
    assert (doc["version"], doc["source"]) == (0, "none")
    assert [f["boxes"] for f in doc["frames"]] == [[], [], []]
    human = {"score": None, "origin": "human"}
    doc["frames"][0]["boxes"] = [
        {"track": 1, "label": "person", "xyxy": [4, 4, 20, 40], **human},
        {"track": 2, "label": "bed", "xyxy": [30, 20, 60, 44], **human},
    ]
    doc["frames"][1]["boxes"] = [{"track": 1, "label": "person", "xyxy": [6, 4, 22, 40], **human}]
    doc["producer"] = {"reviewers": ["ann-1"]}
    ctx.store.write_json(done_key(clip_id, 0), doc)


def test_without_a_model_selected_clips_go_to_review_empty_and_come_back_labelled(ctx: Context) -> None:
    clip = add_autolabelled_clip(ctx, 0, stage="selected")
    report = export_for_review(ctx, platform="local")
    assert (report.exported, report.empty) == ([clip], [clip])
    assert "1 without pre-labels (label from scratch)" in report.summary()
    assert _stage(ctx, clip) == "in_review"
    with ctx.db.session() as session:
        [task] = review_tasks(session, platform="local")
        assert (task.clip_id, task.exported_version) == (clip, 0)
    assert list_versions(ctx.store, clip) == []  # the empty pre-labels are not a label
    assert export_for_review(ctx, platform="local").exported == []  # a rerun exports nothing twice

    _reviewer_draws(ctx, clip)
    imported = import_reviews(ctx, platform="local")
    assert imported.imported == [clip]
    assert imported.changes == {clip: 3}  # three boxes added to nothing
    v1 = load_annotations(ctx.store, clip, 1)
    assert (v1.source, v1.parent_version, v1.producer["models"]) == ("review", None, [])
    assert [len(f.boxes) for f in v1.frames] == [2, 1, 0]  # frame 10: a labelled negative
    assert _stage(ctx, clip) == "reviewed"


def test_no_prelabels_sends_an_autolabelled_clip_empty(ctx: Context) -> None:
    clip = add_autolabelled_clip(ctx, 0)
    report = export_for_review(ctx, platform="local", prelabels=False)
    assert report.empty == [clip]
    assert read_task(ctx.store, clip, 0)["annotations"]["frames"][0]["boxes"] == []


def test_empty_prelabels_are_never_stored(ctx: Context) -> None:
    add_autolabelled_clip(ctx, 0, stage="selected")
    empty = empty_labels(ctx.store, add_autolabelled_clip(ctx, 20, stage="selected"), classes=CLASSES)
    assert [(f.index, f.width, f.height, f.boxes) for f in empty.frames] == [
        (i, WIDTH, HEIGHT, []) for i in SAMPLED
    ]
    with pytest.raises(FormatError, match="never stored"):
        save_annotations(ctx.store, empty)


def _ls_task(clip_id: str, *, task_id: int, annotated: bool = True) -> dict[str, Any]:
    """A task as Label Studio's JSON export writes it, reviewed in Label Studio before the engine."""
    labels = ClipAnnotations(
        clip_id=clip_id, version=1, source="autolabel", classes=CLASSES, frames=prelabels()
    )
    result = prediction_result(labels, fps=10.0, n_frames=20)
    annotation = {"id": 1, "result": result, "completed_by": 4, "was_cancelled": False, "updated_at": "2026"}
    return {
        "id": task_id,
        "data": {"video": f"/data/local-files/?d=store/clips/{clip_id}/clip.mp4"},
        "annotations": [annotation] if annotated else [],
    }


@pytest.fixture
def cli_env(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    return ctx


def test_a_label_studio_export_imports_every_good_row_and_names_the_others(
    cli_env: Context, tmp_path: Path
) -> None:
    ctx = cli_env
    known, other = add_autolabelled_clip(ctx, 0, stage="ingested"), add_autolabelled_clip(ctx, 20)
    rows = [
        _ls_task(known, task_id=11),
        {"foo": 1},
        17,
        _ls_task("ffffffffffffffff-0000000", task_id=12),
        _ls_task(other, task_id=13, annotated=False),
        {"id": 14, "data": {"video": "s3://bucket/elsewhere.mp4"}, "annotations": []},
    ]
    path = tmp_path / "project-1-at-2026.json"
    path.write_text(json.dumps(rows))
    result = runner.invoke(app, ["review", "import", "--platform", "labelstudio", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert (
        f"{path}: 6 row(s): imported 1 (0 review(s) of open labelstudio tasks, 1 as new labels"
        in result.output
    )
    assert "refused 4, skipped 1" in result.output
    assert f"refused {path} task 1: a task is a JSON object with a 'data' object" in result.output
    assert f"refused {path} task 2: a task is a JSON object" in result.output
    assert f"skipped {path} task 3 (clip ffffffffffffffff-0000000): no clip" in result.output
    assert f"refused {path} task 4 (clip {other}): it has no submitted annotation" in result.output
    assert f"refused {path} task 5: its data names no clip" in result.output

    v1 = load_annotations(ctx.store, known, 1)
    assert (v1.source, v1.parent_version, v1.n_boxes) == ("import", None, 3)
    assert (v1.producer["file"], v1.producer["row"], v1.producer["external_id"]) == (str(path), 0, "11")
    assert _stage(ctx, known) == "reviewed"
    with ctx.db.session() as session:
        [row] = annotation_versions(session, known)
        assert (row.source, row.version) == ("import", 1)
        event = clip_events(session, known)[-1]
        assert (event.stage, event.details["imported_from"], event.details["row"]) == (
            "reviewed",
            str(path),
            0,
        )
        refused = sorted(q.input for q in list_quarantine(session))
    assert refused == sorted([f"{path} task 1", f"{path} task 2", f"{path} task 4 (clip {other})",
                              f"{path} task 5"])  # fmt: skip
    assert _stage(ctx, other) == "autolabelled"  # untouched

    again = runner.invoke(
        app, ["review", "import", "--platform", "labelstudio", "--file", str(path), "--json"]
    )
    out = json.loads(again.stdout)
    assert out["imported"] == []
    assert out["already_imported"] == [
        {"row": f"{path} task 0 (clip {known})", "reason": "imported before as v1"}
    ]
    assert again.exit_code == 1  # nothing new, and some rows are refused
    assert list_versions(ctx.store, known) == [1]


def test_open_tasks_only_keeps_rows_without_a_task_out(cli_env: Context, tmp_path: Path) -> None:
    clip = add_autolabelled_clip(cli_env, 0, stage="ingested")
    path = tmp_path / "export.json"
    path.write_text(json.dumps([_ls_task(clip, task_id=3)]))
    result = runner.invoke(
        app, ["review", "import", "--platform", "labelstudio", "--file", str(path), "--open-tasks-only"]
    )
    assert result.exit_code == 1
    assert f"skipped {path} task 0 (clip {clip}): no open labelstudio review task (--open-tasks-only)" in (
        result.output
    )
    assert list_versions(cli_env.store, clip) == []
