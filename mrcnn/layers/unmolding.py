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


def _enumerate(lengths):
    """For segments of ``lengths`` (int32 ``[S]``): each element's segment and its position in it."""
    segment = ops.repeat(ops.arange(ops.shape(lengths)[0], dtype="int32"), lengths, axis=0)
    position = ops.arange(ops.shape(segment)[0], dtype="int32") - ops.take(ops.cumsum(lengths) - lengths, segment)
    return segment, position


def _sample_positions(pixel, box_start, box_size, mask_size):
    """Pixel index -> the two indices into the zero-bordered mask axis and the weight of the second, with the
    NumPy version's float64 formula (pixel centre at ``(i + 0.5) * mask_size / box_size - 0.5``)."""
    position = (ops.cast(pixel - box_start, "float64") + 0.5) * (mask_size / box_size) - 0.5
    floor = ops.floor(position)
    first = ops.clip(ops.cast(floor, "int32") + 1, 0, mask_size + 1)
    return first, ops.minimum(first + 1, mask_size + 1), position - floor


def paste_masks(masks, boxes, height, width, groups=1, threshold=0.5):
    """``mrcnn.postprocess.paste_masks`` in ``keras.ops``: ``[N, mh, mw]`` mask probabilities and int pixel
    ``boxes`` ``[N, 4]`` -> uint8 0/1 ``[groups, height, width, N / groups]`` (mask ``g * (N / groups) + j`` at
    ``[g, :, :, j]``: the batch of images and their detections). See :func:`pasted_pixels`."""
    count = ops.shape(boxes)[0]
    index = pasted_pixels(masks, boxes, height, width, groups, threshold)
    size = groups * height * width * (count // groups)
    flat = ops.scatter(index[:, None], ops.ones_like(index, dtype="uint8"), (size,))
    return ops.reshape(flat, (groups, height, width, count // groups))


def pasted_pixels(masks, boxes, height, width, groups=1, threshold=0.5):
    """The pasted masks of :func:`paste_masks` as int64 flat indices of their set pixels into
    ``[groups, height, width, N / groups]`` (row-major, no duplicates): scattering ones there gives the masks.

    The same pixels as the NumPy version, the same float64 formula in the same order
    (``(1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * c + wx * d)``), computed in three steps whose work
    follows the boxes' visible areas, not the image size: each box column's horizontal blend of every mask row;
    each box row's two mask rows and weight; then every visible box pixel, enumerated image row by image row
    (the boxes crossing one row together) so that writing the ``[H, W, N]`` output stays within one output row
    at a time, and only the pixels at or above ``threshold`` are written.
    """
    count = ops.shape(boxes)[0]
    per_group = ops.maximum(count // groups, 1)  # a divisor: with no boxes nothing is enumerated
    mh, mw = masks.shape[1], masks.shape[2]
    by1, bx1, by2, bx2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    cy1, cx1 = ops.clip(by1, 0, height), ops.clip(bx1, 0, width)
    rows = ops.maximum(ops.clip(by2, 0, height) - cy1, 0)
    cols = ops.maximum(ops.clip(bx2, 0, width) - cx1, 0)
    box_h = ops.cast(ops.maximum(by2 - by1, 1), "float64")
    box_w = ops.cast(ops.maximum(bx2 - bx1, 1), "float64")
    # the masks with a zero border (beyond the mask it reads 0, as scikit-image's mode="constant")
    padded = ops.reshape(ops.pad(ops.cast(masks, "float64"), [[0, 0], [1, 1], [1, 1]]), (-1,))
    depth = mh + 2

    # 1. Box columns: (1 - wx) * mask[:, x0] + wx * mask[:, x1] for every row of the bordered mask
    column_box, k = _enumerate(cols)
    x0, x1, wx = _sample_positions(ops.take(cx1, column_box) + k, ops.take(bx1, column_box),
                                   ops.take(box_w, column_box), mw)
    column_base = (column_box * depth)[:, None] * (mw + 2) + ops.arange(depth, dtype="int32")[None, :] * (mw + 2)
    blended = ((1 - wx)[:, None] * ops.take(padded, column_base + x0[:, None])
               + wx[:, None] * ops.take(padded, column_base + x1[:, None]))
    blended = ops.reshape(blended, (-1,))  # [columns * depth]: column c's blended mask rows at c * depth
    first_column = ops.cumsum(cols) - cols

    # 2. Box rows, ordered by image (group) and row, then detection
    row_box, k = _enumerate(rows)
    y = ops.take(cy1, row_box) + k
    y0, y1, wy = _sample_positions(y, ops.take(by1, row_box), ops.take(box_h, row_box), mh)
    group, j = row_box // per_group, row_box % per_group
    order = ops.argsort((group * height + y) * count + row_box)
    row_box, y, y0, y1, wy, group, j = (ops.take(v, order) for v in (row_box, y, y0, y1, wy, group, j))
    column_start = ops.take(first_column, row_box) * depth
    output_start = ((ops.cast(group * height + y, "int64") * ops.cast(width, "int64")
                     + ops.cast(ops.take(cx1, row_box), "int64"))
                    * ops.cast(per_group, "int64") + ops.cast(j, "int64"))

    # 3. Box pixels: the vertical blend of the row's two blended mask rows in the pixel's column
    row, k = _enumerate(ops.take(cols, row_box))
    at_column = ops.take(column_start, row) + k * depth
    w = ops.take(wy, row)
    value = (1 - w) * ops.take(blended, at_column + ops.take(y0, row)) + w * ops.take(blended,
                                                                                       at_column + ops.take(y1, row))
    on = ops.nonzero(value >= threshold)[0]
    return (ops.take(ops.take(output_start, row), on)
            + ops.cast(ops.take(k, on), "int64") * ops.cast(per_group, "int64"))


@keras.saving.register_keras_serializable(package="mrcnn")
class UnmoldDetections(layers.Layer):
    """Detections in original-image pixels, with masks pasted at the original size.

    Inputs: ``detections`` ``[B, D, (y1, x1, y2, x2, class_id, score)]`` normalized, zero-padded;
    ``mrcnn_mask`` ``[B, D, mh, mw, num_classes]``; ``image_meta`` ``[B, meta]`` (original size, window and
    molded size; one original size per batch).

    Outputs: ``boxes`` int32 ``[B, K, 4]``, ``class_ids`` int32 ``[B, K]``, ``scores`` float32 ``[B, K]``,
    ``masks`` bool ``[B, H, W, K]`` and ``count`` int32 ``[B]``: the first ``count[b]`` rows of image b are its
    detections, the rest zeros. ``K`` is the largest count in the batch, a size known only when the graph runs.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

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
        k = ops.max(count)
        order = order[:, :k]
        valid = ops.arange(num, dtype="int32")[None, :k] < count[:, None]

        boxes = ops.where(valid[..., None], mops.gather_rows(boxes, order), 0)
        class_ids = ops.where(valid, mops.gather_rows(class_ids, order), 0)
        scores = ops.where(valid, mops.gather_rows(scores, order), 0.0)
        # each detection's mask of its own class, gathered from the flat [B * D * mh * mw * C] masks
        mh, mw, classes = mrcnn_mask.shape[2], mrcnn_mask.shape[3], mrcnn_mask.shape[4]
        rows = ops.reshape(order + ops.arange(batch, dtype="int32")[:, None] * num, (-1,))  # [B*K]
        pixels = ops.arange(mh * mw, dtype="int32")[None, :]
        index = (rows[:, None] * (mh * mw) + pixels) * classes + ops.reshape(class_ids, (-1, 1))
        masks = ops.reshape(ops.take(ops.reshape(mrcnn_mask, (-1,)), index), (-1, mh, mw))  # [B*K, mh, mw]
        # padding slots have zero boxes: no area, nothing pasted
        boxes_flat = ops.reshape(boxes, (-1, 4))
        pasted = paste_masks(masks, boxes_flat, height, width, groups=batch)
        return boxes, class_ids, scores, ops.cast(pasted, "bool"), count

    def compute_output_spec(self, detections, mrcnn_mask, image_meta):
        batch = detections.shape[0]
        return (keras.KerasTensor((batch, None, 4), dtype="int32"), keras.KerasTensor((batch, None), dtype="int32"),
                keras.KerasTensor((batch, None), dtype="float32"),
                keras.KerasTensor((batch, None, None, None), dtype="bool"), keras.KerasTensor((batch,), dtype="int32"))
