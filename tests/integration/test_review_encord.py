"""The ``encord`` platform: export, status and import against a FAKE of Encord's servers, and file imports.

Encord's servers are unreachable from here, so ``FakeEncord`` stands in at the SDK's client seam: the
user client, project, storage folder and dataset are fakes, but the label rows are the SDK's real
``LabelRowV2`` objects, saved and read through the SDK's real ``Bundle`` over a fake project client
(``encord.client.EncordClientProject``'s ``create_label_rows``/``get_label_rows``/``save_label_rows``).
Every test that uses it says "fake" in its name.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import pytest
from encord import exceptions as enc_errors
from encord.objects import LabelRowV2
from encord.orm.dataset import LongPollingStatus
from encord.orm.label_row import LabelRowMetadata
from encord.orm.workflow import WorkflowDTO
from encord.workflow import Workflow
from sqlalchemy import func, select
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.errors import DataEngineError
from dataengine.formats import list_versions, load_annotations
from dataengine.lineage.clips import get_clip
from dataengine.lineage.models import QuarantineItem
from dataengine.review import export_for_review, import_reviews, review_report
from dataengine.review.base import RetryableReviewError
from dataengine.review.platforms import encord_labels as labels
from dataengine.review.platforms.encord import EncordPlatform
from dataengine.storage import ObjectStore

# The clip maker and the Label Studio server.
pytest_plugins = ["review_fixtures"]

FINAL, REVIEW = str(uuid.uuid4()), str(uuid.uuid4())
CLASSES = ["person", "bed", "wheelchair"]


class FakeProjectClient:
    """FAKE ``EncordClientProject``: the label-row calls under the SDK's real ``LabelRowV2``."""

    def __init__(self, server: FakeEncord) -> None:
        self.server = server

    def create_label_rows(self, uids: list[str], **_: Any) -> list[dict[str, Any]]:
        self.server.calls.append(("create_label_rows", len(uids)))
        return [self.server.new_label_row(data_hash) for data_hash in uids]

    def get_label_rows(self, uids: list[str], *_: Any, **__: Any) -> list[dict[str, Any]]:
        self.server.calls.append(("get_label_rows", len(uids)))
        return [copy.deepcopy(self.server.labels[h]) for h in uids]

    def save_label_rows(self, uids: list[str], payload: list[dict[str, Any]], **_: Any) -> None:
        self.server.calls.append(("save_label_rows", len(uids)))
        for label_hash, row in zip(uids, payload, strict=True):
            self.server.labels[label_hash] = json.loads(json.dumps(row))


class FakeEncord:
    """FAKE Encord servers: a storage folder, a dataset linked into a workflow project, label rows."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.structure = labels.ontology_structure(CLASSES)
        self.items: dict[str, str] = {}  # item uuid -> title
        self.rows: dict[str, dict[str, Any]] = {}  # data hash -> metadata
        self.labels: dict[str, dict[str, Any]] = {}  # label hash -> label row
        self.calls: list[tuple[str, Any]] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.registrations: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None
        self.project_client = FakeProjectClient(self)

    # user client
    def get_project(self, project_hash: str) -> Any:
        return SimpleNamespace(
            list_label_rows_v2=self.list_label_rows_v2,
            create_bundle=lambda bundle_size=None: __import__("encord.http.bundle").http.bundle.Bundle(
                bundle_size
            ),
            ontology_structure=self.structure,
            workflow=Workflow(
                Mock(),
                uuid.uuid4(),
                WorkflowDTO.from_dict(
                    {
                        "stages": [
                            {"stageType": "REVIEW", "uuid": REVIEW, "title": "Review"},
                            {"stageType": "DONE", "uuid": FINAL, "title": "Complete"},
                        ]
                    }
                ),
            ),
        )

    def get_storage_folder(self, folder_uuid: str) -> Any:
        return SimpleNamespace(
            upload_video=self.upload_video,
            add_private_data_to_folder_start=self.register_start,
            add_private_data_to_folder_get_result=self.register_result,
        )

    def get_dataset(self, dataset_hash: str) -> Any:
        return SimpleNamespace(link_items=self.link_items)

    def get_cloud_integrations(self, filter_integration_titles: list[str]) -> list[Any]:
        return [
            SimpleNamespace(id="integration-1", title=t) for t in filter_integration_titles if t == "our-s3"
        ]

    # storage and dataset
    def upload_video(self, path: Path, *, title: str, **_: Any) -> uuid.UUID:
        item = uuid.uuid4()
        self.uploads.append((title, Path(path).read_bytes()))
        self.items[str(item)] = title
        return item

    def register_start(self, integration_id: str, spec: Any, ignore_errors: bool = False) -> str:
        self.registrations.append(spec.to_dict())
        for video in spec.videos:
            self.items[str(uuid.uuid4())] = video.title
        return "job-1"

    def register_result(self, job: str, timeout_seconds: int = 0) -> Any:
        names = [SimpleNamespace(item_uuid=uuid.UUID(i), name=t) for i, t in self.items.items()]
        return SimpleNamespace(status=LongPollingStatus.DONE, items_with_names=names, errors=[])

    def link_items(self, item_uuids: list[uuid.UUID], duplicates_behavior: Any = None) -> list[Any]:
        self.calls.append(("link_items", len(item_uuids)))
        for item in item_uuids:
            title = self.items[str(item)]
            if all(row["data_title"] != title for row in self.rows.values()):
                data_hash = str(uuid.uuid4())
                self.rows[data_hash] = {
                    "data_hash": data_hash,
                    "data_title": title,
                    "label_hash": None,
                    "node": REVIEW,
                }
        return []

    # project
    def list_label_rows_v2(self, data_hashes: list[str] | None = None, **_: Any) -> list[LabelRowV2]:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("list_label_rows_v2", data_hashes))
        ontology = labels.offline_ontology(self.structure)
        return [
            LabelRowV2(LabelRowMetadata.from_dict(self._metadata(row)), self.project_client, ontology)  # type: ignore[arg-type]
            for row in self.rows.values()
            if data_hashes is None or row["data_hash"] in data_hashes
        ]

    def _metadata(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "label_hash": row["label_hash"],
            "branch_name": "main",
            "data_hash": row["data_hash"],
            "dataset_hash": "dataset-1",
            "dataset_title": "clips",
            "data_title": row["data_title"],
            "data_type": "VIDEO",
            "data_link": None,
            "label_status": "LABEL_IN_PROGRESS",
            "number_of_frames": 20,
            "frames_per_second": 10.0,
            "duration": 2.0,
            "width": 64,
            "height": 48,
            "spaces": {},
            "workflow_graph_node": {
                "uuid": row["node"],
                "title": "Complete" if row["node"] == FINAL else "Review",
            },
        }

    def new_label_row(self, data_hash: str) -> dict[str, Any]:
        row = self.rows[data_hash]
        row["label_hash"] = str(uuid.uuid4())
        empty = LabelRowV2.from_media_metadata(
            labels.offline_ontology(self.structure),
            labels.video_metadata(fps=10.0, n_frames=20, width=64, height=48),
        ).to_encord_dict()
        unit = empty["data_units"].pop(next(iter(empty["data_units"])))
        unit["data_hash"] = data_hash
        empty.update(label_hash=row["label_hash"], data_hash=data_hash, data_title=row["data_title"])
        empty["data_units"] = {data_hash: unit}
        self.labels[row["label_hash"]] = empty
        return copy.deepcopy(empty)

    # what a reviewer does in the Encord editor
    def row_of(self, clip_id: str) -> dict[str, Any]:
        return next(r for r in self.rows.values() if r["data_title"] == labels.data_title(clip_id))

    def review(self, clip_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
        row = self.row_of(clip_id)
        edit(self.labels[row["label_hash"]])
        row["node"] = FINAL


@pytest.fixture
def encord_ctx(ctx: Context) -> Context:
    settings = ctx.settings.model_copy(
        update={
            "review_platform": "encord",
            "encord_project_hash": "project-1",
            "encord_storage_folder": "folder-1",
            "encord_dataset_hash": "dataset-1",
        }
    )
    return Context(settings=settings, store=ctx.store, db=ctx.db, run_id="test/run", actor="tester")


@pytest.fixture
def fake(encord_ctx: Context, monkeypatch: pytest.MonkeyPatch) -> FakeEncord:
    """FAKE Encord behind the SDK client that ``EncordPlatform`` connects with."""
    server = FakeEncord(encord_ctx)
    monkeypatch.setattr("dataengine.review.platforms.encord.connect", lambda settings: server)
    return server


def _objects(row: dict[str, Any], frame: int) -> list[dict[str, Any]]:
    unit = next(iter(row["data_units"].values()))
    objects: list[dict[str, Any]] = unit["labels"].setdefault(
        str(frame), {"objects": [], "classifications": []}
    )["objects"]
    return objects


def _edit(row: dict[str, Any]) -> None:
    """A reviewer's work: moves the person on frame 5, deletes the bed, adds a wheelchair on frame 10."""
    person5 = _objects(row, 5)[0]
    person5.update(boundingBox={"x": 0.125, "y": 0.1, "w": 0.25, "h": 0.75}, manualAnnotation=True)
    person5["lastEditedBy"] = "ann-7@example.com"
    frame0 = _objects(row, 0)
    bed = next(o for o in frame0 if o["name"] == "bed")
    frame0.remove(bed)
    row["object_answers"].pop(bed["objectHash"])
    added = dict(copy.deepcopy(person5), objectHash="added01", name="wheelchair", value="wheelchair")
    added.update(
        featureHash=labels.feature_hash("obj", "wheelchair"),
        boundingBox={"x": 0.5, "y": 0.5, "w": 0.25, "h": 0.25},
    )
    _objects(row, 10).append(added)
    row["object_answers"]["added01"] = {"objectHash": "added01", "classifications": []}


def _stage(ctx: Context, clip_id: str) -> str:
    with ctx.db.session() as session:
        return get_clip(session, clip_id).stage


def test_fake_encord_export_uploads_links_and_saves_prelabels_in_one_bundle(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str]
) -> None:
    clips = [make_clip(encord_ctx, 0), make_clip(encord_ctx, 20)]
    report = export_for_review(encord_ctx)
    assert sorted(report.exported) == sorted(clips)
    assert sorted(title for title, _ in fake.uploads) == sorted(f"{c}.mp4" for c in clips)
    assert fake.uploads[0][1] == b"placeholder video bytes"
    calls = [name for name, _ in fake.calls]
    assert calls.count("link_items") == 1
    assert ("create_label_rows", 2) in fake.calls  # one bundled request for both rows
    assert ("save_label_rows", 2) in fake.calls
    assert calls.count("save_label_rows") == 1
    for clip_id in clips:
        row = fake.row_of(clip_id)
        assert report.tasks[clip_id] == row["data_hash"]
        saved = fake.labels[row["label_hash"]]
        frame0 = _objects(saved, 0)
        assert {o["name"] for o in frame0} == {"person", "bed"}
        assert all(o["manualAnnotation"] is False for o in frame0)
        assert _stage(encord_ctx, clip_id) == "in_review"
    # A second run exports nothing; the platform itself never overwrites labels already on a row.
    assert export_for_review(encord_ctx).exported == []
    platform = EncordPlatform(encord_ctx)
    from dataengine.review.base import ExportItem

    exported = load_annotations(encord_ctx.store, clips[0], 1)
    again = platform.export_tasks([ExportItem(clips[0], exported, {})])
    assert again == {clips[0]: fake.row_of(clips[0])["data_hash"]}
    assert [name for name, _ in fake.calls].count("save_label_rows") == 1


@pytest.mark.s3
def test_fake_encord_cloud_registration_of_an_s3_store_names_our_bucket_objects(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str], s3_store: ObjectStore
) -> None:
    settings = encord_ctx.settings.model_copy(update={"encord_data": "cloud", "encord_integration": "our-s3"})
    ctx = Context(settings=settings, store=s3_store, db=encord_ctx.db, run_id="test/run")
    fake.ctx = ctx
    clip_id = make_clip(ctx, 0)
    assert export_for_review(ctx).exported == [clip_id]
    (spec,) = fake.registrations
    (video,) = spec["videos"]
    assert video["objectUrl"] == f"{s3_store.url}/clips/{clip_id}/clip.mp4"
    assert video["objectUrl"].startswith("s3://")
    assert video["title"] == f"{clip_id}.mp4"
    assert video["videoMetadata"]["fps"] == 10.0
    assert video["videoMetadata"]["duration"] == 2.0
    assert spec["skipDuplicateUrls"] is True
    assert fake.uploads == []


@pytest.mark.s3
def test_fake_encord_upload_from_an_s3_store_sends_the_clip_bytes(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str], s3_store: ObjectStore
) -> None:
    ctx = Context(settings=encord_ctx.settings, store=s3_store, db=encord_ctx.db, run_id="test/run")
    clip_id = make_clip(ctx, 0)
    assert export_for_review(ctx).exported == [clip_id]
    assert fake.uploads == [(f"{clip_id}.mp4", b"placeholder video bytes")]
    assert fake.registrations == []


def test_fake_encord_cloud_registration_of_a_file_store_is_refused_naming_upload(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str]
) -> None:
    settings = encord_ctx.settings.model_copy(update={"encord_data": "cloud", "encord_integration": "our-s3"})
    ctx = Context(settings=settings, store=encord_ctx.store, db=encord_ctx.db, run_id="test/run")
    make_clip(ctx, 0)
    refusal = r"cloud needs an s3:// store .*\(DATAENGINE_ENCORD_DATA=upload\)"
    with pytest.raises(DataEngineError, match=refusal):
        export_for_review(ctx)
    assert fake.registrations == []
    assert fake.uploads == []


def test_fake_encord_import_takes_final_stage_rows_as_new_versions(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str]
) -> None:
    done, waiting = make_clip(encord_ctx, 0), make_clip(encord_ctx, 20)
    export_for_review(encord_ctx)
    fake.review(done, _edit)
    platform = EncordPlatform(encord_ctx)
    hashes = {c: fake.row_of(c)["data_hash"] for c in (done, waiting)}
    assert platform.review_status(list(hashes.values())) == {
        hashes[done]: "completed",
        hashes[waiting]: "pending",
    }
    report = import_reviews(encord_ctx)
    assert report.imported == [done]
    assert report.versions == {done: 2}
    reviewed = load_annotations(encord_ctx.store, done, 2)
    frame0, frame5, frame10 = reviewed.frames
    assert [(b.label, b.origin, b.score) for b in frame0.boxes] == [("person", "detector", 0.9)]
    assert frame5.boxes[0].xyxy == pytest.approx((8.0, 4.8, 24.0, 40.8))
    assert (frame5.boxes[0].track, frame5.boxes[0].origin) == (1, "human")
    assert [(b.label, b.track, b.origin) for b in frame10.boxes] == [("wheelchair", 3, "human")]
    assert reviewed.producer["reviewers"] == ["ann-7@example.com"]
    assert (_stage(encord_ctx, done), _stage(encord_ctx, waiting)) == ("reviewed", "in_review")
    # Importing the same reviewed row again makes no new version.
    again = import_reviews(encord_ctx)
    assert again.imported == []
    assert list_versions(encord_ctx.store, done) == [1, 2]
    quality = review_report(encord_ctx).by_reviewer["ann-7@example.com"]
    assert (quality.accepted, quality.moved, quality.deleted, quality.added) == (1, 1, 1, 1)


def test_fake_encord_rate_limit_is_a_retryable_error_and_records_nothing(
    encord_ctx: Context, fake: FakeEncord, make_clip: Callable[..., str]
) -> None:
    clip_id = make_clip(encord_ctx, 0)
    fake.fail_with = enc_errors.RateLimitExceededError(retry_after=30)
    with pytest.raises(RetryableReviewError) as caught:
        export_for_review(encord_ctx)
    assert isinstance(caught.value, DataEngineError)
    assert caught.value.retryable
    assert "RateLimitExceededError" in str(caught.value)
    assert _stage(encord_ctx, clip_id) == "autolabelled"
    fake.fail_with = enc_errors.AuthorisationError("forbidden", context=None)
    with pytest.raises(DataEngineError) as refused:
        export_for_review(encord_ctx)
    assert not refused.value.retryable


def _export_file(fake: FakeEncord, tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "encord-export.json"
    path.write_text(json.dumps(rows))
    return path


def test_fake_encord_export_then_file_import_from_the_cli(
    encord_ctx: Context,
    fake: FakeEncord,
    make_clip: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good, bad = make_clip(encord_ctx, 0), make_clip(encord_ctx, 20)
    export_for_review(encord_ctx)
    good_row = copy.deepcopy(fake.labels[fake.row_of(good)["label_hash"]])
    _edit(good_row)
    bad_row = copy.deepcopy(fake.labels[fake.row_of(bad)["label_hash"]])
    _objects(bad_row, 5)[0]["boundingBox"] = {"x": 0.9, "y": 0.1, "w": 0.5, "h": 0.1}
    path = _export_file(fake, tmp_path, [good_row, bad_row])
    for name, value in {
        "DATAENGINE_DATABASE_URL": encord_ctx.settings.database_url,
        "DATAENGINE_STORAGE_URL": encord_ctx.settings.storage_url,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    result = runner.invoke(app, ["review", "import", "--platform", "encord", "--file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["imported"] == [good]
    assert out["versions"] == {good: 2}
    ((failed_clip, error),) = [(f["clip_id"], f["error"]) for f in out["failed"]]
    assert failed_clip == bad
    assert f"clip {bad}" in error
    assert "boundingBox" in error
    assert (_stage(encord_ctx, good), _stage(encord_ctx, bad)) == ("reviewed", "in_review")
    assert list_versions(encord_ctx.store, bad) == [1]  # nothing overwritten
    with encord_ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(QuarantineItem)) == 1
    # The same file again: the good row is imported already, the bad one unchanged; no new rows.
    again = runner.invoke(app, ["review", "import", "--platform", "encord", "--file", str(path), "--json"])
    out = json.loads(again.stdout)
    assert out["imported"] == []
    assert out["still_refused"] == [bad]
    assert again.exit_code == 1  # nothing of the file could be imported
    assert list_versions(encord_ctx.store, good) == [1, 2]


def test_encord_file_import_of_an_unreadable_file_names_it(encord_ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text("{not json")
    with pytest.raises(DataEngineError, match=r"export\.json: not a readable JSON label export"):
        import_reviews(encord_ctx, file=path)
    path.write_text('"a string"')
    with pytest.raises(DataEngineError, match="JSON list of label rows"):
        import_reviews(encord_ctx, file=path)


def test_file_import_on_a_platform_without_exports_is_refused(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(DataEngineError, match="reads no export files"):
        import_reviews(ctx, platform="local", file=tmp_path / "x.json")


def test_missing_encord_settings_are_named(ctx: Context, make_clip: Callable[..., str]) -> None:
    make_clip(ctx, 0)
    monkey = ctx.settings.model_copy(update={"review_platform": "encord"})
    bare = Context(settings=monkey, store=ctx.store, db=ctx.db, run_id="test/run")
    with pytest.raises(DataEngineError, match="DATAENGINE_ENCORD_PROJECT_HASH"):
        export_for_review(bare)


def test_fake_encord_export_file_rows_without_tasks_unknown_and_malformed_each_get_an_outcome(
    encord_ctx: Context,
    fake: FakeEncord,
    make_clip: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = make_clip(encord_ctx, 0)
    never = make_clip(encord_ctx, 20, stage="ingested")  # labelled elsewhere before the engine came
    export_for_review(encord_ctx)
    good = copy.deepcopy(fake.labels[fake.row_of(exported)["label_hash"]])
    _edit(good)
    for_never = dict(copy.deepcopy(good), data_title=f"{never}.mp4")
    unknown = dict(copy.deepcopy(good), data_title="ffffffffffffffff-0000040.mp4")
    path = _export_file(fake, tmp_path, [{"foo": 1}, good, 17, for_never, unknown])
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", encord_ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", encord_ctx.settings.storage_url)
    result = CliRunner().invoke(app, ["review", "import", "--platform", "encord", "--file", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        f"{path}: 5 row(s): imported 2 (1 review(s) of open encord tasks, 1 as new labels, source import), "
        "refused 2, skipped 1"
    )
    assert f"  refused {path} row 0: it has no data_title naming its clip" in lines
    assert f"  refused {path} row 2: a label row is a JSON object, not int" in lines
    assert (
        f"  skipped {path} row 4 (clip ffffffffffffffff-0000040): no clip ffffffffffffffff-0000040 in the "
        "lineage database"
    ) in lines
    assert (_stage(encord_ctx, exported), _stage(encord_ctx, never)) == ("reviewed", "reviewed")
    review, imported = (
        load_annotations(encord_ctx.store, exported, 2),
        load_annotations(encord_ctx.store, never, 1),
    )
    assert (review.source, imported.source, imported.parent_version) == ("review", "import", None)
    # The same labels either way: the clip's own frames and the reviewer's boxes.
    assert [[b.label for b in f.boxes] for f in imported.frames] == [
        [b.label for b in f.boxes] for f in review.frames
    ]
    assert imported.producer["file"] == str(path)
