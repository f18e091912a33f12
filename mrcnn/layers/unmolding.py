"""Post-processing inside the graph: detections back to the original image, masks pasted at its size.

:class:`UnmoldDetections` does in ``keras.ops`` what ``mrcnn.postprocess.unmold_detections`` does in NumPy,
with the same arithmetic (float32 where the NumPy code is float32, float64 where it is float64), so boxes come
out identical: normalized boxes relative to the image window, then pixels of the original image, detections
without area dropped (the rest moved up, in order). Masks are pasted as Matterport's ``unmold_mask``
(``skimage.transform.resize(order=1, mode="constant")`` of the 28x28 mask into the box, threshold 0.5), with
``mrcnn.postprocess.paste_masks``'s enumeration of the boxes' pixels and its float64 formula.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mrcnn import ops as mops


def paste_masks(masks, boxes, height, width, groups=1, threshold=0.5):
    """``mrcnn.postprocess.paste_masks`` in ``keras.ops``: ``[N, mh, mw]`` mask probabilities and int pixel
    ``boxes`` ``[N, 4]`` -> uint8 0/1 ``[groups, height, width, N / groups]`` (mask ``g * (N / groups) + j`` at
    ``[g, :, :, j]``: the batch of images and their detections).

    As the NumPy version: every pixel of every box's visible part is enumerated at once (the work follows the
    boxes' areas, not the image size), sampled from its mask with the same float64 formula (so the same
    pixels come out), and the ones at or above ``threshold`` are scattered into the output.
    """
    count = ops.shape(boxes)[0]
    per_group = count // groups
    mh, mw = masks.shape[1], masks.shape[2]
    by1, bx1, by2, bx2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    cy1, cx1 = ops.clip(by1, 0, height), ops.clip(bx1, 0, width)
    rows = ops.maximum(ops.clip(by2, 0, height) - cy1, 0)
    cols = ops.maximum(ops.clip(bx2, 0, width) - cx1, 0)
    areas = rows * cols
    total = ops.sum(areas)
    n = ops.repeat(ops.arange(count, dtype="int32"), areas, axis=0)  # [total]: the box of each pixel
    k = ops.arange(total, dtype="int32") - ops.take(ops.cumsum(areas) - areas, n)
    cols_n = ops.maximum(ops.take(cols, n), 1)
    y = ops.take(cy1, n) + k // cols_n
    x = ops.take(cx1, n) + k % cols_n
    box_h = ops.cast(ops.maximum(ops.take(by2 - by1, n), 1), "float64")
    box_w = ops.cast(ops.maximum(ops.take(bx2 - bx1, n), 1), "float64")
    my = (ops.cast(y - ops.take(by1, n), "float64") + 0.5) * (mh / box_h) - 0.5
    mx = (ops.cast(x - ops.take(bx1, n), "float64") + 0.5) * (mw / box_w) - 0.5
    y0, x0 = ops.floor(my), ops.floor(mx)
    wy, wx = my - y0, mx - x0
    # indices into the masks padded with one zero on each side (beyond the mask it reads 0)
    y0 = ops.clip(ops.cast(y0, "int32") + 1, 0, mh + 1)
    x0 = ops.clip(ops.cast(x0, "int32") + 1, 0, mw + 1)
    y1, x1 = ops.minimum(y0 + 1, mh + 1), ops.minimum(x0 + 1, mw + 1)
    padded = ops.reshape(ops.pad(ops.cast(masks, "float64"), [[0, 0], [1, 1], [1, 1]]), (-1,))
    base = n * ((mh + 2) * (mw + 2))

    def at(yy, xx):
        return ops.take(padded, base + yy * (mw + 2) + xx)

    value = ((1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1))
             + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1)))
    group, j = n // ops.maximum(per_group, 1), n % ops.maximum(per_group, 1)
    index = ((group * height + y) * width + x) * per_group + j
    # uint8 0/1 (a scatter has no bool form): detect() views it as bool without a copy
    flat = ops.scatter(index[:, None], ops.cast(value >= threshold, "uint8"), (groups * height * width * per_group,))
    return ops.reshape(flat, (groups, height, width, per_group))


@keras.saving.register_keras_serializable(package="mrcnn")
class UnmoldDetections(layers.Layer):
    """Detections in original-image pixels, with masks pasted at the original size.

    Inputs: ``detections`` ``[B, D, (y1, x1, y2, x2, class_id, score)]`` normalized, zero-padded;
    ``mrcnn_mask`` ``[B, D, mh, mw, num_classes]``; ``image_meta`` ``[B, meta]`` (original size, window and
    molded size; one original size per batch).

    Outputs: ``boxes`` int32 ``[B, K, 4]``, ``class_ids`` int32 ``[B, K]``, ``scores`` float32 ``[B, K]``,
    ``masks`` ``[B, H, W, K]`` (bool, or uint8 0/1 with ``bool_masks=False``, which NumPy views as bool without
    a copy) and ``count`` int32 ``[B]``: the first ``count[b]`` rows of image b are its detections, the rest
    zeros. ``K`` is the largest count in the batch (``trim=True``, a size known only when the graph runs) or
    ``D`` (``trim=False``).
    """

    def __init__(self, trim=True, bool_masks=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.trim = bool(trim)
        self.bool_masks = bool(bool_masks)

    def call(self, detections, mrcnn_mask, image_meta):
        detections = ops.cast(detections, "float32")
        meta = mops.parse_image_meta(image_meta)
        batch = ops.shape(detections)[0]
        original_shape = ops.cast(meta["original_image_shape"][0], "int32")
        height, width = original_shape[0], original_shape[1]
        num = detections.shape[1]

        # Normalized window (float32, as NumPy's norm_boxes returns it) and the boxes relative to it
        molded = ops.cast(meta["image_shape"][:, :2], "float64")
        window = ops.cast(meta["window"], "float64")
        span = ops.concatenate([molded - 1.0, molded - 1.0], axis=-1)
        corner = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0], "float64")
        window = ops.cast((window - corner) / span, "float32")  # [B, 4]
        shift = ops.concatenate([window[:, :2], window[:, :2]], axis=-1)
        extent = ops.concatenate([window[:, 2:] - window[:, :2]] * 2, axis=-1)
        # a window one pixel thin has no normalized extent: take one pixel's
        pixel = 1.0 / ops.maximum(molded - 1.0, 1.0)
        extent = ops.where(extent > 0, ops.cast(extent, "float64"), ops.concatenate([pixel, pixel], axis=-1))
        relative = ops.cast(detections[..., :4] - shift[:, None], "float64") / extent[:, None]
        original = ops.stack([ops.cast(height, "float64") - 1.0, ops.cast(width, "float64") - 1.0] * 2)
        boxes = ops.cast(ops.round(relative * original + corner), "int32")  # [B, D, 4]

        class_ids = ops.cast(detections[..., 4], "int32")
        scores = detections[..., 5]
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        keep = ops.logical_and(class_ids > 0, area > 0)
        # Kept detections first, in their order
        position = ops.arange(num, dtype="int32")[None, :]
        order = ops.argsort(ops.where(keep, position, position + num), axis=-1)
        count = ops.sum(ops.cast(keep, "int32"), axis=-1)
        k = ops.max(count) if self.trim else num
        order = order[:, :k]
        valid = ops.arange(num, dtype="int32")[None, :k] < count[:, None]

        boxes = ops.where(valid[..., None], mops.gather_rows(boxes, order), 0)
        class_ids = ops.where(valid, mops.gather_rows(class_ids, order), 0)
        scores = ops.where(valid, mops.gather_rows(scores, order), 0.0)
        # each detection's mask of its own class: rows gathered from the flat batch, the class by a one-hot sum
        # (exact: the other classes add zeros); cheaper than take_along_axis over [B, D, mh, mw, C]
        mh, mw, classes = mrcnn_mask.shape[2], mrcnn_mask.shape[3], mrcnn_mask.shape[4]
        rows = ops.reshape(order + ops.arange(batch, dtype="int32")[:, None] * num, (-1,))
        picked = ops.take(ops.reshape(mrcnn_mask, (-1, mh, mw, classes)), rows, axis=0)  # [B*K, mh, mw, C]
        one_hot = ops.one_hot(ops.reshape(class_ids, (-1,)), classes, dtype=picked.dtype)
        masks = ops.sum(picked * one_hot[:, None, None, :], axis=-1)  # [B*K, mh, mw]
        # padding slots have zero boxes: no area, nothing pasted
        pasted = paste_masks(masks, ops.reshape(boxes, (-1, 4)), height, width, groups=batch)
        if self.bool_masks:
            pasted = ops.cast(pasted, "bool")
        return boxes, class_ids, scores, pasted, count

    def compute_output_spec(self, detections, mrcnn_mask, image_meta):
        batch = detections.shape[0]
        k = None if self.trim else detections.shape[1]
        return (keras.KerasTensor((batch, k, 4), dtype="int32"), keras.KerasTensor((batch, k), dtype="int32"),
                keras.KerasTensor((batch, k), dtype="float32"),
                keras.KerasTensor((batch, None, None, k), dtype="bool" if self.bool_masks else "uint8"),
                keras.KerasTensor((batch,), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "trim": self.trim, "bool_masks": self.bool_masks}
