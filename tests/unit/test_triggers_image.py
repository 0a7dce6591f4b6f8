"""Image-heuristic triggers and the anomaly autoencoder on synthetic frames with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from dataengine.errors import ConfigError, ModelError
from dataengine.storage import ObjectStore
from dataengine.synthetic import SyntheticEvent, SyntheticScene
from dataengine.synthetic.inject import InjectedEvent, inject
from dataengine.triggers import (
    ClipFrames,
)
from dataengine.triggers.anomaly import (
    CURRENT_KEY,
    current_anomaly_id,
    load_anomaly_model,
    save_anomaly_model,
    train_autoencoder,
)
from dataengine.triggers.image_signals import (
    blur_score,
    brightness_score,
    frame_stats,
    frame_stats_many,
    frozen_score,
    scene_cut_score,
)


def scene_frames(seed: int, n: int = 10) -> list[np.ndarray]:
    return [rgb for _, rgb, _ in SyntheticScene(seed=seed, width=96, height=72, n_frames=n).frames()]


def gray(level: int) -> np.ndarray:
    rng = np.random.default_rng(level)
    noise = rng.normal(0, 30, (72, 96, 3))
    return np.clip(level + noise, 0, 255).astype(np.uint8)


INDICES = list(range(0, 20, 2))


def test_ordinary_frames_fire_no_image_trigger() -> None:
    stats = frame_stats(scene_frames(1))
    for score in (brightness_score, blur_score, frozen_score, scene_cut_score):
        result = score(stats, INDICES)
        assert result.score < 0.2, (score.__name__, result.details)
        assert result.frames == []


def test_a_brightness_jump_and_a_dark_clip_fire_brightness() -> None:
    jump = brightness_score(frame_stats([gray(60)] * 3 + [gray(160)] * 3), [0, 1, 2, 3, 4, 5])
    assert jump.score == 1.0
    assert jump.frames == [3]
    dark = brightness_score(frame_stats([gray(12)] * 4), [0, 1, 2, 3])
    assert dark.score == pytest.approx(dark.details["dark"], abs=1e-6)
    assert dark.score > 0.6
    assert dark.frames == [0, 1, 2, 3]


def test_flat_contrast_fires_brightness() -> None:
    flat = [np.full((72, 96, 3), 120, np.uint8) for _ in range(3)]
    assert brightness_score(frame_stats(flat), [0, 1, 2]).details["flat"] == 1.0


def test_blurred_frames_fire_blur_on_those_frames() -> None:
    frames = inject(scene_frames(2), InjectedEvent("blur", 4, 7))
    result = blur_score(frame_stats(frames), INDICES)
    assert result.score == 1.0
    assert result.frames == [8, 10, 12]


def test_frozen_frames_fire_frozen() -> None:
    frames = inject(scene_frames(3), InjectedEvent("freeze", 3, 7))
    result = frozen_score(frame_stats(frames), INDICES)
    assert result.details["frozen_transitions"] == 4
    assert result.frames == [6, 8, 10, 12]
    assert result.score == pytest.approx(min(1.0, 2 * 4 / 9))


def video_clips(seed: int, event: SyntheticEvent | None, *, n_clips: int = 4) -> list[list[np.ndarray]]:
    """One video's clips of 5 frames (sampled every 2nd frame), the second holding ``event``."""
    events = [event] if event is not None else []
    scene = SyntheticScene(seed=seed, width=96, height=72, n_frames=10 * n_clips, events=events)
    frames = [rgb for i, rgb, _ in scene.frames() if i % 2 == 0]
    return [frames[5 * c : 5 * c + 5] for c in range(n_clips)]


@pytest.mark.parametrize("grouped", [True, False], ids=["with-its-video", "alone"])
def test_a_lighting_change_or_a_cut_is_not_a_frozen_camera(grouped: bool) -> None:
    lighting = video_clips(11, SyntheticEvent("lighting", 13, 20))
    cut = video_clips(12, None)
    cut[1] = inject(cut[1], InjectedEvent("cut", 2, 5), other=scene_frames(41, 3))
    for clips in (lighting, cut):
        stats = frame_stats_many(clips, ["v"] * len(clips) if grouped else None)
        result = frozen_score(stats[1], [0, 2, 4, 6, 8])
        # Two or three of the clip's four transitions are large; the others are ordinary motion.
        assert max(stats[1].frame_change) > 4 * min(stats[1].frame_change)
        assert result.score == 0.0, result.details
        assert result.frames == []


def test_a_frozen_clip_is_judged_against_its_video() -> None:
    clips = video_clips(13, None)
    clips[1] = inject(clips[1], InjectedEvent("freeze", 2, 5))
    stats = frame_stats_many(clips, ["v"] * len(clips))
    # The video's typical change is the median over all its clips' transitions.
    pooled = np.concatenate([s.frame_change for s in stats])
    assert [s.typical_change for s in stats] == [pytest.approx(float(np.median(pooled)))] * len(stats)
    result = frozen_score(stats[1], [0, 2, 4, 6, 8])
    # Frames 2-4 repeat frame 1: three still transitions, named by the frame after each.
    assert result.details["frozen_transitions"] == 3
    assert result.frames == [4, 6, 8]
    assert result.score == 1.0
    assert all(frozen_score(s, [0, 2, 4, 6, 8]).score == 0.0 for i, s in enumerate(stats) if i != 1)


def test_typical_change_is_pooled_per_video_only() -> None:
    clips = video_clips(14, None, n_clips=2) + video_clips(15, None, n_clips=2)
    stats = frame_stats_many(clips, ["a", "a", "b", None])
    a = float(np.median(np.concatenate([stats[0].frame_change, stats[1].frame_change])))
    typical = [s.typical_change for s in stats]
    assert typical == [pytest.approx(a), pytest.approx(a), stats[2].typical_change, None]
    assert stats[2].typical_change == pytest.approx(float(np.median(stats[2].frame_change)))
    with pytest.raises(ValueError, match="2 group names for 4 clips"):
        frame_stats_many(clips, ["a", "b"])


def test_a_cut_to_another_scene_fires_scene_cut_at_the_cut() -> None:
    frames = inject(scene_frames(4), InjectedEvent("cut", 5, 10), other=scene_frames(40, 5))
    result = scene_cut_score(frame_stats(frames), INDICES)
    assert result.score > 0.5
    assert result.frames == [10]


def test_a_single_frame_clip_scores_zero_everywhere() -> None:
    stats = frame_stats(scene_frames(5, 1))
    for score in (brightness_score, blur_score, frozen_score, scene_cut_score):
        assert score(stats, [0]).score == 0.0
    empty = frame_stats([])
    assert frozen_score(empty, []).score == 0.0


def test_the_autoencoder_scores_an_unusual_clip_above_ordinary_ones() -> None:
    clips = [ClipFrames(f"c{i}", list(range(6)), scene_frames(7, 60)[i * 6 : (i + 1) * 6]) for i in range(10)]
    model = train_autoencoder(clips, epochs=30, seed=0)
    odd = ClipFrames(
        "odd", list(range(6)), inject(clips[0].frames, InjectedEvent("cut", 0, 6), other=[gray(230)] * 6)
    )
    ordinary = model.score(ClipFrames("more", list(range(6)), scene_frames(7, 66)[60:]))
    unusual = model.score(odd)
    assert unusual.score == 1.0
    assert unusual.frames == [0, 1, 2, 3, 4, 5]
    # Ten tiny clips leave a coarse reference, so compare the errors themselves too.
    assert unusual.details["clip_error"] > 2 * ordinary.details["clip_error"]
    assert model.score_many([odd])["odd"].score == unusual.score
    assert model.model_id == train_autoencoder(clips, epochs=30, seed=0).model_id


def test_an_anomaly_model_round_trips_through_the_store() -> None:
    store = ObjectStore("memory://anomaly-roundtrip")
    clips = [ClipFrames(f"c{i}", [0, 1], scene_frames(8, 8)[2 * i : 2 * i + 2]) for i in range(4)]
    model = train_autoencoder(clips, epochs=2)
    assert current_anomaly_id(store) is None
    save_anomaly_model(store, model)
    assert current_anomaly_id(store) == model.model_id
    loaded = load_anomaly_model(store, model.model_id)
    assert loaded.model.state_dict().keys() == model.model.state_dict().keys()
    np.testing.assert_allclose(loaded.reference_errors, model.reference_errors)
    assert loaded.score(clips[0]).score == pytest.approx(model.score(clips[0]).score)
    store.write_bytes(f"models/{model.model_id}/model.pt", b"not a checkpoint")
    with pytest.raises(ModelError, match="not a usable anomaly autoencoder"):
        load_anomaly_model(store, model.model_id)
    store.write_json(CURRENT_KEY, {"nothing": 1})
    with pytest.raises(ModelError, match="names no anomaly model"):
        current_anomaly_id(store)
    with pytest.raises(ModelError, match="at least one clip"):
        train_autoencoder([])


def test_injected_events_refuse_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown injected event kind 'smear'"):
        InjectedEvent("smear", 0, 2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="start_frame < end_frame"):
        InjectedEvent("blur", 3, 3)
    with pytest.raises(ConfigError, match="needs as many other frames"):
        inject(scene_frames(9, 4), InjectedEvent("cut", 0, 4), other=scene_frames(10, 2))
    frozen = inject(scene_frames(9, 4), InjectedEvent("freeze", 1, 3))
    assert all(np.array_equal(frozen[0], frozen[i]) for i in (1, 2))
