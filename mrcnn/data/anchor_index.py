"""Which anchors overlap a box, without the IoU of every anchor with every box.

``build_rpn_targets`` needs, per image, the anchors whose IoU with a ground-truth box reaches 0.3 (the rest
are negatives or neutral by the same rule), and Matterport computes the whole ``[anchors, boxes]`` matrix
for it: 261,888 x 50 IoUs at 1024x1024. Two facts bound the pairs that can reach an IoU ``t > 0``:

* ``IoU <= min(area) / max(area)``: an anchor of one size class can only match boxes whose area is within a
  factor ``1 / t`` of its own (one or two of the five pyramid levels for ``t = 0.3``);
* a pair with any overlap has the anchor's centre within the box grown by the anchor's half size.

:class:`AnchorIndex` groups anchors by size (height and width to 1e-3 pixel) and lays each group's anchors
on the grid of their distinct centre rows and columns; :meth:`AnchorIndex.pairs` enumerates, per group and
box, the grid window the second bound allows (for the groups the first bound allows), and computes those
pairs' IoUs with :func:`mrcnn.boxes.iou`, the formula :func:`mrcnn.boxes.compute_overlaps` uses (bit-equal values).
Nothing is approximated: the bounds only skip pairs whose IoU is below ``t``. Any anchors work (also ones
not from ``generate_pyramid_anchors``): a group whose centres do not form a grid is enumerated whole.
"""

from __future__ import annotations

import numpy as np

from mrcnn.boxes import iou as pair_iou

# Bounds are applied with slack, so rounding cannot drop a pair at the threshold.
AREA_SLACK = 0.99
CENTRE_SLACK = 1.0  # pixels


class _Group:
    """Anchors of one size: their indices on a ``[rows, cols]`` grid of centres (-1 where none)."""

    def __init__(self, members, cy, cx, half_h, half_w, area):
        self.members = members
        self.half_h, self.half_w = float(half_h.max()), float(half_w.max())
        self.area_min, self.area_max = float(area.min()), float(area.max())
        self.ys, self.xs = np.unique(cy), np.unique(cx)
        rows, cols = np.searchsorted(self.ys, cy), np.searchsorted(self.xs, cx)
        cells = len(self.ys) * len(self.xs)
        self.table = None
        # zero-area or flipped anchors escape both bounds: such a group is enumerated whole, for every box
        self.degenerate = self.area_min <= 0
        if cells <= 4 * len(members) + 16 and not self.degenerate:
            table = np.full((len(self.ys), len(self.xs)), -1, dtype=np.int64)
            table[rows, cols] = members
            if np.count_nonzero(table >= 0) == len(members):  # one anchor per centre: a grid
                self.table = table

    def candidates(self, boxes, box_ids):
        """``(anchor, box)`` index pairs whose anchor centre lies in the box grown by the half sizes."""
        if self.table is None:  # not a grid: every anchor of the group with every box
            return (np.tile(self.members, len(box_ids)), np.repeat(box_ids, len(self.members)))
        grow_y, grow_x = self.half_h + CENTRE_SLACK, self.half_w + CENTRE_SLACK
        r0 = np.searchsorted(self.ys, boxes[:, 0] - grow_y, side="left")
        r1 = np.searchsorted(self.ys, boxes[:, 2] + grow_y, side="right")
        c0 = np.searchsorted(self.xs, boxes[:, 1] - grow_x, side="left")
        c1 = np.searchsorted(self.xs, boxes[:, 3] + grow_x, side="right")
        rows, cols = np.maximum(r1 - r0, 0), np.maximum(c1 - c0, 0)
        counts = rows * cols
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        width = np.repeat(np.maximum(cols, 1), counts)
        anchors = self.table[np.repeat(r0, counts) + k // width, np.repeat(c0, counts) + k % width]
        box_index = np.repeat(box_ids, counts)
        hit = anchors >= 0
        return anchors[hit], box_index[hit]


class AnchorIndex:
    """Built once per anchors array (``build_rpn_targets`` keeps the last one); see the module docstring."""

    def __init__(self, anchors):
        anchors = np.asarray(anchors)
        self.anchors = anchors.astype(np.float32).reshape(-1, 4)  # as compute_overlaps takes them
        a = self.anchors
        height, width = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        self.area = height * width
        cy = (a[:, 0].astype(np.float64) + a[:, 2]) / 2
        cx = (a[:, 1].astype(np.float64) + a[:, 3]) / 2
        sizes = np.round(np.stack([height, width], axis=1).astype(np.float64), 3)
        _, group_of = np.unique(sizes, axis=0, return_inverse=True)
        group_of = group_of.reshape(-1)
        order = np.argsort(group_of, kind="stable")
        bounds = np.flatnonzero(np.diff(group_of[order])) + 1
        self.groups = []
        for members in np.split(order, bounds):
            self.groups.append(_Group(members, cy[members], cx[members], np.abs(height[members]) / 2,
                                      np.abs(width[members]) / 2, self.area[members]))
        self._weights = 1.0 + np.arange(anchors.size) % 13
        self.fingerprint = _fingerprint(anchors, self._weights)

    def matches(self, anchors):
        """Whether ``anchors`` is the array this index was built from (same values)."""
        anchors = np.asarray(anchors)
        return (anchors.size == self._weights.size and anchors.shape[0] == self.anchors.shape[0]
                and _fingerprint(anchors, self._weights) == self.fingerprint)

    def pairs(self, boxes, threshold):
        """Every ``(anchor, box)`` pair with IoU >= ``threshold`` (> 0): anchor indices, box indices and
        their float32 IoUs, equal to ``compute_overlaps(anchors, boxes)`` at those places."""
        if not threshold > 0:
            raise ValueError(f"AnchorIndex.pairs: threshold must be > 0, got {threshold}")
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        low = threshold * AREA_SLACK
        anchor_parts, box_parts = [], []
        for group in self.groups:
            eligible = np.flatnonzero(((group.area_max >= low * box_area) & (group.area_min * low <= box_area)
                                       | group.degenerate) & (box_area > 0))
            if len(eligible):
                a, b = group.candidates(boxes[eligible], eligible)
                anchor_parts.append(a)
                box_parts.append(b)
        if not anchor_parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        anchor_ids, box_ids = np.concatenate(anchor_parts), np.concatenate(box_parts)
        iou = pair_iou(self.anchors[anchor_ids], boxes[box_ids], self.area[anchor_ids], box_area[box_ids])
        keep = iou >= threshold
        return anchor_ids[keep], box_ids[keep], iou[keep]


def _fingerprint(anchors, weights):
    """A cheap check that an array still holds the anchors an index was built from, in the same order: their
    sum and a position-weighted sum. Not ``flat @ weights``: that is a BLAS call, and after it OpenBLAS's idle
    threads spin, which doubled the CPU time of a training batch at 1024x1024."""
    flat = np.asarray(anchors, dtype=np.float64).reshape(-1)
    return float(flat.sum()), float(np.multiply(flat, weights).sum())
