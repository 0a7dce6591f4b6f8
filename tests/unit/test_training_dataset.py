"""ClipFrameDataset on hand-made clips: targets, empty frames, sha256 checks, lazy reads, flips, manifests."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader

from dataengine import clips, formats
from dataengine.errors import FormatError, IndexDamagedError, ObjectNotFoundError
from dataengine.formats import Box, ClipAnnotations, Frame, sha256_hex
from dataengine.storage import ObjectStore
from dataengine.training import ClipFrameDataset, ManifestEntry, collate, manifest_key, read_manifest
from dataengine.training import columns as columns_module

CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 64, 48
MANIFEST = manifest_key("unit", 1)
#: Frame index -> boxes, for three clips of two videos (video "a" has two clips).
CLIP_A0 = {
    0: [
        Box("person", (4.0, 5.5, 20.25, 40.0), origin="human"),
        Box("bed", (30.0, 10.0, 60.0, 30.0), origin="human"),
    ],
    5: [],
    10: [Box("wheelchair", (1.0, 2.0, 3.0, 4.0), origin="human")],
}
CLIP_A1 = {0: [Box("bed", (10.0, 10.0, 50.0, 47.0), origin="human")], 5: []}
CLIP_B0 = {0: [], 5: [Box("person", (0.0, 0.0, 64.0, 48.0), origin="human")]}


def video_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def frame_rgb(index: int) -> NDArray[np.uint8]:
    """A frame whose left and right halves differ, so a horizontal flip is visible."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, : WIDTH // 2] = 40 + 10 * (index % 5)
    image[:, WIDTH // 2 :] = 220
    return image


@dataclass
class HandClip:
    """A clip written to the store: its id, labelled frames and saved annotation file."""

    clip_id: str
    video_id: str
    frames: dict[int, list[Box]]
    saved: formats.SavedAnnotation

    def entry(self, split: str, frames: Sequence[int] | None = None) -> ManifestEntry:
        """Its manifest line, listing ``frames`` (default: every labelled frame)."""
        return ManifestEntry(
            clip_id=self.clip_id,
            video_id=self.video_id,
            annotation_version=self.saved.version,
            uri=self.saved.uri,
            sha256=self.saved.sha256,
            split=split,
            frames=tuple(sorted(self.frames) if frames is None else frames),
            width=WIDTH,
            height=HEIGHT,
            n_boxes=sum(len(boxes) for boxes in self.frames.values()),
        )


def write_clip(
    store: ObjectStore,
    video: str,
    start_frame: int,
    frames: dict[int, list[Box]],
    *,
    classes: Sequence[str] = CLASSES,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> HandClip:
    """Write the clip's JPEG frames and its version-1 annotation file."""
    vid = video_id(video)
    clip_id = clips.clip_id_for(vid, start_frame)
    for index in frames:
        store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(frame_rgb(index)))
    annotations = ClipAnnotations(
        clip_id=clip_id,
        version=1,
        source="review",
        classes=list(classes),
        frames=[
            Frame(index=i, image=clips.frame_name(i), width=size[0], height=size[1], boxes=list(boxes))
            for i, boxes in frames.items()
        ],
    )
    return HandClip(clip_id, vid, frames, formats.save_annotations(store, annotations))


def write_manifest(store: ObjectStore, entries: Sequence[ManifestEntry], key: str = MANIFEST) -> str:
    store.write_bytes(key, "".join(e.to_json_line() + "\n" for e in entries).encode())
    return key


@pytest.fixture
def hand_clips(store: ObjectStore) -> list[HandClip]:
    """Three clips: a0 and a1 (video a) in train, b0 (video b) in val, with a manifest."""
    made = [
        write_clip(store, "a", 0, CLIP_A0),
        write_clip(store, "a", 100, CLIP_A1),
        write_clip(store, "b", 0, CLIP_B0),
    ]
    write_manifest(store, [made[0].entry("train"), made[1].entry("train"), made[2].entry("val")])
    return made


def dataset(store: ObjectStore, split: str | None = "train", *, hflip_prob: float = 0.0) -> ClipFrameDataset:
    return ClipFrameDataset(store, MANIFEST, split=split, classes=CLASSES, hflip_prob=hflip_prob)


def expected_target(boxes: list[Box]) -> tuple[torch.Tensor, torch.Tensor]:
    xyxy = torch.tensor([b.xyxy for b in boxes], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([CLASSES.index(b.label) + 1 for b in boxes], dtype=torch.int64)
    return xyxy, labels


def count_reads(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every key the store reads from now on."""
    keys: list[str] = []
    read: Callable[[str], bytes] = store.read_bytes

    def recording(key: str) -> bytes:
        keys.append(key)
        return read(key)

    monkeypatch.setattr(store, "read_bytes", recording)
    return keys


# Length and order ------------------------------------------------------------------------------


@pytest.mark.usefixtures("hand_clips")
def test_len_counts_the_labelled_frames_of_the_split(store: ObjectStore) -> None:
    train, val, every = dataset(store, "train"), dataset(store, "val"), dataset(store, None)

    assert (len(train), train.n_clips) == (5, 2)
    assert (len(val), val.n_clips) == (2, 1)
    assert (len(every), every.n_clips) == (7, 3)


def test_samples_follow_the_manifest_order(store: ObjectStore, hand_clips: list[HandClip]) -> None:
    train = dataset(store)

    a0, a1 = hand_clips[0].clip_id, hand_clips[1].clip_id
    assert [train.sample(i) for i in range(len(train))] == [(a0, 0), (a0, 5), (a0, 10), (a1, 0), (a1, 5)]


def test_only_the_frames_the_manifest_lists_are_samples(
    store: ObjectStore, hand_clips: list[HandClip]
) -> None:
    write_manifest(store, [hand_clips[0].entry("train", frames=[10])])

    train = dataset(store)

    assert len(train) == 1
    assert train.sample(0) == (hand_clips[0].clip_id, 10)
    assert train[0][1]["labels"].tolist() == [CLASSES.index("wheelchair") + 1]


def test_a_split_with_no_clips_is_empty(store: ObjectStore, hand_clips: list[HandClip]) -> None:
    write_manifest(store, [hand_clips[0].entry("train")])

    val = dataset(store, "val")

    assert (len(val), val.n_clips) == (0, 0)
    with pytest.raises(IndexError, match="out of range"):
        val[0]


@pytest.mark.usefixtures("hand_clips")
def test_an_index_past_the_end_is_an_index_error(store: ObjectStore) -> None:
    train = dataset(store)

    with pytest.raises(IndexError, match="sample 5 out of range for a dataset of 5 frames"):
        train[5]


# Targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_targets_equal_the_boxes_of_the_annotation_files(
    store: ObjectStore, hand_clips: list[HandClip], split: str
) -> None:
    frames = dataset(store, split)
    by_clip = {clip.clip_id: clip.frames for clip in hand_clips}

    for i in range(len(frames)):
        image, target = frames[i]
        clip_id, frame_index = frames.sample(i)
        boxes, labels = expected_target(by_clip[clip_id][frame_index])
        assert target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64
        assert torch.equal(target["boxes"], boxes)
        assert torch.equal(target["labels"], labels)
        assert image.shape == (3, HEIGHT, WIDTH)
        assert image.dtype == torch.float32
        assert float(image.min()) >= 0.0
        assert float(image.max()) <= 1.0


@pytest.mark.usefixtures("hand_clips")
def test_labels_are_the_class_index_plus_one(store: ObjectStore) -> None:
    _, target = dataset(store)[0]

    assert target["labels"].tolist() == [1, 2]  # person, bed: 0 is torchvision's background
    assert target["boxes"].tolist() == [[4.0, 5.5, 20.25, 40.0], [30.0, 10.0, 60.0, 30.0]]


@pytest.mark.usefixtures("hand_clips")
def test_the_image_is_the_decoded_frame(store: ObjectStore) -> None:
    image, _ = dataset(store)[1]  # clip a0, frame 5

    expected = torch.from_numpy(frame_rgb(5)).permute(2, 0, 1).float() / 255.0
    assert float((image - expected).abs().max()) < 0.05  # JPEG is lossy


@pytest.mark.usefixtures("hand_clips")
def test_a_frame_without_boxes_is_an_empty_target(store: ObjectStore) -> None:
    image, target = dataset(store)[1]  # clip a0, frame 5: a labelled negative

    assert target["boxes"].shape == (0, 4)
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,)
    assert target["labels"].dtype == torch.int64
    assert image.shape == (3, HEIGHT, WIDTH)


def test_a_clip_of_only_negatives_gives_only_empty_targets(store: ObjectStore) -> None:
    empty = write_clip(store, "c", 0, {0: [], 5: [], 10: []})
    write_manifest(store, [empty.entry("train")])

    targets = [dataset(store)[i][1] for i in range(3)]

    assert [t["boxes"].shape for t in targets] == [(0, 4)] * 3


# Checks on read -------------------------------------------------------------------------------


def test_a_sha256_mismatch_is_an_error_naming_the_file(
    store: ObjectStore, hand_clips: list[HandClip]
) -> None:
    changed = ClipAnnotations(
        clip_id=hand_clips[0].clip_id,
        version=1,
        source="review",
        classes=CLASSES,
        frames=[Frame(index=i, image=clips.frame_name(i), width=WIDTH, height=HEIGHT) for i in CLIP_A0],
    )
    train = dataset(store)
    # Someone rewrites the immutable file behind the manifest's back.
    store.write_bytes(store.key_of(hand_clips[0].saved.uri), changed.to_json_bytes())

    with pytest.raises(FormatError, match="does not match the manifest") as info:
        train[0]
    assert hand_clips[0].saved.uri in str(info.value)
    assert hand_clips[0].saved.sha256 in str(info.value)


def test_a_manifest_with_a_wrong_sha256_is_refused(store: ObjectStore, hand_clips: list[HandClip]) -> None:
    wrong = replace(hand_clips[2].entry("val"), sha256="0" * 64)
    write_manifest(store, [hand_clips[0].entry("train"), wrong])
    val = dataset(store, "val")

    with pytest.raises(FormatError, match=re.escape(hand_clips[2].saved.uri)):
        val[0]
    assert dataset(store, "train")[0][1]["labels"].tolist() == [1, 2]  # the other clips still load


def test_init_reads_the_manifest_and_no_annotation_file(
    store: ObjectStore, hand_clips: list[HandClip], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_reads(store, monkeypatch)

    train = dataset(store)

    assert reads == [MANIFEST]
    assert len(train) == 5
    train[0]
    assert reads[1:] == [store.key_of(hand_clips[0].saved.uri), clips.frame_key(hand_clips[0].clip_id, 0)]


def test_a_second_dataset_is_served_from_the_index_the_first_wrote(
    store: ObjectStore, hand_clips: list[HandClip], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = dataset(store)

    def refuse(data: bytes, source: str) -> columns_module.ManifestColumns:
        raise AssertionError(f"{source} was parsed")

    monkeypatch.setattr(columns_module, "parse_manifest_columns", refuse)
    second, val = dataset(store), dataset(store, "val")

    assert store.exists(columns_module.index_key(MANIFEST))
    assert [second.sample(i) for i in range(len(second))] == [first.sample(i) for i in range(len(first))]
    assert [val.sample(i) for i in range(len(val))] == [
        (hand_clips[2].clip_id, 0),
        (hand_clips[2].clip_id, 5),
    ]
    for i in range(len(first)):
        assert torch.equal(second[i][1]["boxes"], first[i][1]["boxes"])
        assert torch.equal(second[i][1]["labels"], first[i][1]["labels"])


def damage_the_index(store: ObjectStore, **changes: Callable[[NDArray[Any]], None]) -> str:
    """Rewrite the manifest's index with arrays changed in place by ``changes`` and their CRC-32s computed
    again (as a writer with a bug would write them); the index's URI."""
    key = columns_module.index_key(MANIFEST)
    with np.load(io.BytesIO(store.read_bytes(key))) as npz:
        arrays = {n: npz[n] for n in npz.files if not n.endswith("__crc32") and n != "crc_block"}
    for name, change in changes.items():
        change(arrays[name])
    members: dict[str, Any] = columns_module.with_block_crc32(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    store.write_bytes(key, buffer.getvalue())
    return store.uri(key)


def test_a_damaged_index_raises_at_the_samples_that_read_it_never_a_wrong_sample(
    store: ObjectStore, hand_clips: list[HandClip]
) -> None:
    """The index is checked where it is read: the train split's second clip replaced by the val clip
    fails the two samples of that clip with an error naming the index, in the process and through a
    DataLoader worker; the other samples are still right."""
    first = dataset(store)
    right = [(first.sample(i), first[i][1]["labels"].tolist()) for i in range(len(first))]

    def val_clip_in_train(split_clips: NDArray[Any]) -> None:
        split_clips[1] = 2

    index_uri = damage_the_index(store, split_clips=val_clip_in_train)
    train = dataset(store)

    assert len(train) == 5
    assert [(train.sample(i), train[i][1]["labels"].tolist()) for i in range(3)] == right[:3]
    for i in (3, 4):
        with pytest.raises(
            IndexDamagedError, match=re.escape(index_uri) + r".*clip 2 is listed in the train"
        ):
            train[i]
    loader = DataLoader(train, batch_size=5, num_workers=1, collate_fn=collate)
    with pytest.raises(IndexDamagedError, match=re.escape(index_uri) + ".*delete it"):
        next(iter(loader))


def test_a_byte_of_the_index_damaged_since_it_was_written_raises_naming_the_index(
    store: ObjectStore, hand_clips: list[HandClip]
) -> None:
    dataset(store)
    key = columns_module.index_key(MANIFEST)
    data = bytearray(store.read_bytes(key))
    with np.load(io.BytesIO(bytes(data))) as npz:
        frames = npz["frames"].tobytes()
    data[data.index(frames) + 1] ^= 0x04  # a frame number, its CRC-32 left as it was
    store.write_bytes(key, bytes(data))
    train = dataset(store)

    with pytest.raises(IndexDamagedError, match=re.escape(store.uri(key)) + ".* do not match the CRC-32"):
        train[0]


def test_annotation_files_are_read_in_getitem_not_init(
    store: ObjectStore, hand_clips: list[HandClip]
) -> None:
    train = dataset(store)
    for clip in hand_clips:
        store.delete(store.key_of(clip.saved.uri))

    assert len(train) == 5  # __init__ worked without them
    with pytest.raises(ObjectNotFoundError, match=re.escape(hand_clips[0].saved.uri)):
        train[0]


def test_each_clip_file_is_read_once_while_cached(
    store: ObjectStore, hand_clips: list[HandClip], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = dataset(store)
    reads = count_reads(store, monkeypatch)

    for i in range(len(train)):
        train[i]
    train[0]

    annotation_reads = [key for key in reads if key.startswith("annotations/")]
    assert annotation_reads == [store.key_of(hand_clips[0].saved.uri), store.key_of(hand_clips[1].saved.uri)]


@pytest.mark.parametrize("data", [b"not json", b'{"frames": [{"index": 0}]}', b"[]"])
def test_a_file_that_is_not_an_annotation_document_is_an_error(
    store: ObjectStore, hand_clips: list[HandClip], data: bytes
) -> None:
    store.write_bytes("annotations/odd.json", data)
    odd = replace(
        hand_clips[0].entry("train"), uri=store.uri("annotations/odd.json"), sha256=sha256_hex(data)
    )
    write_manifest(store, [odd])

    with pytest.raises(FormatError, match=r"annotations/odd\.json: not a clip annotation file"):
        dataset(store)[0]


def test_a_frame_missing_from_the_file_is_an_error(store: ObjectStore, hand_clips: list[HandClip]) -> None:
    write_manifest(store, [hand_clips[1].entry("train", frames=[0, 5, 15])])
    train = dataset(store)

    assert len(train) == 3
    with pytest.raises(FormatError, match="frame 15 is listed in the manifest, not in the file"):
        train[2]


def test_a_label_outside_the_classes_is_an_error(store: ObjectStore) -> None:
    odd = write_clip(store, "d", 0, {0: [Box("cat", (1.0, 1.0, 9.0, 9.0), origin="human")]}, classes=["cat"])
    write_manifest(store, [odd.entry("train")])

    with pytest.raises(FormatError, match="label 'cat' is not one of the classes"):
        dataset(store)[0]


def test_an_image_of_another_size_than_its_annotation_is_an_error(store: ObjectStore) -> None:
    clip = write_clip(store, "e", 0, {0: []}, size=(WIDTH * 2, HEIGHT))
    write_manifest(store, [clip.entry("train")])

    with pytest.raises(FormatError, match=r"is 64x48, but its annotation says 128x48"):
        dataset(store)[0]


# Flips and batches -----------------------------------------------------------------------------


@pytest.mark.usefixtures("hand_clips")
def test_hflip_mirrors_the_image_and_the_boxes(store: ObjectStore) -> None:
    plain, flipped = dataset(store), dataset(store, hflip_prob=1.0)

    for i in range(len(plain)):
        image, target = plain[i]
        flipped_image, flipped_target = flipped[i]
        x1, y1, x2, y2 = target["boxes"].unbind(1)
        expected = torch.stack([WIDTH - x2, y1, WIDTH - x1, y2], 1)
        assert torch.equal(flipped_image, image.flip(-1))
        assert torch.equal(flipped_target["boxes"], expected)
        assert torch.equal(flipped_target["labels"], target["labels"])
        assert flipped_target["boxes"].shape == (len(target["labels"]), 4)


@pytest.mark.usefixtures("hand_clips")
def test_hflip_keeps_boxes_valid(store: ObjectStore) -> None:
    _, target = dataset(store, hflip_prob=1.0)[0]

    assert target["boxes"].tolist() == [[43.75, 5.5, 60.0, 40.0], [4.0, 10.0, 34.0, 30.0]]
    boxes = target["boxes"]
    assert bool((boxes[:, 0] < boxes[:, 2]).all())
    assert bool((boxes[:, 2] <= WIDTH).all())


@pytest.mark.usefixtures("hand_clips")
def test_collate_batches_lists_of_images_and_targets(store: ObjectStore) -> None:
    loader = DataLoader(dataset(store, None), batch_size=3, collate_fn=collate)

    batches = list(loader)

    assert [len(images) for images, _ in batches] == [3, 3, 1]
    assert [[len(t["labels"]) for t in targets] for _, targets in batches] == [[2, 0, 1], [1, 0, 0], [1]]


# Manifest lines -------------------------------------------------------------------------------


def test_manifest_lines_round_trip(store: ObjectStore, hand_clips: list[HandClip]) -> None:
    entries = read_manifest(store, MANIFEST)

    assert entries == [hand_clips[0].entry("train"), hand_clips[1].entry("train"), hand_clips[2].entry("val")]
    assert read_manifest(store, store.uri(MANIFEST)) == entries
    assert entries[0].n_frames == 3


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "line 2: not JSON"),
        ('{"clip_id": "x"}', "line 2: not a manifest entry"),
        ('{"clip_id": "a-1", "annotation_version": 1, "uri": "u", "sha256": "s", "split": "test", '
         '"frames": [0], "width": 4, "height": 4}', "split 'test' is not one of"),
    ],
)  # fmt: skip
def test_a_broken_manifest_line_is_a_format_error(
    store: ObjectStore, hand_clips: list[HandClip], line: str, problem: str
) -> None:
    store.write_bytes(MANIFEST, (hand_clips[0].entry("train").to_json_line() + "\n" + line + "\n").encode())

    with pytest.raises(FormatError, match=problem) as info:
        dataset(store)
    assert MANIFEST in str(info.value)
