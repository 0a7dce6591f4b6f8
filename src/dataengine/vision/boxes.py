"""Box geometry, the one module for it: ``xyxy`` boxes in absolute pixels; IoU (pairwise, scalar,
consecutive), greedy matching, growing and clipping. Triggers, autolabel, review and the benchmarks use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def pairwise_iou(
    boxes_a_xyxy: NDArray[np.floating], boxes_b_xyxy: NDArray[np.floating]
) -> NDArray[np.float64]:
    """The (len(a), len(b)) matrix of intersection over union; empty or inverted boxes have IoU 0."""
    a = np.asarray(boxes_a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b_xyxy, dtype=np.float64).reshape(-1, 4)
    # In place where possible: trigger linking calls this on every pair of frames of every clip.
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    np.maximum(wh, 0.0, out=wh)
    intersection = wh[..., 0] * wh[..., 1]
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - intersection
    iou: NDArray[np.float64] = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``xyxy`` boxes; 0 when either is empty."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def consecutive_iou(boxes_xyxy: NDArray[np.floating]) -> NDArray[np.float64]:
    """IoU of each box with the next one in a (N, 4) array: N - 1 values."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    a, b = boxes[:-1], boxes[1:]
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    union = area[:-1] + area[1:] - inter
    out: NDArray[np.float64] = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def grow_boxes(boxes_xyxy: NDArray[np.floating], scale: float) -> NDArray[np.float64]:
    """Boxes scaled by ``scale`` about their centres."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2.0)
    return np.concatenate([centre - half, centre + half], axis=1)


def greedy_match(
    iou: NDArray[np.floating], *, iou_threshold: float
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Pairs ``(rows, cols)`` picked greedily by descending IoU, each row and column at most once.

    Only pairs with IoU >= ``iou_threshold`` (and > 0) are considered. Ties fall to the lower row, then
    the lower column, so the result is deterministic. The pairs come in no particular order.
    """
    rows, cols = np.nonzero((iou >= iou_threshold) & (iou > 0))
    if rows.size <= 1:
        return rows, cols
    row_list, col_list = rows.tolist(), cols.tolist()
    if len(set(row_list)) == len(row_list) and len(set(col_list)) == len(col_list):
        # No box has two candidates (the usual case between frames): every candidate pair is a match.
        return rows, cols
    # lexsort's last key is the primary one: IoU descending, then row, then column.
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    keep: list[int] = []
    # One pass over the candidate pairs only (those above the threshold), not over all pairs.
    for k in order.tolist():
        row, col = row_list[k], col_list[k]
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            keep.append(k)
    return rows[keep], cols[keep]


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
