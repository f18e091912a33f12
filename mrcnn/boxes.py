"""NumPy box utilities with Matterport's names and semantics.

Boxes are ``(y1, x1, y2, x2)``. Pixel boxes from :func:`extract_bboxes` are half-open: ``y2, x2`` lie
one past the last pixel of the object, so ``height = y2 - y1``. Normalized boxes
(:func:`norm_boxes`) map pixel ``0`` to ``0.0`` and pixel ``size - 1`` to ``1.0``.
"""

from __future__ import annotations

import math

import numpy as np

# Largest log-scale change applied to a box (a 62.5x growth), as torchvision and detectron2: exp() of an
# untrained head's output can overflow, and one infinite box stops training. mrcnn.ops uses the same bound.
MAX_LOG_SCALE = math.log(1000.0 / 16)

def extract_bboxes(mask):
    """Bounding boxes of instance masks.

    mask: ``[height, width, num_instances]``, bool or 0/1.
    Returns: int32 ``[num_instances, (y1, x1, y2, x2)]`` in pixels, ``y2, x2`` exclusive; an empty
    mask gives an all-zero box (as Matterport).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes expects a mask of shape [height, width, N], got {mask.shape}")
    height, width, count = mask.shape
    rows = np.any(mask, axis=1)  # [H, N]: does row y hold any pixel of instance n
    cols = np.any(mask, axis=0)  # [W, N]
    present = rows.any(axis=0)
    y1 = np.argmax(rows, axis=0)
    y2 = height - np.argmax(rows[::-1], axis=0)
    x1 = np.argmax(cols, axis=0)
    x2 = width - np.argmax(cols[::-1], axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)
    boxes[~present] = 0
    return boxes.reshape(count, 4)


def box_areas(boxes):
    """``[N]`` areas of ``[N, (y1, x1, y2, x2)]`` boxes."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def iou(boxes1, boxes2, area1, area2):
    """IoU of ``boxes1`` and ``boxes2`` (``[..., (y1, x1, y2, x2)]``, broadcast against each other) given their
    areas (broadcast likewise, without the last axis): the one NumPy IoU formula. Computed in the arrays'
    dtype in a fixed order, so :func:`compute_iou`, :func:`compute_overlaps` and the RPN targets' pruned pairs
    (mrcnn.data.anchor_index) give bit-equal values; 0 where the union is empty."""
    h = np.minimum(boxes1[..., 2], boxes2[..., 2])
    h -= np.maximum(boxes1[..., 0], boxes2[..., 0])
    np.maximum(h, 0, out=h)
    w = np.minimum(boxes1[..., 3], boxes2[..., 3])
    w -= np.maximum(boxes1[..., 1], boxes2[..., 1])
    np.maximum(w, 0, out=w)
    h *= w  # intersection
    union = np.add(area1, area2)
    union -= h
    # An empty union has an empty intersection: clamping gives IoU 0 without a masked divide.
    np.maximum(union, union.dtype.type(1e-12), out=union)
    h /= union
    return h


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box against many (Matterport's signature).

    box: ``(y1, x1, y2, x2)``; boxes: ``[N, (y1, x1, y2, x2)]``; box_area: float; boxes_area: ``[N]``.
    Returns ``[N]`` float64 IoUs; 0 where the union is empty.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64)
    return iou(box[None], boxes, np.float64(box_area), np.asarray(boxes_area, dtype=np.float64))


def compute_overlaps(boxes1, boxes2):
    """IoU matrix between two sets of boxes.

    boxes1: ``[N1, (y1, x1, y2, x2)]``, boxes2: ``[N2, (y1, x1, y2, x2)]``, same coordinate frame.
    Returns float32 ``[N1, N2]``; 0 where the union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float32).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float32).reshape(-1, 4)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    overlaps = np.empty((len(boxes1), len(boxes2)), dtype=np.float32)
    # Blocks of rows keep the temporaries in cache: this runs on ~260k anchors x the GT boxes, where
    # one broadcast over everything is about 3x slower (benchmarks/bench_data.py).
    rows = max(1, (1 << 14) // max(1, len(boxes2)))
    for start in range(0, len(boxes1), rows):
        stop = start + rows
        overlaps[start:stop] = iou(boxes1[start:stop, None], boxes2[None], area1[start:stop, None], area2[None])
    return overlaps


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    boxes: ``[N, (y1, x1, y2, x2)]`` (the box lies inside, as Matterport); scores: ``[N]``;
    threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
    Returns int32 indices of the kept boxes, highest score first.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores)
    if len(boxes) != len(scores):
        raise ValueError(f"non_max_suppression: {len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    overlaps = compute_overlaps(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    # The loop runs over kept boxes only; each step suppresses a whole row at once.
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= overlaps[i] > threshold
    return np.array(keep, dtype=np.int32)


def box_refinement(box, gt_box):
    """Deltas that turn ``box`` into ``gt_box``: ``[N, (dy, dx, log(dh), log(dw))]`` float32.

    box, gt_box: ``[N, (y1, x1, y2, x2)]`` in the same frame; (y2, x2) is outside the box.
    """
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1)


def apply_box_deltas(boxes, deltas):
    """Apply ``[N, (dy, dx, log(dh), log(dw))]`` deltas to ``[N, (y1, x1, y2, x2)]`` boxes (float32).

    The log-scale deltas are capped at :data:`MAX_LOG_SCALE`, as in the graph (``mrcnn.ops.apply_box_deltas``);
    Matterport's had no cap, which only matters for growths beyond 62.5x."""
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(np.minimum(deltas[:, 2], MAX_LOG_SCALE))
    width = width * np.exp(np.minimum(deltas[:, 3], MAX_LOG_SCALE))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def norm_boxes(boxes, shape):
    """Pixel boxes to normalized: ``[N, (y1, x1, y2, x2)]`` float32; ``shape`` is ``(height, width)``.

    Pixel (y2, x2) lies outside the box, normalized (y2, x2) inside it (Matterport's convention).
    """
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1])
    return ((np.asarray(boxes) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes back to int32 pixel boxes; inverse of :func:`norm_boxes`."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1])
    return np.around(np.asarray(boxes) * scale + shift).astype(np.int32)


def trim_zeros(x):
    """Drop the all-zero rows that pad ``[N, ...]`` arrays (boxes, ROIs) to a fixed size."""
    x = np.asarray(x)
    return x[~np.all(x == 0, axis=tuple(range(1, x.ndim)))]
