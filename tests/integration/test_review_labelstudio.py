"""The ``labelstudio`` platform against a real Label Studio server on localhost (``make labelstudio``).

The reviewer is simulated through the API: an annotation is submitted with one box moved, one deleted
and one added, as a person would in the editor.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from dataengine.context import Context
from dataengine.formats import list_versions, load_annotations
from dataengine.lineage.clips import get_clip
from dataengine.lineage.models import QuarantineItem
from dataengine.review import export_for_review, import_reviews, review_report
from dataengine.review.platforms.labelstudio import LabelStudioClient, LabelStudioPlatform

# The clip maker and the Label Studio server.
pytest_plugins = ["review_fixtures"]


@pytest.fixture
def ls_ctx(ctx: Context, labelstudio_server: dict[str, Any]) -> Context:
    """The test context on the real server, with a project of its own."""
    settings = ctx.settings.model_copy(
        update={
            "review_platform": "labelstudio",
            "labelstudio_url": labelstudio_server["url"],
            "labelstudio_api_key": SecretStr(labelstudio_server["token"]),
            "labelstudio_project_title": f"test {uuid.uuid4().hex[:8]}",
            "labelstudio_document_root": labelstudio_server["document_root"],
        }
    )
    return Context(settings=settings, store=ctx.store, db=ctx.db, run_id="test/run", actor="tester")


def _api(ls_ctx: Context) -> LabelStudioClient:
    key = ls_ctx.settings.labelstudio_api_key
    assert ls_ctx.settings.labelstudio_url
    assert key is not None
    return LabelStudioClient(ls_ctx.settings.labelstudio_url, key.get_secret_value())


def _submit(ls_ctx: Context, task_id: str, result: list[dict[str, Any]], lead_time: float) -> None:
    """What a reviewer's Submit button does."""
    _api(ls_ctx).call("POST", f"/api/tasks/{task_id}/annotations", {"result": result, "lead_time": lead_time})


def _stage(ctx: Context, clip_id: str) -> str:
    with ctx.db.session() as session:
        return get_clip(session, clip_id).stage


def test_labelstudio_round_trip_on_a_real_server(ls_ctx: Context, make_clip: Callable[..., str]) -> None:
    clip_id = make_clip(ls_ctx, 0)
    report = export_for_review(ls_ctx)
    task_id = report.tasks[clip_id]
    task = _api(ls_ctx).call("GET", f"/api/tasks/{task_id}")
    assert task["data"]["clip_id"] == clip_id
    assert task["data"]["fps"] == 10.0
    (prediction,) = task["predictions"]
    person = next(r for r in prediction["result"] if r["id"] == "dt1")
    # Clip frames 0 and 5 are Label Studio frames 1 and 6, at 0.0 s and 0.5 s.
    assert [(k["frame"], k["time"]) for k in person["value"]["sequence"]] == [(1, 0.0), (6, 0.5)]
    platform = LabelStudioPlatform(ls_ctx)
    assert platform.review_status([task_id]) == {task_id: "pending"}
    assert export_for_review(ls_ctx, clip_ids=[clip_id]).exported == []  # idempotent
    assert import_reviews(ls_ctx).imported == []  # nothing reviewed yet

    result = copy.deepcopy(prediction["result"])
    moved = next(r for r in result if r["id"] == "dt1")
    moved["value"]["sequence"][1]["x"] += 3.125  # frame 6 (clip frame 5): 2 px to the right
    result = [r for r in result if r["id"] != "dt2"]  # the bed is deleted
    added = copy.deepcopy(moved)
    added["id"] = "rv1"
    added["value"]["labels"] = ["wheelchair"]
    added["value"]["sequence"] = [
        {"frame": 11, "enabled": False, "x": 25.0, "y": 50.0, "width": 25.0, "height": 25.0, "time": 1.0}
    ]
    result.append(added)
    _submit(ls_ctx, task_id, result, lead_time=42.5)
    assert platform.review_status([task_id]) == {task_id: "completed"}

    imported = import_reviews(ls_ctx)
    assert imported.imported == [clip_id]
    assert imported.versions == {clip_id: 2}
    frame0, frame5, frame10 = load_annotations(ls_ctx.store, clip_id, 2).frames
    assert [(b.label, b.track, b.origin, b.score) for b in frame0.boxes] == [("person", 1, "detector", 0.9)]
    (person5,) = frame5.boxes
    assert person5.xyxy == pytest.approx((8.0, 4.0, 24.0, 40.0))
    assert (person5.track, person5.origin) == (1, "human")
    (wheelchair,) = frame10.boxes  # the added box lands on clip frame 10, Label Studio frame 11
    assert wheelchair.xyxy == pytest.approx((16.0, 24.0, 32.0, 36.0))
    assert (wheelchair.label, wheelchair.origin, wheelchair.track) == ("wheelchair", "human", 3)
    assert _stage(ls_ctx, clip_id) == "reviewed"

    assert import_reviews(ls_ctx).imported == []  # a re-import makes no new version
    assert list_versions(ls_ctx.store, clip_id) == [1, 2]
    by_reviewer = review_report(ls_ctx).by_reviewer
    (name,) = by_reviewer
    quality = by_reviewer[name]
    assert name.endswith("@example.com")
    assert (quality.accepted, quality.moved, quality.deleted, quality.added) == (1, 1, 1, 1)
    assert quality.seconds == 42.5
    assert quality.boxes_per_hour == pytest.approx(3600 * 3 / 42.5)


def test_labelstudio_malformed_annotation_keeps_the_clip_in_review(
    ls_ctx: Context, make_clip: Callable[..., str]
) -> None:
    clip_id = make_clip(ls_ctx, 40)
    task_id = export_for_review(ls_ctx).tasks[clip_id]
    bad = [
        {
            "id": "dt1",
            "from_name": "box",
            "to_name": "video",
            "type": "videorectangle",
            "value": {"labels": ["person"], "sequence": [{"frame": 1, "enabled": True}]},
        }
    ]
    _submit(ls_ctx, task_id, bad, lead_time=3.0)
    report = import_reviews(ls_ctx)
    ((failed, error),) = report.failed
    assert failed == clip_id
    assert f"clip {clip_id}" in error
    assert "sequence[0]" in error
    assert _stage(ls_ctx, clip_id) == "in_review"
    assert list_versions(ls_ctx.store, clip_id) == [1]
    with ls_ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(QuarantineItem)) == 1
    assert import_reviews(ls_ctx).still_refused == [clip_id]
