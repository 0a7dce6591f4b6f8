"""Synthetic scenes: determinism, valid and exact ground truth, events, landing and sidecars."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import av
import numpy as np
import pytest

from dataengine.clips import video_id_for
from dataengine.errors import ConfigError, ObjectNotFoundError
from dataengine.formats import ClipAnnotations, validate_document
from dataengine.storage import ObjectStore
from dataengine.synthetic import (
    MIN_VISIBLE_FRACTION,
    SyntheticEvent,
    SyntheticScene,
    ground_truth_key,
    load_ground_truth,
    random_events,
    render_video,
    write_landing,
)

KEY_PATTERN = re.compile(r"^landing/cam0[1-3]/\d{4}-\d{2}-\d{2}/\d{6}\.mp4$")


def _frames(scene: SyntheticScene) -> list[tuple[int, np.ndarray, list]]:  # type: ignore[type-arg]
    return list(scene.frames())


def _boxes_by_frame(scene: SyntheticScene) -> list[list[tuple[str, int | None, tuple[float, ...]]]]:
    return [[(b.label, b.track, b.xyxy) for b in boxes] for _, _, boxes in scene.frames()]


# Determinism ------------------------------------------------------------------------------------


def test_same_seed_gives_same_pixels_and_boxes() -> None:
    first = _frames(SyntheticScene(seed=7, n_frames=15))
    second = _frames(SyntheticScene(seed=7, n_frames=15))
    assert [i for i, _, _ in first] == list(range(15))
    for (i, rgb_a, boxes_a), (j, rgb_b, boxes_b) in zip(first, second, strict=True):
        assert i == j
        assert rgb_a.shape == (240, 320, 3)
        assert rgb_a.dtype == np.uint8
        assert np.array_equal(rgb_a, rgb_b)
        assert boxes_a == boxes_b


def test_frames_can_be_iterated_twice() -> None:
    scene = SyntheticScene(seed=3, n_frames=8)
    assert _boxes_by_frame(scene) == _boxes_by_frame(scene)


def test_other_seed_gives_other_scene() -> None:
    _, rgb_a, _ = next(SyntheticScene(seed=1, n_frames=1).frames())
    _, rgb_b, _ = next(SyntheticScene(seed=2, n_frames=1).frames())
    assert np.abs(rgb_a.astype(int) - rgb_b.astype(int)).mean() > 10


def test_render_video_gives_same_bytes_and_ground_truth(tmp_path: Path) -> None:
    scene = SyntheticScene(seed=11, n_frames=12, events=[SyntheticEvent("lighting", 3, 6)])
    truth_a = render_video(tmp_path / "a.mp4", scene=scene)
    truth_b = render_video(tmp_path / "b.mp4", scene=scene)
    bytes_a = (tmp_path / "a.mp4").read_bytes()
    assert bytes_a == (tmp_path / "b.mp4").read_bytes()
    assert truth_a.frames == truth_b.frames
    assert truth_a.clip_id == f"{video_id_for(hashlib.sha256(bytes_a).hexdigest())}-0000000"


# Ground truth -----------------------------------------------------------------------------------


def test_render_video_writes_h264_and_valid_ground_truth(tmp_path: Path) -> None:
    events = [SyntheticEvent("occlusion", 2, 8), SyntheticEvent("rare_class", 4, 12)]
    scene = SyntheticScene(seed=5, n_frames=20, fps=10.0, events=events)
    truth = render_video(tmp_path / "v.mp4", scene=scene)
    validate_document(truth.to_dict(), source_name="test")
    assert truth.source == "synthetic"
    assert truth.version == 1
    assert truth.classes == ["person", "bed", "wheelchair"]
    assert truth.producer == {
        "renderer": "dataengine.synthetic",
        "seed": 5,
        "events": [
            {"kind": "occlusion", "start_frame": 2, "end_frame": 8},
            {"kind": "rare_class", "start_frame": 4, "end_frame": 12},
        ],
    }
    assert [f.index for f in truth.frames] == list(range(20))
    assert [f.image for f in truth.frames[:2]] == ["frames/000000.jpg", "frames/000001.jpg"]
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate or 0) == 10.0
        assert sum(1 for _ in container.decode(stream)) == 20


def test_boxes_are_inside_the_frame_and_well_formed() -> None:
    for seed in range(6):
        scene = SyntheticScene(seed=seed, n_frames=40, width=160, height=120)
        for _, _, boxes in scene.frames():
            for box in boxes:
                x1, y1, x2, y2 = box.xyxy
                assert 0 <= x1 < x2 <= 160
                assert 0 <= y1 < y2 <= 120
                assert box.origin == "synthetic"
                assert box.score is None
                assert box.label in scene.classes
                assert isinstance(box.track, int)


def test_box_covers_exactly_the_painted_object() -> None:
    """One object, no events: pixels outside its box are background, inside it many are not."""
    scene = SyntheticScene(seed=4, n_frames=20, n_objects=1)
    background = scene._background.astype(int)
    checked = 0
    for _, rgb, boxes in scene.frames():
        changed = np.abs(rgb.astype(int) - background).max(axis=2) > 20
        outside = np.ones(changed.shape, dtype=bool)
        for box in boxes:
            x1, y1, x2, y2 = (int(v) for v in box.xyxy)
            outside[y1:y2, x1:x2] = False
            assert changed[y1:y2, x1:x2].mean() > 0.2
            checked += 1
        assert changed[outside].sum() == 0
    assert checked > 0


def test_tracks_keep_their_label_and_move() -> None:
    scene = SyntheticScene(seed=9, n_frames=30, n_objects=3)
    labels: dict[int | None, set[str]] = {}
    first_last: dict[int | None, list[tuple[float, ...]]] = {}
    for _, _, boxes in scene.frames():
        for box in boxes:
            labels.setdefault(box.track, set()).add(box.label)
            first_last.setdefault(box.track, []).append(box.xyxy)
    assert set(labels) <= {0, 1, 2}
    assert all(len(names) == 1 for names in labels.values())
    assert any(xyxys[0] != xyxys[-1] for xyxys in first_last.values())


def test_classes_are_distinct_shapes() -> None:
    """Persons are tall, beds are wide, wheelchairs roughly square: the shapes a detector can learn."""
    aspects: dict[str, list[float]] = {"person": [], "bed": [], "wheelchair": []}
    for seed in range(40):
        scene = SyntheticScene(seed=seed, n_frames=1, events=[SyntheticEvent("rare_class", 0, 1)])
        for mover in scene._movers:
            aspects[mover.label].append(mover.sprite.width / mover.sprite.height)
    assert max(aspects["person"]) < 0.5
    assert min(aspects["bed"]) > 1.8
    assert 0.8 < min(aspects["wheelchair"]) <= max(aspects["wheelchair"]) < 1.2


def test_rare_class_is_rare_without_events() -> None:
    labels = [m.label for seed in range(300) for m in SyntheticScene(seed=seed, n_frames=1)._movers]
    share = labels.count("wheelchair") / len(labels)
    assert 0 < share < 0.1
    assert labels.count("person") > 0.3 * len(labels)
    assert labels.count("bed") > 0.3 * len(labels)


def test_rare_probability_sets_how_often_ordinary_objects_are_rare() -> None:
    def labels(p: float) -> list[str]:
        return [
            m.label
            for seed in range(100)
            for m in SyntheticScene(seed=seed, n_frames=1, rare_probability=p)._movers
        ]

    assert "wheelchair" not in labels(0.0)
    assert set(labels(1.0)) == {"wheelchair"}
    # A rare_class event still brings one in when ordinary objects never are.
    event = SyntheticScene(
        seed=3, n_frames=6, rare_probability=0.0, events=[SyntheticEvent("rare_class", 2, 4)]
    )
    seen = [{b.label for b in boxes} for _, _, boxes in event.frames()]
    assert ["wheelchair" in s for s in seen] == [False, False, True, True, False, False]
    with pytest.raises(ConfigError, match=r"rare_probability must lie in \[0, 1\], got 1.5"):
        SyntheticScene(seed=1, rare_probability=1.5)


def test_custom_classes_use_generic_shapes() -> None:
    scene = SyntheticScene(seed=1, n_frames=3, classes=("car", "dog"), n_objects=4)
    labels = {box.label for _, _, boxes in scene.frames() for box in boxes}
    assert labels <= {"car", "dog"}
    assert labels


# Events -----------------------------------------------------------------------------------------


def test_lighting_changes_brightness_only_in_range() -> None:
    plain = _frames(SyntheticScene(seed=2, n_frames=12))
    lit = _frames(SyntheticScene(seed=2, n_frames=12, events=[SyntheticEvent("lighting", 4, 8)]))
    for (i, rgb_plain, boxes_plain), (_, rgb_lit, boxes_lit) in zip(plain, lit, strict=True):
        assert boxes_plain == boxes_lit
        if 4 <= i < 8:
            assert abs(rgb_lit.mean() - rgb_plain.mean()) > 15
        else:
            assert np.array_equal(rgb_lit, rgb_plain)


def test_occlusion_hides_objects_in_range() -> None:
    events = [SyntheticEvent("occlusion", 5, 15)]
    plain = _frames(SyntheticScene(seed=6, n_frames=20, n_objects=3))
    occluded = _frames(SyntheticScene(seed=6, n_frames=20, n_objects=3, events=events))
    hidden = 0
    for (i, rgb_plain, boxes_plain), (_, rgb_occ, boxes_occ) in zip(plain, occluded, strict=True):
        tracks_plain = {b.track for b in boxes_plain}
        tracks_occ = {b.track for b in boxes_occ}
        assert tracks_occ <= tracks_plain
        if 5 <= i < 15:
            hidden += len(tracks_plain - tracks_occ)
        else:
            assert np.array_equal(rgb_plain, rgb_occ)
            assert boxes_plain == boxes_occ
    assert hidden >= 3  # Every object disappears behind the panel at least once.


def test_rare_class_event_adds_a_wheelchair_in_range() -> None:
    n_objects = 2
    events = [SyntheticEvent("rare_class", 6, 16)]
    plain = _boxes_by_frame(SyntheticScene(seed=8, n_frames=24, n_objects=n_objects))
    with_event = _boxes_by_frame(SyntheticScene(seed=8, n_frames=24, n_objects=n_objects, events=events))
    assert all(box[0] != "wheelchair" for boxes in plain for box in boxes)
    seen_in = []
    for i, (boxes_plain, boxes_event) in enumerate(zip(plain, with_event, strict=True)):
        extra = [box for box in boxes_event if box[1] == n_objects]
        if 6 <= i < 16:
            assert [box[0] for box in extra] in ([], ["wheelchair"])
            seen_in += [i] if extra else []
        else:
            assert boxes_event == boxes_plain
    assert len(seen_in) >= 5


def test_random_events_policy() -> None:
    policies = [random_events(seed=seed, n_frames=100) for seed in range(300)]
    assert policies == [random_events(seed=seed, n_frames=100) for seed in range(300)]
    with_events = sum(1 for events in policies if events)
    assert 0.2 * 300 < with_events < 0.5 * 300
    kinds = {event.kind for events in policies for event in events}
    assert kinds == {"occlusion", "lighting", "rare_class"}
    for events in policies:
        for event in events:
            assert 0 <= event.start_frame < event.end_frame <= 100
    assert random_events(seed=1, n_frames=2) == []


def test_invalid_events_and_scenes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown synthetic event kind"):
        SyntheticEvent("fog", 0, 5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="start_frame < end_frame"):
        SyntheticEvent("lighting", 5, 5)
    with pytest.raises(ConfigError, match="even"):
        SyntheticScene(seed=1, width=321)
    with pytest.raises(ConfigError, match="seed"):
        SyntheticScene(seed=-1)
    with pytest.raises(ConfigError, match="at least one frame"):
        render_video(tmp_path / "empty.mp4", scene=SyntheticScene(seed=1, n_frames=0))
    assert list(SyntheticScene(seed=1, n_frames=0).frames()) == []


def test_visibility_threshold_is_documented_value() -> None:
    assert pytest.approx(0.3) == MIN_VISIBLE_FRACTION


# Landing and sidecars ---------------------------------------------------------------------------


def test_ground_truth_key() -> None:
    assert (
        ground_truth_key("landing/cam01/2026-11-22/080000.mp4") == "landing/cam01/2026-11-22/080000.gt.json"
    )
    assert ground_truth_key("video.mov") == "video.gt.json"


def test_write_landing_and_load_ground_truth(store: ObjectStore) -> None:
    keys = write_landing(store, n_videos=4, seed=3, seconds=1.0, fps=10.0)
    assert len(keys) == 4
    assert len(set(keys)) == 4
    assert all(KEY_PATTERN.match(key) for key in keys)
    assert {key.split("/")[1] for key in keys} == {"cam01", "cam02", "cam03"}
    for key in keys:
        truth = load_ground_truth(store, store.uri(key))
        sha = hashlib.sha256(store.read_bytes(key)).hexdigest()
        assert truth.clip_id == f"{video_id_for(sha)}-0000000"
        assert len(truth.frames) == 10
        assert truth.created_at.startswith("2026-11-22T")
        assert load_ground_truth(store, key) == truth


def test_write_landing_is_deterministic(tmp_path: Path) -> None:
    store_a = ObjectStore(f"file://{tmp_path / 'a'}")
    store_b = ObjectStore(f"file://{tmp_path / 'b'}")
    keys = write_landing(store_a, n_videos=3, seed=42, seconds=0.5, with_events=False)
    assert write_landing(store_b, n_videos=3, seed=42, seconds=0.5, with_events=False) == keys
    assert store_a.list() == store_b.list()
    for key in store_a.list():
        assert store_a.read_bytes(key) == store_b.read_bytes(key)
    for key in keys:
        assert load_ground_truth(store_a, key).producer["events"] == []


def test_load_ground_truth_next_to_a_local_file(tmp_path: Path, store: ObjectStore) -> None:
    video = tmp_path / "outside" / "clip.mp4"
    truth = render_video(video, scene=SyntheticScene(seed=1, n_frames=3))
    video.with_suffix(".gt.json").write_bytes(truth.to_json_bytes())
    loaded = load_ground_truth(store, f"file://{video}")
    assert loaded == ClipAnnotations.from_json_bytes(truth.to_json_bytes())


def test_missing_sidecar_names_the_expected_file(tmp_path: Path, store: ObjectStore) -> None:
    store.write_bytes("landing/cam01/2026-11-22/080000.mp4", b"not checked")
    with pytest.raises(ObjectNotFoundError, match=r"080000\.gt\.json"):
        load_ground_truth(store, store.uri("landing/cam01/2026-11-22/080000.mp4"))
    with pytest.raises(ObjectNotFoundError, match=r"other\.gt\.json"):
        load_ground_truth(store, f"file://{tmp_path / 'other.mp4'}")
