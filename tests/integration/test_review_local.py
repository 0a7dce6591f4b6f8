"""The review stage on the ``local`` platform: export, import, refusals, reruns and the SIMULATED reviewer.

Clips are set up by hand (frames, meta.json, an autolabel v1 and its lineage rows) in a local-folder
store with SQLite, so nothing here depends on ingest or autolabel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from review_fixtures import CLASSES, HEIGHT, MODEL, SAMPLED, VIDEO_ID, WIDTH, add_autolabelled_clip
from sqlalchemy import func, select

from dataengine.clips import clip_id_for, frame_key, frame_name
from dataengine.context import Context
from dataengine.errors import ConfigError, ReviewError
from dataengine.formats import Box, ClipAnnotations, Frame, list_versions, load_annotations
from dataengine.lineage.annotations import latest_annotation
from dataengine.lineage.clips import clip_events, get_clip
from dataengine.lineage.db import Database
from dataengine.lineage.models import ClipEvent, QuarantineItem
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.reviews import review_tasks
from dataengine.review import (
    ReviewPlatform,
    box_changes,
    export_for_review,
    get_platform,
    import_reviews,
    report_summary,
    review_report,
)
from dataengine.review import importing as importing_module
from dataengine.review.platforms.local import LocalPlatform, done_key, read_task, task_key
from dataengine.storage import ObjectStore
from dataengine.synthetic import ground_truth_key
from dataengine.synthetic.reviewer import SIMULATED_REVIEWER, SimulatedPlatform
from progress_log import ProgressLog

VIDEO_KEY = "landing/cam01/2026-11-22/080000.mp4"


def _add_clip(ctx: Context, start_frame: int) -> str:
    """A clip at stage ``autolabelled`` with frames, meta.json and an autolabel v1 registered."""
    return add_autolabelled_clip(ctx, start_frame, source_key=VIDEO_KEY)


def _stage(ctx: Context, clip_id: str) -> str:
    with ctx.db.session() as session:
        return get_clip(session, clip_id).stage


def _events(ctx: Context, clip_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    with ctx.db.session() as session:
        return [(e.stage, e.status, e.details) for e in clip_events(session, clip_id)]


def _tasks(ctx: Context) -> list[tuple[str, str, int, int | None, str | None]]:
    with ctx.db.session() as session:
        return [
            (t.clip_id, t.status, t.exported_version, t.imported_version, t.external_id)
            for t in review_tasks(session)
        ]


def _write_done(ctx: Context, clip_id: str, doc: dict[str, Any] | bytes) -> str:
    key = done_key(clip_id, 1)
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    ctx.store.write_bytes(key, data)
    return ctx.store.uri(key)


def _reviewed_doc(ctx: Context, clip_id: str) -> dict[str, Any]:
    """What a person would write: the task's pre-labels with one box moved, one added, one deleted."""
    doc: dict[str, Any] = read_task(ctx.store, clip_id, 1)["annotations"]
    frame0, frame5, frame10 = doc["frames"]
    frame0["boxes"][0]["xyxy"] = [6.0, 4.0, 22.0, 40.0]  # moved: IoU 14/18 with the pre-label
    frame0["boxes"][0].update(origin="human", score=None)
    frame5["boxes"] = []  # deleted a false positive
    frame10["boxes"] = [
        {"track": 7, "label": "wheelchair", "xyxy": [10, 10, 30, 30], "score": None, "origin": "human"}
    ]
    doc["producer"] = {"reviewers": ["ann-7"]}
    return doc


@pytest.fixture
def s3_ctx(ctx: Context, s3_store: ObjectStore) -> Context:
    """The test context with its objects on the moto S3 server."""
    return Context(settings=ctx.settings, store=s3_store, db=ctx.db, run_id="test/run", actor="tester")


@pytest.fixture
def pg_ctx(ctx: Context, db: Database) -> Context:
    """The test context on each lineage backend (SQLite, and PostgreSQL when it is reachable)."""
    return Context(settings=ctx.settings, store=ctx.store, db=db, run_id="test/run", actor="tester")


# Platform interface ---------------------------------------------------------------------------


def test_get_platform_defaults_to_local_and_refuses_others(ctx: Context) -> None:
    platform = get_platform(ctx)
    assert isinstance(platform, LocalPlatform)
    assert isinstance(platform, ReviewPlatform)
    assert platform.name == "local"
    encord = get_platform(ctx, "encord")  # connects on first use only
    assert isinstance(encord, ReviewPlatform)
    assert encord.name == "encord"
    labelstudio = get_platform(ctx, "labelstudio")  # reads export files without a server
    with pytest.raises(ReviewError, match="DATAENGINE_LABELSTUDIO_URL"):
        labelstudio.review_status(["1"])
    with pytest.raises(ConfigError, match="unknown review platform 'nope'"):
        get_platform(ctx, "nope")
    with pytest.raises(ReviewError, match=r"cannot import the label export rows\.json"):
        import_reviews(ctx, file="rows.json")


def test_empty_store_exports_and_imports_nothing(ctx: Context) -> None:
    exported = export_for_review(ctx)
    imported = import_reviews(ctx)
    assert (exported.exported, exported.skipped, exported.platform) == ([], [], "local")
    assert (imported.imported, imported.failed, imported.boxes_changed) == ([], [], 0)
    assert review_report(ctx).open == []
    assert "no review tasks yet" in report_summary(review_report(ctx))


def test_export_and_import_count_their_clips_for_a_progress_bar(ctx: Context) -> None:
    first, second = _add_clip(ctx, 0), _add_clip(ctx, 20)
    exporting = ProgressLog()
    export_for_review(ctx, progress=exporting)
    assert (exporting.phases, exporting.done) == ([("review export to local", 2)], 2)
    again = ProgressLog()
    export_for_review(ctx, progress=again)  # nothing is left in stage autolabelled
    assert (again.phases, again.done) == ([("review export to local", 0)], 0)

    _write_done(ctx, first, _reviewed_doc(ctx, first))
    importing = ProgressLog()
    report = import_reviews(ctx, progress=importing)
    assert report.imported == [first]
    # One of the two open tasks was finished: the bar ends at 1/2.
    assert (importing.phases, importing.done) == ([("review import from local", 2)], 1)
    assert second not in report.imported


# Export ---------------------------------------------------------------------------------------


def test_export_writes_tasks_rows_and_stage_and_is_idempotent(pg_ctx: Context) -> None:
    ctx = pg_ctx
    clips = [_add_clip(ctx, 0), _add_clip(ctx, 20)]
    report = export_for_review(ctx)
    assert report.exported == clips
    assert report.tasks == {clip: f"{clip}/v0001" for clip in clips}
    task = read_task(ctx.store, clips[0], 1)
    assert task["exported_version"] == 1
    assert task["done_key"] == f"review/local/done/{clips[0]}/v0001.json"
    assert task["frame_uris"] == {str(i): ctx.store.uri(frame_key(clips[0], i)) for i in SAMPLED}
    assert task["annotations"] == load_annotations(ctx.store, clips[0], 1).to_dict()
    assert _tasks(ctx) == [(clip, "exported", 1, None, f"{clip}/v0001") for clip in clips]
    assert [_stage(ctx, clip) for clip in clips] == ["in_review", "in_review"]
    assert _events(ctx, clips[0])[-1] == (
        "in_review",
        "ok",
        {"platform": "local", "external_id": f"{clips[0]}/v0001", "exported_version": 1},
    )
    task_bytes = ctx.store.read_bytes(task_key(clips[0], 1))

    again = export_for_review(ctx)
    assert again.exported == []
    assert len(_tasks(ctx)) == 2
    assert len(_events(ctx, clips[0])) == 3  # ingested, autolabelled, in_review: no new event
    assert ctx.store.read_bytes(task_key(clips[0], 1)) == task_bytes
    named = export_for_review(ctx, clip_ids=[clips[0], "ffffffffffffffff-0000000"])
    assert named.exported == []
    assert named.reasons == {
        clips[0]: "stage in_review is not one of autolabelled, reviewed",
        "ffffffffffffffff-0000000": "no such clip in the lineage database",
    }


def test_export_of_named_clips_only(ctx: Context) -> None:
    clips = [_add_clip(ctx, 0), _add_clip(ctx, 20)]
    report = export_for_review(ctx, clip_ids=[clips[1]])
    assert report.exported == [clips[1]]
    assert [_stage(ctx, clip) for clip in clips] == ["autolabelled", "in_review"]
    assert not ctx.store.exists(task_key(clips[0], 1))


# Import ---------------------------------------------------------------------------------------


def test_import_of_a_hand_written_review(pg_ctx: Context) -> None:
    ctx = pg_ctx
    clip, waiting = _add_clip(ctx, 0), _add_clip(ctx, 20)
    export_for_review(ctx)
    _write_done(ctx, clip, _reviewed_doc(ctx, clip))

    report = import_reviews(ctx)
    assert (report.imported, report.versions, report.failed, report.simulated) == (
        [clip],
        {clip: 2},
        [],
        False,
    )
    assert report.changes == {clip: 3}  # one moved, one deleted, one added
    assert report.boxes_changed == 3
    v2 = load_annotations(ctx.store, clip, 2)
    assert (v2.source, v2.parent_version, v2.classes) == ("review", 1, CLASSES)
    assert v2.producer["models"] == [MODEL]
    assert v2.producer["platform"] == "local"
    assert v2.producer["reviewers"] == ["ann-7"]
    assert "simulated" not in v2.producer
    assert [len(f.boxes) for f in v2.frames] == [2, 0, 1]
    assert v2.frames[2].boxes[0] == Box("wheelchair", (10.0, 10.0, 30.0, 30.0), 7, None, "human")
    assert (_stage(ctx, clip), _stage(ctx, waiting)) == ("reviewed", "in_review")
    assert _tasks(ctx)[0] == (clip, "imported", 1, 2, f"{clip}/v0001")
    stage, status, details = _events(ctx, clip)[-1]
    assert (stage, status) == ("reviewed", "ok")
    assert details["boxes_changed"] == 3
    assert details["version"] == 2
    assert details["reviewers"] == ["ann-7"]
    assert details["changes"] == {
        "added": 1,
        "deleted": 1,
        "moved": 1,
        "relabelled": 0,
        "accepted": 1,
        "total": 3,
    }
    with ctx.db.session() as session:
        row = latest_annotation(session, clip)
        assert row is not None
        assert (row.version, row.source, row.parent_version, row.n_boxes) == (2, "review", 1, 3)

    rerun = import_reviews(ctx)
    assert (rerun.imported, rerun.failed) == ([], [])
    assert list_versions(ctx.store, clip) == [1, 2]
    assert len(_events(ctx, clip)) == 4

    summary = review_report(ctx)
    assert summary.platforms == {"local": {"exported": 1, "imported": 1, "failed": 0}}
    assert [task.clip_id for task in summary.open] == [waiting]
    assert (summary.reviews, summary.boxes_changed, summary.simulated_reviews) == (1, 3, 0)


def test_accepting_the_prelabels_unchanged_changes_zero_boxes(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)
    export_for_review(ctx)
    doc = read_task(ctx.store, clip, 1)["annotations"]
    doc["producer"] = {"reviewers": ["ann-1"]}
    _write_done(ctx, clip, doc)
    report = import_reviews(ctx)
    assert (report.imported, report.changes, report.boxes_changed) == ([clip], {clip: 0}, 0)
    assert load_annotations(ctx.store, clip, 2).frames[2].boxes == []  # the negative frame stays negative


MALFORMATIONS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "inverted box": (
        lambda d: d["frames"][0]["boxes"][0].update(xyxy=[30, 4, 20, 40]),
        "$.frames[0].boxes[0].xyxy",
    ),
    "unknown label": (lambda d: d["frames"][0]["boxes"][0].update(label="dog"), "$.frames[0].boxes[0].label"),
    "missing frame": (lambda d: d["frames"].pop(1), "$.frames"),
    "other clip": (lambda d: d.update(clip_id="ffffffffffffffff-0000000"), "$.clip_id"),
    "new class": (
        lambda d: (d["classes"].append("dog"), d["frames"][0]["boxes"][0].update(label="dog")),
        "$.frames[0].boxes[0].label",
    ),
    "resized frame": (lambda d: d["frames"][2].update(width=WIDTH * 2), "$.frames[2].width"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMATIONS))
def test_malformed_review_is_refused_quarantined_and_retried_when_fixed(ctx: Context, kind: str) -> None:
    bad, good = _add_clip(ctx, 0), _add_clip(ctx, 20)
    export_for_review(ctx)
    spoil, field_path = MALFORMATIONS[kind]
    doc = _reviewed_doc(ctx, bad)
    spoil(doc)
    bad_uri = _write_done(ctx, bad, doc)
    _write_done(ctx, good, _reviewed_doc(ctx, good))

    report = import_reviews(ctx)
    assert report.imported == [good]
    assert [clip for clip, _ in report.failed] == [bad]
    message = report.failed[0][1]
    assert message.startswith(f"{bad_uri}: invalid annotation at {field_path}:")
    assert list_versions(ctx.store, bad) == [1]
    assert _stage(ctx, bad) == "in_review"
    with ctx.db.session() as session:
        items = list_quarantine(session)
        assert [(q.kind, q.input, q.clip_id, q.stage, q.reason) for q in items] == [
            ("annotation", bad_uri, None, "review", message)
        ]
    stage, status, details = _events(ctx, bad)[-1]
    assert (stage, status, details["input"], details["field"]) == ("reviewed", "failed", bad_uri, field_path)
    assert _tasks(ctx)[0][:2] == (bad, "exported")
    n_events = len(_events(ctx, bad))

    rerun = import_reviews(ctx)  # the same bad bytes: nothing new is recorded
    assert (rerun.imported, rerun.failed, rerun.still_refused) == ([], [], [bad])
    assert len(_events(ctx, bad)) == n_events
    assert "1 with a refused review" in report_summary(review_report(ctx))

    _write_done(ctx, bad, _reviewed_doc(ctx, bad))
    fixed = import_reviews(ctx)
    assert (fixed.imported, fixed.versions, fixed.failed) == ([bad], {bad: 2}, [])
    assert _stage(ctx, bad) == "reviewed"


def test_unreadable_review_file_is_refused_at_the_root(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)
    export_for_review(ctx)
    uri = _write_done(ctx, clip, b"{not json")
    report = import_reviews(ctx)
    assert report.failed == [(clip, report.failed[0][1])]
    assert report.failed[0][1].startswith(f"{uri}: invalid annotation at $: not valid JSON")
    assert list_versions(ctx.store, clip) == [1]


def test_import_interrupted_before_lineage_reuses_the_written_version(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = _add_clip(ctx, 0)
    export_for_review(ctx)
    _write_done(ctx, clip, _reviewed_doc(ctx, clip))

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(importing_module, "_register", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            import_reviews(ctx)
    assert list_versions(ctx.store, clip) == [1, 2]
    assert _stage(ctx, clip) == "in_review"

    report = import_reviews(ctx)
    assert report.versions == {clip: 2}
    assert list_versions(ctx.store, clip) == [1, 2]
    assert _tasks(ctx)[0][:4] == (clip, "imported", 1, 2)


def test_done_file_without_an_open_task_is_ignored(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)  # never exported
    ctx.store.write_bytes(done_key(clip, 1), b"{}")
    ctx.store.write_bytes("review/local/done/stray.json", b"{}")
    report = import_reviews(ctx)
    assert (report.imported, report.failed) == ([], [])
    assert _stage(ctx, clip) == "autolabelled"


# The SIMULATED reviewer -----------------------------------------------------------------------


def _write_ground_truth(ctx: Context, n_frames: int = 50, scale: int = 2) -> ClipAnnotations:
    """A whole-video ground truth at twice the sampled frame size; frame ``i`` has a person at x=i."""
    frames = [
        Frame(
            index=i,
            image=frame_name(i),
            width=WIDTH * scale,
            height=HEIGHT * scale,
            boxes=[
                Box("person", (2.0 * i, 10.0, 2.0 * i + 20.0, 80.0), track=3, score=None, origin="synthetic"),
                Box("bed", (60.0, 40.0, 120.0, 90.0), track=4, score=None, origin="synthetic"),
            ]
            if i % 2 == 0
            else [],
        )
        for i in range(n_frames)
    ]
    truth = ClipAnnotations(
        clip_id=clip_id_for(VIDEO_ID, 0), version=1, source="synthetic", classes=CLASSES, frames=frames
    )
    ctx.store.write_bytes(ground_truth_key(VIDEO_KEY), truth.to_json_bytes())
    return truth


def test_simulated_review_maps_ground_truth_onto_clip_frames(ctx: Context) -> None:
    clip = _add_clip(ctx, 20)
    _write_ground_truth(ctx)
    exported = export_for_review(ctx, platform="simulated")
    assert (exported.platform, exported.tasks) == ("simulated", {clip: f"{clip}/v0001"})
    assert isinstance(get_platform(ctx, "simulated"), SimulatedPlatform)

    report = import_reviews(ctx, platform="simulated")
    assert (report.simulated, report.simulated_clips, report.imported) == (True, [clip], [clip])
    assert "SIMULATED" in report.summary()
    v2 = load_annotations(ctx.store, clip, 2)
    assert v2.producer["simulated"] is True
    assert v2.producer["reviewers"] == [SIMULATED_REVIEWER]
    assert v2.producer["models"] == [MODEL]
    # Clip frame i is source frame 20 + i; boxes are halved to the 64x48 sampled frames.
    frame0, frame5, frame10 = v2.frames
    assert frame0.boxes == [
        Box("person", (20.0, 5.0, 30.0, 40.0), track=3, score=None, origin="human"),
        Box("bed", (30.0, 20.0, 60.0, 45.0), track=4, score=None, origin="human"),
    ]
    assert frame5.boxes == []  # source frame 25 is empty in the ground truth
    assert frame10.boxes[0].xyxy == (30.0, 5.0, 40.0, 40.0)
    expected = box_changes(load_annotations(ctx.store, clip, 1), v2).total
    assert report.changes == {clip: expected}
    assert expected > 0
    stage, _, details = _events(ctx, clip)[-1]
    assert (stage, details["simulated"], details["reviewers"]) == ("reviewed", True, [SIMULATED_REVIEWER])
    assert review_report(ctx).platforms["simulated"]["imported"] == 1
    assert review_report(ctx).simulated_reviews == 1

    again = import_reviews(ctx, platform="simulated")
    assert (again.simulated, again.simulated_clips, again.imported) == (False, [], [])
    assert list_versions(ctx.store, clip) == [1, 2]


def test_simulated_reviewer_leaves_a_persons_local_task_alone(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)
    _write_ground_truth(ctx)
    export_for_review(ctx)
    person = _write_done(ctx, clip, _reviewed_doc(ctx, clip))
    before = ctx.store.read_bytes(ctx.store.key_of(person))
    report = import_reviews(ctx, platform="simulated")
    assert (report.imported, report.simulated_clips) == ([], [])
    assert ctx.store.read_bytes(ctx.store.key_of(person)) == before
    assert [t[1] for t in _tasks(ctx)] == ["exported"]  # the local task, still open
    imported = import_reviews(ctx)
    assert (imported.imported, imported.simulated) == ([clip], False)
    assert load_annotations(ctx.store, clip, 2).producer.get("simulated") is None


def test_simulated_export_without_ground_truth_names_the_sidecar(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)
    report = export_for_review(ctx, platform="simulated")
    assert report.exported == []
    [(failed_clip, error)] = report.failed
    assert failed_clip == clip
    assert "080000.gt.json" in error
    assert clip in error
    assert _stage(ctx, clip) == "autolabelled"
    assert _tasks(ctx) == []


def test_quarantine_and_event_counts_stay_flat_over_reruns(ctx: Context) -> None:
    clip = _add_clip(ctx, 0)
    export_for_review(ctx)
    _write_done(ctx, clip, b"[]")
    for _ in range(3):
        import_reviews(ctx)
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(QuarantineItem)) == 1
        failed = select(func.count()).select_from(ClipEvent).where(ClipEvent.status == "failed")
        assert session.scalar(failed) == 1


@pytest.mark.s3
def test_export_and_import_on_s3(s3_ctx: Context) -> None:
    ctx = s3_ctx
    clip = _add_clip(ctx, 0)
    assert export_for_review(ctx).exported == [clip]
    assert ctx.store.exists(task_key(clip, 1))
    _write_done(ctx, clip, _reviewed_doc(ctx, clip))
    report = import_reviews(ctx)
    assert (report.imported, report.boxes_changed) == ([clip], 3)
    assert load_annotations(ctx.store, clip, 2).producer["reviewers"] == ["ann-7"]
    assert import_reviews(ctx).imported == []
