"""Post-processing inside the graph: detections back to the original image, masks pasted at its size.

:class:`UnmoldDetections` does in ``keras.ops`` what ``mrcnn.postprocess.unmold_detections`` does in NumPy,
with the same arithmetic (float32 where the NumPy code is float32, float64 where it is float64), so boxes come
out identical: normalized boxes relative to the image window, then pixels of the original image, detections
without area dropped (the rest moved up, in order). Masks are pasted as Matterport's ``unmold_mask``
(``skimage.transform.resize(order=1, mode="constant")`` of the 28x28 mask into the box, threshold 0.5), with
``mrcnn.postprocess.paste_masks``'s float64 formula, one detection at a time (``keras.ops.map``).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mrcnn import ops as mops


def _samples(start, end, size, mask_size):
    """For the pixels ``0 .. size - 1`` of one image axis and boxes ``start .. end - 1`` (int ``[N]``): whether
    each pixel lies in the box, the two mask indices it samples (into the mask padded with one zero on each
    side, so beyond the mask it reads 0) and the weight of the second, as ``[N, size]`` arrays; the arithmetic of
    ``mrcnn.postprocess.paste_masks``, in float64."""
    box = ops.cast(ops.maximum(end - start, 1), "float64")[:, None]
    pixel = ops.arange(size, dtype="float64")[None, :]
    start_f = ops.cast(start, "float64")[:, None]
    inside = ops.logical_and(pixel >= start_f, pixel < ops.cast(end, "float64")[:, None])
    position = (pixel - start_f + 0.5) * (mask_size / box) - 0.5
    floor = ops.floor(position)
    i0 = ops.clip(ops.cast(floor, "int32") + 1, 0, mask_size + 1)
    return inside, i0, ops.minimum(i0 + 1, mask_size + 1), position - floor


def paste_masks(masks, boxes, height, width, threshold=0.5):
    """``mrcnn.postprocess.paste_masks`` in ``keras.ops``: ``[N, mh, mw]`` mask probabilities and int pixel
    ``boxes`` ``[N, 4]`` -> bool ``[N, height, width]``; the same float64 formula, so the same pixels."""
    # One empty detection more: keras.ops.map cannot map over zero elements (it traces ``f`` on the first).
    padded = ops.pad(ops.cast(masks, "float64"), [[0, 1], [1, 1], [1, 1]])
    boxes = ops.pad(boxes, [[0, 1], [0, 0]])
    mh, mw = masks.shape[1], masks.shape[2]
    in_y, y0, y1, wy = _samples(boxes[:, 0], boxes[:, 2], height, mh)
    in_x, x0, x1, wx = _samples(boxes[:, 1], boxes[:, 3], width, mw)

    def one(args):  # one detection: [H, W], so memory stays one image's worth whatever the count
        mask, in_y, y0, y1, wy, in_x, x0, x1, wx = args
        top, bottom = ops.take(mask, y0, axis=0), ops.take(mask, y1, axis=0)
        wy, wx = wy[:, None], wx[None, :]
        value = ((1 - wy) * ((1 - wx) * ops.take(top, x0, axis=1) + wx * ops.take(top, x1, axis=1))
                 + wy * ((1 - wx) * ops.take(bottom, x0, axis=1) + wx * ops.take(bottom, x1, axis=1)))
        return ops.logical_and(value >= threshold, ops.logical_and(in_y[:, None], in_x[None, :]))

    return ops.map(one, (padded, in_y, y0, y1, wy, in_x, x0, x1, wx))[:-1]


@keras.saving.register_keras_serializable(package="mrcnn")
class UnmoldDetections(layers.Layer):
    """Detections in original-image pixels, with masks pasted at the original size.

    Inputs: ``detections`` ``[B, D, (y1, x1, y2, x2, class_id, score)]`` normalized, zero-padded;
    ``mrcnn_mask`` ``[B, D, mh, mw, num_classes]``; ``image_meta`` ``[B, meta]`` (window and molded size);
    ``images``: the original images ``[B, H, W, C]`` (only their size is used).

    Outputs: ``boxes`` int32 ``[B, K, 4]``, ``class_ids`` int32 ``[B, K]``, ``scores`` float32 ``[B, K]``,
    ``masks`` bool ``[B, H, W, K]`` and ``count`` int32 ``[B]``: the first ``count[b]`` rows of image b are its
    detections, the rest zeros. ``K`` is the largest count in the batch (``trim=True``, a size known only
    when the graph runs) or ``D`` (``trim=False``, static shapes for XLA).
    """

    def __init__(self, trim=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.trim = bool(trim)

    def call(self, detections, mrcnn_mask, image_meta, images):
        detections = ops.cast(detections, "float32")
        meta = mops.parse_image_meta(image_meta)
        shape = ops.shape(images)
        height, width = shape[1], shape[2]
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
        # each detection's mask of its own class
        masks = mops.gather_rows(mrcnn_mask, order)  # [B, K, mh, mw, C]
        index = ops.broadcast_to(class_ids[:, :, None, None, None], ops.shape(masks)[:4] + (1,))
        masks = ops.take_along_axis(masks, index, axis=-1)[..., 0]
        mh, mw = masks.shape[2], masks.shape[3]
        flat_boxes = ops.reshape(boxes, (-1, 4))
        pasted = paste_masks(ops.reshape(masks, (-1, mh, mw)), flat_boxes, height, width)  # [B*K, H, W]
        pasted = ops.logical_and(pasted, ops.reshape(valid, (-1,))[:, None, None])
        pasted = ops.reshape(pasted, (shape[0], -1, height, width))
        return boxes, class_ids, scores, ops.transpose(pasted, (0, 2, 3, 1)), count

    def compute_output_spec(self, detections, mrcnn_mask, image_meta, images):
        batch = detections.shape[0]
        k = None if self.trim else detections.shape[1]
        return (keras.KerasTensor((batch, k, 4), dtype="int32"), keras.KerasTensor((batch, k), dtype="int32"),
                keras.KerasTensor((batch, k), dtype="float32"),
                keras.KerasTensor((batch, images.shape[1], images.shape[2], k), dtype="bool"),
                keras.KerasTensor((batch,), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "trim": self.trim}
