"""Image meta data: the per-image vector that travels with each image through the model.

Layout (Matterport's), ``IMAGE_META_SIZE = 12 + NUM_CLASSES`` values::

    image_id              1   index of the image in its Dataset
    original_image_shape  3   (H, W, C) before resizing
    image_shape           3   (H, W, C) after resizing and padding
    window                4   (y1, x1, y2, x2) of the real image inside the padded one, pixels
    scale                 1   resize factor
    active_class_ids      NUM_CLASSES   1 for classes of the image's source data set

:data:`META_FIELDS` is the one place that layout is written down; both NumPy and graph code slice
through it instead of using magic offsets.
"""

from __future__ import annotations

import numpy as np

# (name, length); None means "the rest" (active_class_ids, NUM_CLASSES long).
META_FIELDS = (
    ("image_id", 1),
    ("original_image_shape", 3),
    ("image_shape", 3),
    ("window", 4),
    ("scale", 1),
    ("active_class_ids", None),
)


def meta_slices():
    """``{field: slice}`` into the last axis of an image meta array."""
    slices, start = {}, 0
    for name, length in META_FIELDS:
        stop = None if length is None else start + length
        slices[name] = slice(start, stop)
        start = stop if stop is not None else start
    return slices


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active_class_ids):
    """Pack the attributes of one image into a float64 vector (see the module docstring)."""
    return np.array(
        [image_id] + list(original_image_shape) + list(image_shape) + list(window) + [scale]
        + list(active_class_ids),
        dtype=np.float64,
    )


def parse_image_meta(meta):
    """Unpack ``[batch, meta_size]`` (or ``[meta_size]``) meta into a dict of NumPy arrays."""
    meta = np.asarray(meta)
    parsed = {name: meta[..., s] for name, s in meta_slices().items()}
    parsed["image_id"] = parsed["image_id"][..., 0].astype(np.int32)
    parsed["original_image_shape"] = parsed["original_image_shape"].astype(np.int32)
    parsed["image_shape"] = parsed["image_shape"].astype(np.int32)
    parsed["window"] = parsed["window"].astype(np.int32)
    parsed["scale"] = parsed["scale"][..., 0].astype(np.float32)
    parsed["active_class_ids"] = parsed["active_class_ids"].astype(np.int32)
    return parsed


def mold_image(images, config):
    """RGB uint8 image(s) to float32 with the mean pixel subtracted (what the model eats)."""
    return np.asarray(images).astype(np.float32) - np.asarray(config.MEAN_PIXEL, dtype=np.float32)


def unmold_image(normalized_images, config):
    """Inverse of :func:`mold_image`: back to uint8 RGB."""
    return np.clip(np.rint(np.asarray(normalized_images) + config.MEAN_PIXEL), 0, 255).astype(np.uint8)
