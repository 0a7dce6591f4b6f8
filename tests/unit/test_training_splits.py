"""Pure logic of dataset snapshots: the per-video split rule, manifest diffs and the columnar manifest."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from dataengine.errors import FormatError, IndexDamagedError, StorageError
from dataengine.storage import ObjectStore
from dataengine.training import columns as columns_module
from dataengine.training.columns import (
    ManifestColumns,
    PackedStrings,
    index_key,
    parse_manifest_columns,
    read_manifest_columns,
)
from dataengine.training.diff import diff_members
from dataengine.training.file_arrays import FileArray
from dataengine.training.manifest import ManifestEntry, assign_splits, split_of_video


def videos(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}video-{i}".encode()).hexdigest()[:16] for i in range(n)]


# Splits ---------------------------------------------------------------------------------------


def test_the_same_videos_give_the_same_split_in_any_order() -> None:
    ids = videos(50)
    shuffled = random.Random(3).sample(ids, len(ids))

    first = assign_splits(ids, val_fraction=0.2)
    again = assign_splits(shuffled, val_fraction=0.2)

    assert first == again
    assert set(first.values()) == {"train", "val"}
    assert 3 <= list(first.values()).count("val") <= 20  # about a fifth of 50 videos


def test_a_video_keeps_its_split_when_the_dataset_grows() -> None:
    old = assign_splits(videos(40), val_fraction=0.2)
    grown = assign_splits(videos(40) + videos(60, salt="new"), val_fraction=0.2, fixed=old)

    assert {v: grown[v] for v in old} == old


@pytest.mark.parametrize("names", [("one", "two"), ("alpha", "beta"), ("left", "right"), ("a", "b")])
def test_a_tiny_dataset_gets_both_splits_and_keeps_them_as_it_grows(names: tuple[str, str]) -> None:
    """The known weakness: the tiny-dataset move must not flip a video once it has a split."""
    ids = [hashlib.sha256(n.encode()).hexdigest()[:16] for n in names]
    first = assign_splits(ids, val_fraction=0.2)
    # A third video arrives; without the fixed splits, the moved video would go back to its hash side.
    grown = assign_splits([*ids, videos(1, salt="third")[0]], val_fraction=0.2, fixed=first)

    assert sorted(first.values()) == ["train", "val"]
    assert {v: grown[v] for v in ids} == first


def rare_in_train_by_chance(
    n: int = 20, n_rare: int = 3, val_fraction: float = 0.2
) -> tuple[list[str], set[str]]:
    """``n`` videos and ``n_rare`` of them, chosen so that the hash alone puts all of those in train."""
    ids = videos(n, salt="strat")
    by_hash = assign_splits(ids, val_fraction=val_fraction)
    rare = {v for v in ids if by_hash[v] == "train"}
    assert len(rare) >= n_rare
    assert "val" in by_hash.values()
    return ids, set(sorted(rare)[:n_rare])


def test_a_class_in_only_3_of_20_videos_is_kept_in_val() -> None:
    ids, rare = rare_in_train_by_chance()
    classes_of = {v: {"person", "wheelchair"} if v in rare else {"person", "bed"} for v in ids}

    plain = assign_splits(ids, val_fraction=0.2)
    stratified = assign_splits(ids, val_fraction=0.2, classes_of=classes_of, min_class_videos=3)

    assert {plain[v] for v in rare} == {"train"}  # by chance, without stratification: never evaluated
    assert sorted(stratified[v] for v in rare) == ["train", "train", "val"]
    (moved,) = [v for v in rare if stratified[v] == "val"]
    assert moved == min(rare, key=split_of_video)  # the one nearest the boundary
    assert {v: s for v, s in stratified.items() if v != moved} == {
        v: s for v, s in plain.items() if v != moved
    }
    # The same input gives the same split, whatever the order.
    again = assign_splits(list(reversed(ids)), val_fraction=0.2, classes_of=classes_of, min_class_videos=3)
    assert again == stratified


def test_a_class_in_fewer_videos_than_the_minimum_is_left_to_the_hash() -> None:
    ids, rare = rare_in_train_by_chance(n_rare=2)
    classes_of = {v: {"wheelchair"} for v in rare}

    assert assign_splits(ids, val_fraction=0.2, classes_of=classes_of, min_class_videos=3) == assign_splits(
        ids, val_fraction=0.2
    )


def test_stratification_never_moves_a_video_that_already_has_a_split() -> None:
    ids, rare = rare_in_train_by_chance()
    classes_of = {v: {"wheelchair"} for v in rare}
    fixed = {v: "train" for v in rare}

    split = assign_splits(ids, val_fraction=0.2, fixed=fixed, classes_of=classes_of, min_class_videos=3)
    # A fourth video of the class arrives: it is the one that goes to val.
    newcomer = videos(1, salt="fourth")[0]
    grown = assign_splits(
        [*ids, newcomer], val_fraction=0.2, fixed=split, classes_of={**classes_of, newcomer: {"wheelchair"}}
    )

    assert {split[v] for v in rare} == {"train"}
    assert {grown[v] for v in rare} == {"train"}
    assert grown[newcomer] == "val"


def test_a_class_all_in_val_keeps_one_video_in_train() -> None:
    ids = videos(20, salt="all-val")
    by_hash = assign_splits(ids, val_fraction=0.2)
    held = sorted(v for v in ids if by_hash[v] == "val")[:3]
    classes_of = {v: {"wheelchair"} for v in held}

    split = assign_splits(ids, val_fraction=0.2, classes_of=classes_of, min_class_videos=3)

    assert sorted(split[v] for v in held) == ["train", "val", "val"]
    assert split[max(held, key=split_of_video)] == "train"  # the one nearest the boundary


def test_without_fixed_splits_the_tiny_dataset_rule_would_move_a_video() -> None:
    """Why ``fixed`` exists: find two videos that both hash to train, then add one that hashes to val."""
    pool = videos(200, salt="pool")
    by_hash = assign_splits(pool, val_fraction=0.2)
    trains = [v for v in pool if by_hash[v] == "train"][:2]
    val_video = next(v for v in pool if by_hash[v] == "val")
    first = assign_splits(trains, val_fraction=0.2)
    moved = next(v for v in trains if first[v] == "val")

    unfixed = assign_splits([*trains, val_video], val_fraction=0.2)
    fixed = assign_splits([*trains, val_video], val_fraction=0.2, fixed=first)

    assert unfixed[moved] == "train"  # the old rule leaked this video from val into train
    assert fixed[moved] == "val"


def test_fixed_splits_never_leak_even_when_the_fraction_changes() -> None:
    old = assign_splits(videos(30), val_fraction=0.5)
    new = assign_splits(videos(30), val_fraction=0.05, fixed=old)

    assert new == old


def test_no_val_fraction_puts_everything_in_train() -> None:
    assert set(assign_splits(videos(10), val_fraction=0.0).values()) == {"train"}


# Diffs ----------------------------------------------------------------------------------------


def test_a_diff_lists_added_removed_and_relabelled_clips() -> None:
    before = {"a-1": 1, "b-1": 2, "c-1": 1}
    after = {"a-1": 1, "b-1": 3, "d-1": 1, "e-1": 2}

    diff = diff_members(before, after, base="default@1", target="default@2")

    assert diff.added == [("d-1", 1), ("e-1", 2)]
    assert diff.removed == [("c-1", 1)]
    assert diff.relabelled == [("b-1", 2, 3)]
    assert not diff.empty
    assert diff.summary_line() == "default@1 → default@2: +2 added, -1 removed, ~1 relabelled"


def test_the_diff_of_equal_versions_is_empty() -> None:
    diff = diff_members({"a-1": 1}, {"a-1": 1}, base="x@1", target="x@2")

    assert diff.empty
    assert diff.to_dict() == {"base": "x@1", "target": "x@2", "added": [], "removed": [], "relabelled": []}


# The columnar manifest ------------------------------------------------------------------------


def entry(i: int, split: str, frames: tuple[int, ...]) -> ManifestEntry:
    clip_id = f"{i:016x}-0000000"
    return ManifestEntry(
        clip_id=clip_id, video_id=clip_id[:16], annotation_version=i % 3 + 1,
        uri=f"file:///data/annotations/{clip_id}/v0001.json",
        sha256=hashlib.sha256(clip_id.encode()).hexdigest(), split=split, frames=frames,
        width=64, height=48, n_boxes=i,
    )  # fmt: skip


ENTRIES = [
    entry(0, "train", (0, 5, 10)),
    entry(1, "val", (0,)),
    entry(2, "train", ()),  # a clip with no labelled frame contributes no sample
    entry(3, "train", (3, 4)),
    entry(4, "val", (7, 8, 9)),
]


def test_packed_strings_round_trip() -> None:
    items = ["a", "", "ünïcode", "clip-0000001"]
    packed = PackedStrings.pack([s.encode() for s in items])

    assert [packed[i] for i in range(len(packed))] == items
    assert [packed.take(np.array([3, 0]))[i] for i in range(2)] == ["clip-0000001", "a"]


@pytest.mark.parametrize("canonical", [True, False])
def test_columns_equal_the_entries(store: ObjectStore, canonical: bool) -> None:
    if canonical:
        text = "".join(e.to_json_line() + "\n" for e in ENTRIES)
    else:  # another writer's spacing and key order goes through json.loads
        text = "".join(json.dumps(json.loads(e.to_json_line()), indent=None) + "\n" for e in ENTRIES)
    store.write_text("m.jsonl", text)

    columns = read_manifest_columns(store, "m.jsonl")
    train = columns.select("train")

    assert [columns.clip_ids[i] for i in range(len(columns))] == [e.clip_id for e in ENTRIES]
    assert [columns.uris[i] for i in range(len(columns))] == [e.uri for e in ENTRIES]
    assert [columns.sha256_hex(i) for i in range(len(columns))] == [e.sha256 for e in ENTRIES]
    assert columns.annotation_versions.tolist() == [e.annotation_version for e in ENTRIES]
    assert columns.frames.tolist() == [0, 5, 10, 0, 3, 4, 7, 8, 9]
    assert [train.clip_ids[i] for i in range(len(train))] == [ENTRIES[i].clip_id for i in (0, 2, 3)]
    assert train.frames.tolist() == [0, 5, 10, 3, 4]
    assert train.frame_offsets.tolist() == [0, 3, 3, 5]
    assert columns.select("val").frames.tolist() == [0, 7, 8, 9]


def test_columns_hold_no_python_objects_per_clip(store: ObjectStore) -> None:
    store.write_text("m.jsonl", "".join(entry(i, "train", (0, 1)).to_json_line() + "\n" for i in range(500)))

    columns = read_manifest_columns(store, "m.jsonl")

    arrays = [columns.clip_ids.data, columns.uris.data, columns.sha256, columns.frames, columns.frame_offsets]
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays)
    assert columns.nbytes < 500 * 200  # ids, URIs, hashes and frames: no per-clip object overhead


def test_a_bad_split_in_a_canonical_manifest_is_refused(store: ObjectStore) -> None:
    line = entry(0, "train", (0,)).to_json_line().replace('"split":"train"', '"split":"test"')
    store.write_text("m.jsonl", line + "\n")

    with pytest.raises(FormatError, match="split 'test' is not one of"):
        read_manifest_columns(store, "m.jsonl")


# The columnar index beside the manifest --------------------------------------------------------


def manifest_text(entries: list[ManifestEntry]) -> str:
    return "".join(e.to_json_line() + "\n" for e in entries)


def column_arrays(columns: ManifestColumns) -> dict[str, np.ndarray]:
    return {
        "clip_ids_data": columns.clip_ids.data, "clip_ids_offsets": columns.clip_ids.offsets,
        "uris_data": columns.uris.data, "uris_offsets": columns.uris.offsets, "sha256": columns.sha256,
        "annotation_versions": columns.annotation_versions, "splits": columns.splits,
        "frame_offsets": columns.frame_offsets, "frames": columns.frames,
    }  # fmt: skip


def assert_same_columns(got: ManifestColumns, expected: ManifestColumns) -> None:
    got_arrays, expected_arrays = column_arrays(got), column_arrays(expected)
    for name, array in expected_arrays.items():
        assert got_arrays[name].dtype == array.dtype, name
        assert got_arrays[name].shape == array.shape, name
        assert np.array_equal(got_arrays[name], array), name


def forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any parse of a manifest fail, so a read that succeeds came from the index."""

    def refuse(data: bytes, source: str) -> ManifestColumns:
        raise AssertionError(f"{source} was parsed")

    monkeypatch.setattr(columns_module, "parse_manifest_columns", refuse)


def test_the_index_key_sits_beside_the_manifest() -> None:
    assert index_key("datasets/default/v0003/manifest.jsonl") == "datasets/default/v0003/manifest.index.npz"
    assert index_key("m") == "m.index.npz"


@pytest.mark.parametrize("canonical", [True, False])
def test_the_first_read_writes_an_index_equal_to_the_parse(
    store: ObjectStore, canonical: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if canonical:
        text = manifest_text(ENTRIES)
    else:
        text = "".join(json.dumps(json.loads(e.to_json_line()), indent=None) + "\n" for e in ENTRIES)
    store.write_text("m.jsonl", text)
    parsed = parse_manifest_columns(text.encode(), "m.jsonl")

    first = read_manifest_columns(store, "m.jsonl")
    assert store.exists("m.index.npz")
    forbid_parsing(monkeypatch)
    second = read_manifest_columns(store, "m.jsonl")

    assert_same_columns(first, parsed)
    assert_same_columns(second, parsed)
    assert [second.clip_ids[i] for i in range(len(second))] == [e.clip_id for e in ENTRIES]
    assert [second.uris[i] for i in range(len(second))] == [e.uri for e in ENTRIES]
    assert [second.sha256_hex(i) for i in range(len(second))] == [e.sha256 for e in ENTRIES]
    assert second.select("train").frames.tolist() == [0, 5, 10, 3, 4]
    with np.load(io.BytesIO(store.read_bytes("m.index.npz"))) as npz:
        assert npz["manifest_sha256"].tobytes() == hashlib.sha256(text.encode()).digest()


def test_an_index_equals_the_parse_of_a_large_manifest(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    entries = [
        entry(i, rng.choice(["train", "val"]), tuple(sorted(rng.sample(range(300), rng.randint(0, 12)))))
        for i in range(2000)
    ]
    store.write_text("big.jsonl", manifest_text(entries))
    read_manifest_columns(store, "big.jsonl")
    forbid_parsing(monkeypatch)

    from_index = read_manifest_columns(store, "big.jsonl")

    assert_same_columns(from_index, parse_manifest_columns(manifest_text(entries).encode(), "big.jsonl"))
    assert from_index.frames.tolist() == [f for e in entries for f in e.frames]


def test_a_local_index_is_read_on_demand_and_equals_the_parse(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of a local index is held or mapped: its arrays are views read with pread when indexed."""
    text = manifest_text(ENTRIES)
    store.write_text("m.jsonl", text)
    read_manifest_columns(store, "m.jsonl")
    forbid_parsing(monkeypatch)

    mapped = read_manifest_columns(store, "m.jsonl")

    assert isinstance(mapped.frames, FileArray)
    assert isinstance(mapped.clip_ids.data, FileArray)
    assert mapped.frames[2] == 10
    assert mapped.frames[-1] == 9
    assert mapped.frames[3:6].tolist() == [0, 3, 4]
    assert mapped.sha256[1].tobytes().hex() == ENTRIES[1].sha256
    # A spawned (not forked) worker gets the arrays pickled: they reopen the file by its path.
    assert pickle.loads(pickle.dumps(mapped.frames))[0:9].tolist() == mapped.frames.tolist()
    assert_same_columns(mapped, parse_manifest_columns(text.encode(), "m.jsonl"))


def test_a_compressed_index_is_read_whole(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index that cannot be mapped (here: compressed by another writer) is still used, read in full."""
    text = manifest_text(ENTRIES)
    store.write_text("m.jsonl", text)
    read_manifest_columns(store, "m.jsonl")
    with np.load(io.BytesIO(store.read_bytes("m.index.npz"))) as npz:
        arrays = {name: npz[name] for name in npz.files}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    store.write_bytes("m.index.npz", buffer.getvalue())
    forbid_parsing(monkeypatch)

    columns = read_manifest_columns(store, "m.jsonl")

    assert not isinstance(columns.frames, FileArray)
    assert_same_columns(columns, parse_manifest_columns(text.encode(), "m.jsonl"))


def test_a_stale_index_is_ignored_and_replaced(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write_text("m.jsonl", manifest_text(ENTRIES))
    read_manifest_columns(store, "m.jsonl")  # writes the index of the first manifest
    relabelled = [replace(e, split="val", frames=(1, 2)) for e in ENTRIES[:3]]
    store.write_text("m.jsonl", manifest_text(relabelled))  # same key, other bytes: the index is stale

    columns = read_manifest_columns(store, "m.jsonl")
    forbid_parsing(monkeypatch)
    again = read_manifest_columns(store, "m.jsonl")

    assert len(columns) == 3
    assert columns.splits.tolist() == [1, 1, 1]
    assert columns.frames.tolist() == [1, 2, 1, 2, 1, 2]
    assert_same_columns(again, columns)  # the index now belongs to the new manifest


def test_an_index_copied_from_another_manifest_is_ignored(store: ObjectStore) -> None:
    store.write_text("a.jsonl", manifest_text(ENTRIES[:2]))
    store.write_text("b.jsonl", manifest_text(ENTRIES[2:]))
    read_manifest_columns(store, "a.jsonl")
    store.write_bytes("b.index.npz", store.read_bytes("a.index.npz"))

    columns = read_manifest_columns(store, "b.jsonl")

    assert [columns.clip_ids[i] for i in range(len(columns))] == [e.clip_id for e in ENTRIES[2:]]


def index_members(good: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(good)) as npz:
        return {name: npz[name] for name in npz.files}


def saved_index(arrays: dict[str, np.ndarray], *, crc: bool, without: str = "") -> bytes:
    """An index of ``arrays`` with their blocks' CRC-32s computed again (``crc``: what a writer with a
    bug would write) or as they were (bytes damaged after writing)."""
    data = {k: v for k, v in arrays.items() if not k.endswith("__crc32") and k != "crc_block"}
    members = columns_module.with_block_crc32(data) if crc else arrays
    kept: dict[str, Any] = {k: v for k, v in members.items() if k != without}
    buffer = io.BytesIO()
    np.savez(buffer, **kept)
    return buffer.getvalue()


def broken_at_load(good: bytes) -> dict[str, bytes]:
    """Damaged copies of a good index whose damage shows in its structure, types, shapes or end points."""
    arrays = index_members(good)

    def saved(*, without: str = "", crc: bool = True, **changes: np.ndarray) -> bytes:
        return saved_index({**arrays, **changes}, crc=crc, without=without)

    format_2: dict[str, Any] = {k: v for k, v in arrays.items() if "crc" not in k}
    format_2["format"] = np.array([2], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **format_2)
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "truncated by a byte": good[:-1],
        "garbage": b"not an index at all",
        "frames short": saved(frames=arrays["frames"][:-1]),
        "frames short, old CRC-32s": saved(frames=arrays["frames"][:-1], crc=False),
        "offsets decreasing": saved(frame_offsets=arrays["frame_offsets"][::-1].copy()),
        "wrong dtype": saved(frames=arrays["frames"].astype(np.int64)),
        "sha256 shape": saved(sha256=np.zeros((0, 32), np.uint8)),
        "array missing": saved(without="uris_data"),
        "CRC-32s missing": saved(without="frames__crc32"),
        "CRC-32s of another block size": saved(crc_block=np.array([16], dtype=np.int64), crc=False),
        "other format": saved(format=np.array([99], dtype=np.int64)),
        "format 2 (no CRC-32s)": buffer.getvalue(),
        "split clip count": saved(split_clips=arrays["split_clips"][:-1]),
        "split starts moved": saved(
            split_starts=np.array([0, 1, 1, len(ENTRIES)][: len(arrays["split_starts"])])
        ),
        "split sample counts end": saved(split_sample_offsets=arrays["split_sample_offsets"] + 1),
        "per-split arrays missing": saved(without="split_sample_offsets"),
    }


def test_an_index_broken_where_load_looks_is_ignored_and_rewritten(store: ObjectStore) -> None:
    text = manifest_text(ENTRIES)
    store.write_text("m.jsonl", text)
    read_manifest_columns(store, "m.jsonl")
    good = store.read_bytes("m.index.npz")
    expected = parse_manifest_columns(text.encode(), "m.jsonl")

    for name, damaged in broken_at_load(good).items():
        store.write_bytes("m.index.npz", damaged)
        columns = read_manifest_columns(store, "m.jsonl")
        assert columns.origin == "", name  # parsed, not read from the damaged index
        assert_same_columns(columns, expected)
        assert store.read_bytes("m.index.npz") == good, name  # written again from the parse


def damaged_entries() -> list[ManifestEntry]:
    """1,200 clips in both splits, some without frames: the arrays span several CRC-32 blocks."""
    rng = random.Random(5)
    return [
        entry(
            i, rng.choice(["train", "train", "val"]), tuple(sorted(rng.sample(range(40), rng.randint(0, 4))))
        )
        for i in range(1200)
    ]


def broken_at_read(good: bytes) -> dict[str, bytes]:
    """Damaged copies of a good index whose types, shapes and end points are right: damage that only the
    items read (with their CRC-32s computed again, as a writer with a bug would) or the CRC-32s show
    (damaged bytes in blocks that load does not read)."""
    arrays = index_members(good)
    n = len(arrays["splits"])
    train, val = (np.flatnonzero(arrays["splits"] == code) for code in (0, 1))

    def changed(name: str, at: int | slice, value: object, *, crc: bool = True) -> bytes:
        array = arrays[name].copy()
        array[at] = value
        return saved_index({**arrays, name: array}, crc=crc)

    counts = arrays["split_sample_offsets"]
    middle = int(np.flatnonzero(np.diff(counts) > 0)[len(train) // 2])
    offsets = arrays["frame_offsets"]
    busy = int(np.flatnonzero(np.diff(offsets) > 1)[n // 2])  # a clip with 2 frames or more
    flipped = {name: bytearray(saved_index(arrays, crc=True)) for name in ("frames", "split_clips")}
    damaged = {
        "running counts out of order": changed(
            "split_sample_offsets", middle, int(counts[middle + 1]) + 3
        ),
        "running counts of another clip": changed("split_sample_offsets", slice(middle, middle + 2),
                                                  counts[middle + 1 : middle + 3]),
        "a clip outside the split": changed("split_clips", len(train) // 2, int(val[len(val) // 2])),
        "split clips reordered": changed("split_clips", slice(0, len(train)), train[::-1]),
        "split clip out of range": changed("split_clips", 3, n + 5),
        "split code out of range": changed("splits", slice(None), 7),
        "split codes swapped": changed("splits", int(train[10]), 1),
        "wrong frame counts": changed("frame_offsets", busy + 1, int(offsets[busy + 1]) - 1),
        "frame offsets past the end": changed("frame_offsets", busy, len(arrays["frames"]) + 9),
        "uri offsets out of order": changed("uris_offsets", 7, int(arrays["uris_offsets"][9])),
        "frames changed, old CRC-32s": changed("frames", 100, 999, crc=False),
        "frame offsets changed, old CRC-32s": changed("frame_offsets", n // 2, 0, crc=False),
        "a clip outside the split, old CRC-32s": changed(
            "split_clips", len(train) // 2, int(val[0]), crc=False
        ),
    }  # fmt: skip
    for name, data in flipped.items():
        # One bit flipped in the middle of the member's data, found by its bytes.
        member = arrays[name].tobytes()
        where = data.index(member) + len(member) // 2
        data[where] ^= 0x10
        damaged[f"a bit flipped in {name}"] = bytes(data)
    return damaged


def samples_or_errors(columns: ManifestColumns, expected: dict[str | None, list[tuple[str, int]]]) -> int:
    """Check every sample of every split: the right ``(clip, frame)`` or an IndexDamagedError naming the
    index, never a wrong one; the number of errors."""
    errors = 0
    for split, want in expected.items():
        samples = columns.samples(split)
        assert len(samples) == len(want)
        for i, right in enumerate(want):
            try:
                position, frame = samples.locate(i)
                got = (columns.clip_ids[position], frame)
                columns.uris[position], columns.sha256_hex(position)
            except IndexDamagedError as exc:
                message = str(exc)
                errors += 1
                if (
                    "m.index.npz: this manifest index is damaged (" not in message
                    or "delete it" not in message
                ):
                    raise AssertionError(f"unclear error: {message}") from exc
                continue
            assert got == right, (split, i)
    return errors


def test_an_index_damaged_where_load_does_not_look_raises_at_the_sample_that_reads_it(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damaged items are found where they are read: each sample is right or raises, never wrong."""
    entries = damaged_entries()
    store.write_text("m.jsonl", manifest_text(entries))
    read_manifest_columns(store, "m.jsonl")
    good = store.read_bytes("m.index.npz")
    expected = {
        split: [(e.clip_id, f) for e in entries if split in (None, e.split) for f in e.frames]
        for split in (None, "train", "val")
    }
    forbid_parsing(monkeypatch)
    assert samples_or_errors(read_manifest_columns(store, "m.jsonl"), expected) == 0

    for name, damaged in broken_at_read(good).items():
        store.write_bytes("m.index.npz", damaged)
        columns = read_manifest_columns(store, "m.jsonl")

        assert columns.origin.endswith("m.index.npz"), name  # used: its damage does not show at load
        errors = samples_or_errors(columns, expected)
        assert errors > 0, name
        if not any(word in name for word in ("reordered", "code out of range", "CRC", "flipped")):
            # One wrong item: only the samples that read it fail (a damaged block fails every sample whose
            # lookup reads the block, the first steps of a binary search included).
            assert errors < sum(len(v) for v in expected.values()) // 2, name


def test_any_byte_of_an_index_damaged_gives_the_right_samples_or_an_error(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes flipped anywhere in the index (headers, arrays, CRC-32s, the zip's directory): the index is
    ignored at load (parsed instead) or each sample is right or raises IndexDamagedError."""
    entries = damaged_entries()[:300]
    store.write_text("m.jsonl", manifest_text(entries))
    read_manifest_columns(store, "m.jsonl")
    good = store.read_bytes("m.index.npz")
    expected = {
        split: [(e.clip_id, f) for e in entries if split in (None, e.split) for f in e.frames]
        for split in (None, "train")
    }
    rng = random.Random(17)
    outcomes = {"ignored": 0, "raised": 0, "unharmed": 0}
    for where in sorted(rng.sample(range(len(good)), 150)):
        damaged = bytearray(good)
        damaged[where] ^= 1 << rng.randrange(8)
        store.write_bytes("m.index.npz", bytes(damaged))
        columns = read_manifest_columns(store, "m.jsonl")
        if not columns.origin:
            outcomes["ignored"] += 1
            assert sample_list(columns, "train") == expected["train"]
            continue
        outcomes["raised" if samples_or_errors(columns, expected) else "unharmed"] += 1
    assert outcomes["ignored"] > 0, outcomes
    assert outcomes["raised"] > 0, outcomes


def sample_list(columns: ManifestColumns, split: str | None) -> list[tuple[str, int]]:
    """Today's sample list of ``split``: the copied columns of ``select``, clip by clip, frame by frame."""
    chosen = columns.select(split)
    offsets = chosen.frame_offsets.tolist()
    return [
        (chosen.clip_ids[i], int(chosen.frames[j]))
        for i in range(len(chosen))
        for j in range(offsets[i], offsets[i + 1])
    ]


@pytest.mark.parametrize("from_index", [True, False])
def test_the_mapped_split_samples_equal_select(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, from_index: bool
) -> None:
    """What the Dataset serves (views on the index's per-split arrays) is the sample list select() copied."""
    rng = random.Random(11)
    entries = [
        entry(
            i, rng.choice(["train", "train", "val"]), tuple(sorted(rng.sample(range(50), rng.randint(0, 6))))
        )
        for i in range(3000)
    ]
    text = manifest_text(entries)
    store.write_text("m.jsonl", text)
    read_manifest_columns(store, "m.jsonl")
    if from_index:
        forbid_parsing(monkeypatch)
    columns = (
        read_manifest_columns(store, "m.jsonl") if from_index else parse_manifest_columns(text.encode(), "m")
    )

    for split in (None, "train", "val"):
        samples = columns.samples(split)
        got = [samples.locate(i) for i in range(len(samples))]
        assert [(columns.clip_ids[c], f) for c, f in got] == sample_list(columns, split), split
        assert samples.n_clips == len(columns.select(split))
        expected = [(e.clip_id, f) for e in entries if split in (None, e.split) for f in e.frames]
        assert sample_list(columns, split) == expected
        with pytest.raises(IndexError):
            samples.locate(len(samples))
    if from_index:  # views on the index file: nothing per clip or per sample was read into memory
        train = columns.samples("train")
        assert isinstance(train.positions, FileArray)
        assert isinstance(train.offsets, FileArray)
        assert isinstance(columns.samples(None).offsets, FileArray)


def test_split_samples_of_a_one_split_manifest_and_of_empty_splits(store: ObjectStore) -> None:
    only_val = [replace(e, split="val") for e in ENTRIES]
    store.write_text("m.jsonl", manifest_text(only_val))
    read_manifest_columns(store, "m.jsonl")
    columns = read_manifest_columns(store, "m.jsonl")

    assert len(columns.samples("train")) == 0
    assert columns.samples("train").n_clips == 0
    val = columns.samples("val")
    assert [val.locate(i)[1] for i in range(len(val))] == [0, 5, 10, 0, 3, 4, 7, 8, 9]


def test_a_store_that_refuses_the_index_still_gives_the_columns(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_text("m.jsonl", manifest_text(ENTRIES))

    def refuse(key: str, data: bytes, *, exclusive: bool = False) -> bool:
        raise StorageError(f"{key}: read-only credentials")

    monkeypatch.setattr(store, "write_bytes", refuse)
    columns = read_manifest_columns(store, "m.jsonl")

    assert [columns.clip_ids[i] for i in range(len(columns))] == [e.clip_id for e in ENTRIES]
    assert not store.exists("m.index.npz")


def test_reading_without_write_index_leaves_no_index(store: ObjectStore) -> None:
    store.write_text("m.jsonl", manifest_text(ENTRIES))

    assert len(read_manifest_columns(store, "m.jsonl", write_index=False)) == len(ENTRIES)
    assert not store.exists("m.index.npz")
