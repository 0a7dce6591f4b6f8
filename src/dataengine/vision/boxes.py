"""Box arithmetic on numpy arrays of ``xyxy`` boxes in absolute pixels: IoU, greedy matching, clipping."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def pairwise_iou(
    boxes_a_xyxy: NDArray[np.floating], boxes_b_xyxy: NDArray[np.floating]
) -> NDArray[np.float64]:
    """The (len(a), len(b)) matrix of intersection over union; empty or inverted boxes have IoU 0."""
    a = np.asarray(boxes_a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b_xyxy, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0.0, None)
    intersection = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a[:, None] + area_b[None, :] - intersection
    iou: NDArray[np.float64] = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def greedy_match(
    iou: NDArray[np.floating], *, iou_threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pairs ``(rows, cols)`` picked greedily by descending IoU, each row and column at most once.

    Only pairs with IoU >= ``iou_threshold`` (and > 0) are considered. Ties fall to the lower row, then
    the lower column, so the result is deterministic.
    """
    rows, cols = np.nonzero((iou >= iou_threshold) & (iou > 0))
    if rows.size == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty.copy()
    if np.unique(rows).size == rows.size and np.unique(cols).size == cols.size:
        # The common case in tracking: no box has two candidates, so every candidate pair is a match.
        order = np.lexsort((cols, rows, -iou[rows, cols]))
        return rows[order].astype(np.int64), cols[order].astype(np.int64)
    # lexsort's last key is the primary one: IoU descending, then row, then column.
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    picked_rows: list[int] = []
    picked_cols: list[int] = []
    # One pass over the candidate pairs only (those above the threshold), not over all pairs.
    for row, col in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        picked_rows.append(row)
        picked_cols.append(col)
    return np.asarray(picked_rows, dtype=np.int64), np.asarray(picked_cols, dtype=np.int64)


def same_label_iou(
    boxes_a_xyxy: NDArray[np.floating],
    labels_a: NDArray[np.integer],
    boxes_b_xyxy: NDArray[np.floating],
    labels_b: NDArray[np.integer],
) -> NDArray[np.float64]:
    """:func:`pairwise_iou` with pairs of different labels set to 0."""
    iou = pairwise_iou(boxes_a_xyxy, boxes_b_xyxy)
    iou[np.asarray(labels_a).reshape(-1, 1) != np.asarray(labels_b).reshape(1, -1)] = 0.0
    return iou


def clip_boxes_xyxy(
    boxes_xyxy: NDArray[np.floating], *, width: int, height: int, min_side_px: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Boxes clipped to a ``width`` x ``height`` frame, and the mask of those at least ``min_side_px`` wide
    and high after clipping (non-finite boxes are dropped too)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = np.where(np.isfinite(boxes), boxes, 0.0)
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0.0, float(width))
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0.0, float(height))
    sides = clipped[:, 2:] - clipped[:, :2]
    keep: NDArray[np.bool_] = np.asarray(finite & (sides >= min_side_px).all(axis=1), dtype=np.bool_)
    return clipped.astype(np.float64), keep
