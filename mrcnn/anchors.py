"""Anchor generation (Matterport's ``generate_anchors`` and ``generate_pyramid_anchors``).

Anchors are pixel boxes ``(y1, x1, y2, x2)`` centred on feature-map cells: the cell at ``(i, j)`` of a
level with stride ``s`` is centred on image pixel ``(i * s, j * s)``, as Matterport (so the loaded COCO
weights see the anchors they were trained with).
"""

from __future__ import annotations

import numpy as np


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one pyramid level.

    scales: anchor side(s) in pixels, e.g. 32; ratios: width/height ratios, e.g. ``[0.5, 1, 2]``;
    shape: feature map ``(height, width)``; feature_stride: image pixels per feature cell;
    anchor_stride: place anchors at every ``anchor_stride``-th cell.
    Returns float64 ``[cells * len(scales) * len(ratios), (y1, x1, y2, x2)]``, ordered cell by cell
    (row-major), then ratio (then scale) within a cell.
    """
    scales, ratios = np.meshgrid(np.atleast_1d(scales), np.atleast_1d(ratios))
    scales = scales.flatten()
    ratios = ratios.flatten()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)

    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)

    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)
    box_centers = np.stack([box_centers_y, box_centers_x], axis=2).reshape([-1, 2])
    box_sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])
    return np.concatenate([box_centers - 0.5 * box_sizes, box_centers + 0.5 * box_sizes], axis=1)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated from the finest level (P2) to the coarsest.

    scales: one anchor side per level; feature_shapes: ``[levels, (height, width)]``;
    feature_strides: one stride per level. Returns ``[total_anchors, (y1, x1, y2, x2)]`` pixels.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"generate_pyramid_anchors: {len(scales)} scales, {len(feature_shapes)} feature shapes "
            f"and {len(feature_strides)} strides; need one of each per pyramid level"
        )
    return np.concatenate([
        generate_anchors(scale, ratios, shape, stride, anchor_stride)
        for scale, shape, stride in zip(scales, feature_shapes, feature_strides)
    ], axis=0)
