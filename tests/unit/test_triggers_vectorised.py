"""The array versions of track linking, flicker, temporal and disagreement against plain per-track
reference code (the earlier implementation), and the stacked image statistics against per-clip ones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dataengine.triggers import disagreement_score, flicker_score, link_tracks, temporal_score
from dataengine.triggers import tracks as tracks_module
from dataengine.triggers.image_signals import frame_stats, frame_stats_many, luma_stack
from dataengine.triggers.run import chunked
from dataengine.triggers.tracks import TrackArrays, link_track_arrays
from dataengine.vision import Detections
from dataengine.vision.boxes import consecutive_iou, greedy_match, grow_boxes, pairwise_iou
from dataengine.vision.tracks import Track


def reference_tracks(detections: list[Detections], max_gap: int = 3) -> list[Track]:
    """Track linking as it was written first: a loop over frames and over live tracks."""
    tracks: list[Track] = []
    for t, frame in enumerate(detections):
        live = [tr for tr in tracks if t - tr.positions[-1] <= max_gap + 1]
        unmatched = set(range(len(frame)))
        if live and len(frame):
            last = np.stack([tr.boxes[-1] for tr in live])
            iou = pairwise_iou(grow_boxes(last, 2.0), grow_boxes(frame.boxes_xyxy, 2.0))
            rows, cols = greedy_match(iou, iou_threshold=0.2)
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                live[row].add(t, frame.boxes_xyxy[col], float(frame.scores[col]), int(frame.labels[col]))
                unmatched.discard(col)
        for col in sorted(unmatched):
            track = Track(id=len(tracks))
            track.add(t, frame.boxes_xyxy[col], float(frame.scores[col]), int(frame.labels[col]))
            tracks.append(track)
    return tracks


def reference_flicker_parts(
    tracks: list[Track], n: int, threshold: float = 0.5
) -> tuple[int, int, list[int]]:
    """(shown tracks, flickering tracks, flicker positions), one track at a time."""
    shown_tracks = [[tr.positions[i] for i in tr.confident(threshold)] for tr in tracks]
    shown_tracks = [s for s in shown_tracks if s]
    flickering, positions = 0, set()
    for shown in shown_tracks:
        gaps = [p for a, b in itertools.pairwise(shown) if 1 < b - a <= 4 for p in range(a + 1, b)]
        single = shown if len(shown) == 1 and 0 < shown[0] < n - 1 else []
        flickering += bool(gaps or single)
        positions.update(gaps + single)
    return len(shown_tracks), flickering, sorted(positions)


def reference_temporal_parts(tracks: list[Track], threshold: float = 0.5) -> tuple[int, int, list[int]]:
    """(counted tracks, inconsistent tracks, positions), one track at a time."""
    counted, inconsistent, positions = 0, 0, set()
    for tr in tracks:
        keep = tr.confident(threshold)
        if len(keep) < 2:
            continue
        counted += 1
        found = [
            tr.positions[keep[j]] for j in range(1, len(keep)) if tr.labels[keep[j]] != tr.labels[keep[j - 1]]
        ]
        ious = consecutive_iou(np.stack(tr.boxes))
        if ious.size >= 2 and float(np.median(ious)) >= 0.5:
            found += [tr.positions[i + 1] for i in np.flatnonzero(ious < 0.3).tolist()]
        steps = np.diff(np.asarray(tr.scores))
        big = np.abs(steps) >= 0.25
        found += [
            tr.positions[i + 1]
            for i in range(len(steps) - 1)
            if big[i] and big[i + 1] and np.sign(steps[i]) != np.sign(steps[i + 1])
        ]
        inconsistent += bool(found)
        positions.update(found)
    return counted, inconsistent, sorted(positions)


def random_clip(rng: np.random.Generator) -> list[Detections]:
    """A few objects jittering (sometimes jumping) over up to 8 frames, some missed, scores spread."""
    n_frames, n_objects = int(rng.integers(0, 9)), int(rng.integers(0, 6))
    corner = rng.uniform(0, 100, (n_objects, 2))
    base = np.concatenate([corner, corner + rng.uniform(5, 40, (n_objects, 2))], axis=1)
    frames = []
    for _ in range(n_frames):
        keep = rng.random(n_objects) < 0.7
        boxes = base[keep] + rng.normal(0, rng.choice([0.5, 3.0, 15.0]), (int(keep.sum()), 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = np.clip(rng.choice([0.1, 0.3, 0.45, 0.6, 0.9], int(keep.sum())), 0.05, 1.0)
        labels = rng.integers(0, 3, int(keep.sum()))
        frames.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), labels))
    return frames


@pytest.mark.parametrize("path", ["python", "numpy"])
@pytest.mark.parametrize("seed", range(4))
def test_array_linking_flicker_and_temporal_match_the_per_track_reference(
    seed: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small clips link in plain Python; the numpy frame loop serves larger ones. Both must agree.
    monkeypatch.setattr(tracks_module, "SMALL_CLIP_LIMIT", 10_000 if path == "python" else 0)
    rng = np.random.default_rng(seed)
    for _ in range(150):
        frames = random_clip(rng)
        indices = list(range(0, 4 * len(frames), 4))
        expected = reference_tracks(frames)
        tracks = link_tracks(frames)
        assert [(tr.positions, tr.labels, tr.scores) for tr in tracks] == [
            (tr.positions, tr.labels, tr.scores) for tr in expected
        ]
        flicker = flicker_score(frames, indices)
        shown, flickering, positions = reference_flicker_parts(expected, len(frames))
        assert (flicker.details["tracks"], flicker.details["flickering_tracks"]) == (shown, flickering)
        assert flicker.frames == [indices[p] for p in positions]
        temporal = temporal_score(frames, indices)
        counted, inconsistent, where = reference_temporal_parts(expected)
        assert (temporal.details["tracks"], temporal.details["inconsistent_tracks"]) == (
            counted,
            inconsistent,
        )
        assert temporal.frames == [indices[p] for p in where]
        # Track objects and their arrays give the same result.
        assert temporal_score(frames, indices, tracks=tracks) == temporal
        assert flicker_score(frames, indices, tracks=TrackArrays.from_tracks(tracks)) == flicker


def test_disagreement_blocks_match_per_frame_matching() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        a = random_clip(rng)
        b = [
            Detections(
                d.boxes_xyxy + rng.normal(0, 4, d.boxes_xyxy.shape).astype(np.float32),
                d.scores[::-1].copy(),
                d.labels[::-1].copy(),
            )
            for d in a
        ]
        result = disagreement_score(a, b, list(range(len(a))))
        unmatched = 0
        for x, y in zip(a, b, strict=True):
            x, y = x.above(0.5), y.above(0.5)
            rows, _ = greedy_match(pairwise_iou(x.boxes_xyxy, y.boxes_xyxy), iou_threshold=0.5)
            unmatched += len(x) - rows.size
        assert result.details["unmatched"] == unmatched


def _greedy_reference(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy matching written out: every candidate pair by IoU descending, then row, then column."""
    pairs = sorted(
        (-float(iou[r, c]), r, c) for r in range(iou.shape[0]) for c in range(iou.shape[1])
         if iou[r, c] >= threshold and iou[r, c] > 0
    )  # fmt: skip
    rows: set[int] = set()
    cols: set[int] = set()
    picked = []
    for _, r, c in pairs:
        if r not in rows and c not in cols:
            rows.add(r)
            cols.add(c)
            picked.append((r, c))
    return sorted(picked)


def test_greedy_match_equals_the_written_out_greedy_on_crowded_matrices() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        iou = np.round(rng.random((int(rng.integers(0, 7)), int(rng.integers(0, 7)))), 1)
        rows, cols = greedy_match(iou, iou_threshold=0.3)
        assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == _greedy_reference(iou, 0.3)


def test_a_clip_without_detections_has_no_tracks() -> None:
    arrays = link_track_arrays([Detections.empty(), Detections.empty()])
    assert (arrays.n_tracks, arrays.track.size) == (0, 0)
    assert link_track_arrays([]).n_tracks == 0


def test_stacked_image_statistics_equal_per_clip_ones() -> None:
    rng = np.random.default_rng(1)
    clips = [[rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(n)] for n in (3, 1, 0, 5)]
    for frames, stats in zip(clips, frame_stats_many(clips), strict=True):
        alone = frame_stats(frames)
        for name in ("mean_luma", "contrast", "sharpness", "frame_change", "histogram_change"):
            assert np.array_equal(getattr(stats, name), getattr(alone, name)), name
        assert stats.frame_change.size == max(0, len(frames) - 1)
    # Clips of different sizes are measured each on its own.
    mixed = frame_stats_many([clips[0], [rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)]])
    assert np.array_equal(mixed[0].mean_luma, frame_stats(clips[0]).mean_luma)


def test_statistics_across_conversion_blocks_equal_whole_stack_ones() -> None:
    # 7 clips of 6 frames: the 32-frame conversion blocks split the fifth clip.
    rng = np.random.default_rng(4)
    clips = [[rng.integers(0, 256, (72, 96, 3), dtype=np.uint8) for _ in range(6)] for _ in range(7)]
    luma = luma_stack([f for clip in clips for f in clip]).reshape(42, -1).astype(np.float64)
    for c, stats in enumerate(frame_stats_many(clips)):
        mine = luma[6 * c : 6 * c + 6]
        np.testing.assert_allclose(stats.mean_luma, mine.mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(stats.contrast, mine.std(axis=1), rtol=1e-4)
        np.testing.assert_allclose(stats.frame_change, np.abs(np.diff(mine, axis=0)).mean(axis=1), rtol=1e-4)
        assert stats.histogram_change.shape == (5,)


def test_fixed_point_luma_is_within_half_a_level_of_rec601() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (4, 60, 80, 3), dtype=np.uint8)
    exact = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma_stack(list(rgb)) - exact).max() < 0.5


def test_chunks_end_at_the_byte_budget_or_the_clip_limit() -> None:
    sizes = [40, 40, 40, 100, 5, 5, 5, 5]
    got = list(chunked(range(len(sizes)), lambda i: sizes[i], max_bytes=100, max_items=3))
    # 40+40+40 reaches 100 at the third; a lone 100-byte clip fills a chunk; four 5s stop at 3 clips.
    assert got == [[0, 1, 2], [3], [4, 5, 6], [7]]
    assert list(chunked([], len, max_bytes=1)) == []
    assert list(chunked(["a" * 500], len, max_bytes=10)) == [["a" * 500]]  # never an empty chunk
