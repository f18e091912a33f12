"""Multi-level ROIAlign over the feature pyramid (Matterport's ``PyramidROIAlign``)."""

from __future__ import annotations

import keras
from keras import layers, ops

from mrcnn import ops as mops


def roi_levels(boxes, image_height, image_width):
    """Pyramid level (2..5) of each normalized box: ``4 + log2(sqrt(h * w) / 224)`` in image pixels,
    rounded (Feature Pyramid Networks paper, eq. 1, as Matterport)."""
    h = (boxes[..., 2] - boxes[..., 0]) * image_height
    w = (boxes[..., 3] - boxes[..., 1]) * image_width
    level = ops.log(ops.sqrt(ops.maximum(h * w, 1e-12)) / 224.0) / ops.log(2.0)
    return ops.clip(4.0 + ops.round(level), 2.0, 5.0)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(layers.Layer):
    """Pool each box from the pyramid level that suits its size.

    Inputs: ``boxes`` ``[batch, num_boxes, (y1, x1, y2, x2)]`` normalized (zero rows allowed),
    ``image_meta`` ``[batch, IMAGE_META_SIZE]``, then the feature maps P2..P5 ``[batch, h, w, C]``.
    Output: ``[batch, num_boxes, pool_height, pool_width, C]``.

    Static shapes: every box is cropped from every level and the crop of its own level is kept. That
    costs four crops per box instead of one, and keeps all shapes fixed (XLA, other backends).

    Mixed precision: inputs are not cast; box coordinates and the level choice are float32, the crops
    keep the feature maps' dtype.
    """

    def __init__(self, pool_shape, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def call(self, boxes, image_meta, feature_maps):
        boxes = ops.cast(boxes, "float32")
        image_shape = ops.cast(mops.parse_image_meta(image_meta)["image_shape"][0], "float32")
        levels = roi_levels(boxes, image_shape[0], image_shape[1])  # [B, N]
        batch, num_boxes = ops.shape(boxes)[0], ops.shape(boxes)[1]  # ROI slots: static, or dynamic in training
        flat_boxes = ops.reshape(boxes, (-1, 4))
        box_indices = ops.repeat(ops.arange(batch, dtype="int32"), num_boxes)
        flat_levels = ops.reshape(levels, (-1, 1, 1, 1))
        pooled = None
        for level, feature_map in zip(range(2, 6), feature_maps):
            feature_map = ops.cast(feature_map, self.compute_dtype)
            crops = mops.crop_and_resize(feature_map, ops.stop_gradient(flat_boxes), box_indices,
                                         self.pool_shape)
            chosen = crops * ops.cast(ops.equal(flat_levels, float(level)), crops.dtype)
            pooled = chosen if pooled is None else pooled + chosen
        channels = feature_maps[0].shape[-1]
        return ops.reshape(pooled, (batch, num_boxes) + self.pool_shape + (channels,))

    def compute_output_shape(self, boxes_shape, image_meta_shape, feature_maps_shape):
        # Declared, not traced: PyTorch's backend infers shapes by running the layer on real tensors with a
        # stand-in for each unknown size, and these crops then allocated gigabytes at ResNet-50's sizes.
        return (boxes_shape[0], boxes_shape[1]) + self.pool_shape + (feature_maps_shape[0][-1],)

    def get_config(self):
        return {**super().get_config(), "pool_shape": list(self.pool_shape)}
