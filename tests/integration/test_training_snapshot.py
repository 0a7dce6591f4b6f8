"""Dataset versions over time: stable splits, the fixed held-out set, diffs, `dataengine dataset diff`,
and the columnar index beside each manifest (local and S3).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_training import add_video, members, review_again, video_id_of
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.formats import load_annotations, sha256_hex
from dataengine.lineage.clips import record_event
from dataengine.lineage.datasets import get_dataset
from dataengine.lineage.videos import register_video
from dataengine.storage import ObjectStore
from dataengine.training import ClipFrameDataset, build_dataset, diff_datasets, read_manifest
from dataengine.training import columns as columns_module
from dataengine.training.columns import ManifestColumns, index_key, load_index, parse_manifest_columns
from dataengine.training.evaluation import HELDOUT, held_out_source
from dataengine.training.manifest import split_of_video

pytestmark = pytest.mark.slow


def video_splits(ctx: Context, dataset_id: str) -> dict[str, set[str]]:
    """video id -> the splits its clips are in."""
    found: dict[str, set[str]] = {}
    for clip_id, (_, split) in members(ctx, dataset_id).items():
        found.setdefault(clip_id.split("-")[0], set()).add(split)
    return found


def test_splits_never_move_and_never_leak_across_versions(ctx: Context) -> None:
    names = ["v-a", "v-b"]
    for name in names:
        add_video(ctx, name, n_clips=1, n_frames=1)
    versions = [build_dataset(ctx)]
    for i in range(5):  # the dataset grows one video at a time
        names.append(f"v-new-{i}")
        add_video(ctx, names[-1], n_clips=1, n_frames=1)
        versions.append(build_dataset(ctx))

    history: dict[str, set[str]] = {}
    for ref in versions:
        for video, splits in video_splits(ctx, ref.dataset_id).items():
            assert len(splits) == 1  # never split inside a version
            history.setdefault(video, set()).update(splits)
    assert all(len(splits) == 1 for splits in history.values())  # never moved between versions
    assert len(history) == len(names)
    assert {"train", "val"} <= {s for splits in history.values() for s in splits}


def test_a_version_records_its_boxes_per_class_and_split(ctx: Context) -> None:
    for name in ("c-1", "c-2", "c-3", "c-4"):
        add_video(ctx, name, n_clips=2, n_frames=2)
    ref = build_dataset(ctx)
    expected: dict[str, dict[str, int]] = {
        split: dict.fromkeys(ctx.settings.classes, 0) for split in ("train", "val")
    }
    for clip_id, (version, split) in members(ctx, ref.dataset_id).items():
        for frame in load_annotations(ctx.store, clip_id, version).frames:
            for box in frame.boxes:
                expected[split][box.label] += 1
    with ctx.db.session() as session:
        row = get_dataset(session, "default", ref.version)
        heldout = get_dataset(session, "default-heldout")
    assert row.counts["class_boxes"] == expected
    assert sum(expected["train"].values()) + sum(expected["val"].values()) == ref.n_boxes > 0
    assert heldout.counts["class_boxes"]["val"] == expected["val"]
    assert set(heldout.counts["class_boxes"]["train"].values()) == {0}


def test_the_held_out_set_stays_fixed_until_rebuilt(ctx: Context) -> None:
    for name in ("h-1", "h-2", "h-3", "h-4"):
        add_video(ctx, name, n_clips=2, n_frames=2)
    first = build_dataset(ctx)
    frozen = members(ctx, first.heldout_id or "")
    val_clip = sorted(frozen)[0]
    review_again(ctx, val_clip)  # a held-out clip is relabelled
    add_video(ctx, "h-5", n_clips=2, n_frames=2)
    second = build_dataset(ctx)
    rebuilt = build_dataset(ctx, rebuild_heldout=True)

    assert first.heldout_id == second.heldout_id == "default-heldout@1"
    assert members(ctx, "default-heldout@1") == frozen  # the same clips at the same annotation versions
    assert {split for _, split in frozen.values()} == {"val"}
    assert frozen == {c: v for c, v in members(ctx, first.dataset_id).items() if v[1] == "val"}
    assert members(ctx, second.dataset_id)[val_clip][0] == 2
    assert frozen[val_clip][0] == 1
    # Rebuilding is explicit: a new version with the same clips, and a new held-out set from today's val.
    assert (rebuilt.created, rebuilt.heldout_id, rebuilt.diff["added"]) == (True, "default-heldout@2", 0)
    assert members(ctx, "default-heldout@2") == {
        c: v for c, v in members(ctx, rebuilt.dataset_id).items() if v[1] == "val"
    }
    held_out_videos = {c.split("-")[0] for c in frozen}
    for ref in (first, second, rebuilt):
        for video, splits in video_splits(ctx, ref.dataset_id).items():
            if video in held_out_videos:
                assert splits == {"val"}  # no held-out video is ever trained on


def test_evaluation_reads_the_fixed_held_out_set(ctx: Context) -> None:
    for name in ("e-1", "e-2", "e-3"):
        add_video(ctx, name, n_clips=1, n_frames=2)
    first = build_dataset(ctx)
    add_video(ctx, "e-4", n_clips=1, n_frames=2)
    second = build_dataset(ctx)

    with ctx.db.session() as session:
        row = get_dataset(session, "default", second.version)
    source, split, label = held_out_source(ctx, row)
    entries = read_manifest(ctx.store, source.manifest_uri)

    assert (source.id, split, label) == ("default-heldout@1", None, "default-heldout@1")
    assert {e.clip_id for e in entries} == set(members(ctx, "default-heldout@1"))
    assert first.heldout_id == second.heldout_id
    assert HELDOUT == "heldout"


def test_dataset_diff_prints_added_removed_and_relabelled(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    add_video(ctx, "d-1", n_clips=2, n_frames=1)
    add_video(ctx, "d-2", n_clips=1, n_frames=1)
    build_dataset(ctx)
    edited = sorted(members(ctx, "default@1"))[0]
    review_again(ctx, edited)
    (added,) = add_video(ctx, "d-3", n_clips=1, n_frames=1)
    build_dataset(ctx)

    runner = CliRunner()
    human = runner.invoke(app, ["dataset", "diff", "default@1", "default@2"])
    as_json = runner.invoke(app, ["dataset", "diff", "default@1", "default", "--json"])
    backwards = diff_datasets(ctx, "default@2", "default@1")

    assert human.exit_code == 0, human.output
    assert human.output.splitlines() == [
        "default@1 → default@2: +1 added, -0 removed, ~1 relabelled",
        f"+ {added} v1",
        f"~ {edited} v1 -> v2",
    ]
    assert json.loads(as_json.output) == {
        "base": "default@1", "target": "default@2", "added": [[added, 1]], "removed": [],
        "relabelled": [[edited, 1, 2]],
    }  # fmt: skip
    assert backwards.removed == [(added, 1)]
    assert backwards.relabelled == [(edited, 2, 1)]
    assert ctx.store.read_json("datasets/default/v0002/diff.json") == json.loads(as_json.output)
    assert video_id_of("d-3") == added.split("-")[0]


def test_dataset_diff_of_an_unknown_version_fails_with_the_name(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    add_video(ctx, "u-1", n_clips=1, n_frames=1)
    build_dataset(ctx)

    result = CliRunner().invoke(app, ["dataset", "diff", "default@1", "default@9"])

    assert result.exit_code != 0
    assert "default@9" in result.output


def test_splits_by_camera_keep_every_video_of_a_camera_together(ctx: Context) -> None:
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"split_by": "camera"}))
    cameras = {f"cam-video-{i}": f"ward-{i % 2}" for i in range(6)}
    for name, camera in cameras.items():
        add_video(ctx, name, n_clips=1, n_frames=1)
        with ctx.db.session() as session:
            vid = video_id_of(name)
            register_video(
                session, video_id=vid, uri=f"file:///landing/{name}.mp4", sha256=vid * 4, camera=camera
            )

    ref = build_dataset(ctx)

    split_of_camera: dict[str, set[str]] = {}
    for name, camera in cameras.items():
        split_of_camera.setdefault(camera, set()).update(video_splits(ctx, ref.dataset_id)[video_id_of(name)])
    assert sorted(map(sorted, split_of_camera.values())) == [["train"], ["val"]]
    assert (ref.n_train, ref.n_val) == (3, 3)


# The edge-case set ------------------------------------------------------------------------------


def add_triggered_video(ctx: Context, name: str, *, n_clips: int = 2) -> list[str]:
    """A video whose clips were all selected by a trigger before review (as detect_triggers records it)."""
    clip_ids = add_video(ctx, name, n_clips=n_clips, n_frames=1)
    with ctx.db.session() as session:
        for clip_id in clip_ids:
            record_event(session, clip_id, "selected", status="ok", details={"trigger": "rare_class"})
    return clip_ids


def test_the_edge_case_set_grows_from_the_triggered_val_clips_and_is_never_trained_on(ctx: Context) -> None:
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"val_fraction": 0.5}))
    for i in range(4):  # the seed: labelled by hand, not found by a trigger
        add_video(ctx, f"seed-{i}", n_clips=1, n_frames=1)
    seed = build_dataset(ctx)
    rounds = []
    for r in range(2):  # two rounds of clips found by triggers
        for i in range(6):
            add_triggered_video(ctx, f"round-{r}-{i}")
        rounds.append(build_dataset(ctx))
    add_video(ctx, "untriggered", n_clips=1, n_frames=1)
    quiet = build_dataset(ctx)  # a version that brings no new triggered clip
    rebuilt = build_dataset(ctx, rebuild_heldout=True)

    assert seed.edge_cases_id is None
    assert [ref.edge_cases_id for ref in rounds] == ["default-edgecases@1", "default-edgecases@2"]
    assert quiet.edge_cases_id == "default-edgecases@2"  # unchanged: no new version
    for ref in rounds:
        with ctx.db.session() as session:
            assert get_dataset(session, "default", ref.version).counts["edge_cases"] == ref.edge_cases_id
        # Exactly the val clips of the round's version that came in through a trigger, plus the older set.
        expected = {
            c: v
            for c, v in members(ctx, ref.dataset_id).items()
            if v[1] == "val"
            and c.startswith(tuple(video_id_of(f"round-{r}-{i}") for r in range(2) for i in range(6)))
        }
        assert members(ctx, ref.edge_cases_id or "") == expected
        assert expected
    first, second = (members(ctx, ref.edge_cases_id or "") for ref in rounds)
    assert set(first) < set(second)  # it grows: a superset of the previous version
    # Never trained on: no video of any edge-case version is in a train split of any version.
    edge_videos = {c.split("-")[0] for c in second}
    for ref in (seed, *rounds, quiet, rebuilt):
        for video, splits in video_splits(ctx, ref.dataset_id).items():
            if video in edge_videos:
                assert splits == {"val"}
    with ctx.db.session() as session:
        edge = get_dataset(session, "default-edgecases", 2)
        by_class = edge.counts["class_boxes"]["val"]
    assert sum(by_class.values()) == sum(
        box for c in second for box in [len(f.boxes) for f in load_annotations(ctx.store, c).frames]
    )
    # Rebuilding starts both held-out sets again from today's val split; the triggered val clips are the
    # same as before, so the edge-case set is the same version.
    assert (rebuilt.heldout_id, rebuilt.edge_cases_id) == ("default-heldout@2", "default-edgecases@2")


def test_a_round_of_triggered_videos_that_all_hash_to_train_still_grows_the_edge_case_set(
    ctx: Context,
) -> None:
    """These six videos all hash to train at val_fraction 0.2: the trigger stratum moves one to val."""
    for i in range(4):
        add_video(ctx, f"seed-{i}", n_clips=1, n_frames=1)
    build_dataset(ctx)
    names = [f"round-0-{i}" for i in range(6)]
    hashed_to_val = [n for n in names if split_of_video(video_id_of(n)) < ctx.settings.val_fraction]
    for name in names:
        add_triggered_video(ctx, name)
    ref = build_dataset(ctx)

    assert hashed_to_val == []
    splits = video_splits(ctx, ref.dataset_id)
    assert sorted(splits[video_id_of(n)] == {"val"} for n in names).count(True) == 1
    assert ref.edge_cases_id == "default-edgecases@1"
    (moved,) = [n for n in names if splits[video_id_of(n)] == {"val"}]
    assert {c.split("-")[0] for c in members(ctx, ref.edge_cases_id)} == {video_id_of(moved)}


def test_a_relabelled_edge_case_clip_keeps_its_place_with_its_new_labels(ctx: Context) -> None:
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"val_fraction": 0.5}))
    for i in range(6):
        add_triggered_video(ctx, f"relabel-{i}")
    first = build_dataset(ctx)
    clip_id = sorted(members(ctx, first.edge_cases_id or ""))[0]
    review_again(ctx, clip_id)
    second = build_dataset(ctx)

    assert (first.edge_cases_id, second.edge_cases_id) == ("default-edgecases@1", "default-edgecases@2")
    before, after = members(ctx, "default-edgecases@1"), members(ctx, "default-edgecases@2")
    assert set(before) == set(after)
    assert (before[clip_id], after[clip_id]) == ((1, "val"), (2, "val"))


# The columnar index beside each manifest -------------------------------------------------------


def forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any parse of a manifest fail, so whatever still loads came from the index."""

    def refuse(data: bytes, source: str) -> ManifestColumns:
        raise AssertionError(f"{source} was parsed")

    monkeypatch.setattr(columns_module, "parse_manifest_columns", refuse)


def assert_index_matches_manifest(store: ObjectStore, manifest_uri: str, manifest_sha256: str) -> None:
    """The index beside the manifest is tagged with its bytes and holds exactly what parsing it gives."""
    key = store.key_of(manifest_uri)
    data = store.read_bytes(key)
    assert sha256_hex(data) == manifest_sha256  # the lineage row and the bytes agree
    indexed = load_index(store, key, manifest_sha256=bytes.fromhex(manifest_sha256))
    parsed = parse_manifest_columns(data, manifest_uri)
    assert indexed is not None
    pairs: list[tuple[np.ndarray, np.ndarray]] = [
        (indexed.clip_ids.data, parsed.clip_ids.data), (indexed.clip_ids.offsets, parsed.clip_ids.offsets),
        (indexed.uris.data, parsed.uris.data), (indexed.uris.offsets, parsed.uris.offsets),
        (indexed.sha256, parsed.sha256), (indexed.annotation_versions, parsed.annotation_versions),
        (indexed.splits, parsed.splits), (indexed.frame_offsets, parsed.frame_offsets),
        (indexed.frames, parsed.frames),
    ]  # fmt: skip
    for got, expected in pairs:
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)
    assert [indexed.clip_ids[i] for i in range(len(indexed))] == [
        e.clip_id for e in read_manifest(store, key)
    ]


def build_and_check_index(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> str:
    """Build two versions; every manifest has a matching index, and the Dataset loads without parsing."""
    for name in ("i-1", "i-2", "i-3"):
        add_video(ctx, name, n_clips=2, n_frames=2)
    first = build_dataset(ctx)
    add_video(ctx, "i-4", n_clips=1, n_frames=2)
    second = build_dataset(ctx)

    for dataset_id in (first.dataset_id, second.dataset_id, first.heldout_id or ""):
        with ctx.db.session() as session:
            name, version = dataset_id.split("@")
            row = get_dataset(session, name, int(version))
            manifest_uri, manifest_sha256 = row.manifest_uri, row.manifest_sha256
        assert ctx.store.exists(index_key(ctx.store.key_of(manifest_uri)))
        assert_index_matches_manifest(ctx.store, manifest_uri, manifest_sha256)

    forbid_parsing(monkeypatch)
    train = ClipFrameDataset(ctx.store, second.manifest_uri, split="train", classes=ctx.settings.classes)
    val = ClipFrameDataset(ctx.store, second.manifest_uri, split="val", classes=ctx.settings.classes)
    assert (train.n_clips, val.n_clips) == (second.n_train, second.n_val)
    assert len(train) + len(val) == second.n_frames
    image, target = train[0]
    assert image.shape == (3, 240, 320)
    assert target["boxes"].shape[1] == 4
    return index_key(ctx.store.key_of(second.manifest_uri))


def test_a_build_writes_an_index_equal_to_its_manifest(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    key = build_and_check_index(ctx, monkeypatch)

    assert key == "datasets/default/v0002/manifest.index.npz"
    local = ctx.store.local_file(key)  # a local file, which readers memory-map
    assert local is not None
    assert local.is_file()


def test_on_s3_the_build_writes_the_index_and_the_dataset_reads_it(
    ctx: Context, s3_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_ctx = Context(settings=ctx.settings, store=s3_store, db=ctx.db, run_id="test/s3", actor="tester")

    build_and_check_index(s3_ctx, monkeypatch)

    assert s3_store.uri("datasets/default/v0002/manifest.index.npz").startswith("s3://")


def test_on_s3_a_stale_index_is_ignored_and_replaced(
    ctx: Context, s3_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_ctx = Context(settings=ctx.settings, store=s3_store, db=ctx.db, run_id="test/s3", actor="tester")
    for name in ("s-1", "s-2"):
        add_video(s3_ctx, name, n_clips=2, n_frames=2)
    first = build_dataset(s3_ctx)
    add_video(s3_ctx, "s-3", n_clips=2, n_frames=2)
    second = build_dataset(s3_ctx)
    key1, key2 = (s3_store.key_of(ref.manifest_uri) for ref in (first, second))
    s3_store.write_bytes(index_key(key2), s3_store.read_bytes(index_key(key1)))  # v1's index under v2

    dataset = ClipFrameDataset(s3_store, second.manifest_uri, split=None, classes=ctx.settings.classes)

    assert (dataset.n_clips, len(dataset)) == (second.n_clips, second.n_frames)  # v2, not v1's 4 clips
    assert (first.n_clips, second.n_clips) == (4, 6)
    with ctx.db.session() as session:
        row = get_dataset(session, "default", 2)
    assert_index_matches_manifest(s3_store, row.manifest_uri, row.manifest_sha256)  # rewritten for v2
