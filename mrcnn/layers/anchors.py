"""Anchors in the graph: :class:`AnchorsLayer`, the one layer both models take their anchors from.

Where the image size is known when the graph is traced (square and crop modes; JAX and PyTorch, which trace
with concrete sizes), the anchors are Matterport's, from ``mrcnn.anchors.generate_pyramid_anchors`` in float64
NumPy (as ``MaskRCNN.get_anchors`` and the RPN targets of the data pipeline compute them), held as a constant.
Where the size is only known when the graph runs (TensorFlow in pad64 and none modes), :func:`pyramid_anchors`
computes the same anchors in ``keras.ops`` from the image's shape, in float64 as NumPy does (tested equal).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mrcnn.anchors import generate_pyramid_anchors
from mrcnn.boxes import norm_boxes
from mrcnn.layers.wiring import Float32Layer


def pyramid_anchors(scales, ratios, height, width, feature_strides, anchor_stride):
    """Normalized anchors ``[num_anchors, (y1, x1, y2, x2)]`` float32 of an image of ``height`` x ``width``
    (scalar tensors): ``generate_pyramid_anchors`` on feature maps of ``ceil(size / stride)`` cells, then
    ``norm_boxes``, in ``keras.ops`` (float64)."""
    height, width = ops.cast(height, "float64"), ops.cast(width, "float64")
    ratios = np.asarray(ratios, dtype=np.float64)
    levels = []
    for scale, stride in zip(scales, feature_strides):
        heights = ops.convert_to_tensor(scale / np.sqrt(ratios), "float64")
        widths = ops.convert_to_tensor(scale * np.sqrt(ratios), "float64")
        rows = ops.cast(ops.ceil(height / stride), "int32")
        cols = ops.cast(ops.ceil(width / stride), "int32")
        ys = ops.arange(0, rows, anchor_stride, dtype="float64") * stride
        xs = ops.arange(0, cols, anchor_stride, dtype="float64") * stride
        grid = (ops.shape(ys)[0], ops.shape(xs)[0], len(ratios))
        cy = ops.reshape(ops.broadcast_to(ys[:, None, None], grid), (-1,))
        cx = ops.reshape(ops.broadcast_to(xs[None, :, None], grid), (-1,))
        cells = ops.shape(cy)[0] // len(ratios)
        hh = ops.reshape(ops.tile(heights[None], (cells, 1)), (-1,))
        ww = ops.reshape(ops.tile(widths[None], (cells, 1)), (-1,))
        levels.append(ops.stack([cy - 0.5 * hh, cx - 0.5 * ww, cy + 0.5 * hh, cx + 0.5 * ww], axis=1))
    anchors = ops.concatenate(levels, axis=0)
    scale = ops.stack([height - 1.0, width - 1.0, height - 1.0, width - 1.0])
    shift = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0], "float64")
    return ops.cast((anchors - shift) / scale, "float32")


@keras.saving.register_keras_serializable(package="mrcnn")
class AnchorsLayer(Float32Layer):
    """Normalized anchors ``[batch, num_anchors, 4]`` of the (molded) input image, broadcast to the batch.

    ``feature_shapes``: the feature maps' ``[[height, width], ...]`` when they are not ``ceil(size / stride)``
    (a custom backbone's ``COMPUTE_BACKBONE_SHAPE``); then the image size must be static.
    """

    def __init__(self, scales, ratios, feature_strides, anchor_stride, feature_shapes=None, **kwargs):
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.feature_strides = [int(s) for s in feature_strides]
        self.anchor_stride = int(anchor_stride)
        self.feature_shapes = None if feature_shapes is None else [[int(v) for v in s] for s in feature_shapes]
        self._cache_key, self._cache = None, None  # the NumPy anchors of the last static size

    def numpy_anchors(self, height, width):
        """The normalized float32 anchors of a ``height`` x ``width`` image, in NumPy (cached)."""
        key = (int(height), int(width))
        if self._cache_key != key:
            shapes = self.feature_shapes or [[-(-key[0] // s), -(-key[1] // s)] for s in self.feature_strides]
            anchors = generate_pyramid_anchors(self.scales, self.ratios, shapes, self.feature_strides,
                                               self.anchor_stride)
            self._cache_key, self._cache = key, norm_boxes(anchors, key).astype(np.float32)
        return self._cache

    def call(self, image):
        batch = ops.shape(image)[0]
        height, width = image.shape[1], image.shape[2]
        if isinstance(height, int) and isinstance(width, int):
            anchors = ops.convert_to_tensor(self.numpy_anchors(height, width))
        elif self.feature_shapes is not None:
            raise ValueError(f"{self.name}: feature_shapes (COMPUTE_BACKBONE_SHAPE) need a fixed image size; use "
                             f"IMAGE_RESIZE_MODE='square', or describe the feature maps by BACKBONE_STRIDES")
        else:
            shape = ops.shape(image)
            anchors = pyramid_anchors(self.scales, self.ratios, shape[1], shape[2], self.feature_strides,
                                      self.anchor_stride)
        return ops.broadcast_to(anchors[None], (batch, ops.shape(anchors)[0], 4))

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        count = None if height is None or width is None else len(self.numpy_anchors(height, width))
        return (input_shape[0], count, 4)

    def get_config(self):
        return {**super().get_config(), "scales": self.scales, "ratios": self.ratios,
                "feature_strides": self.feature_strides, "anchor_stride": self.anchor_stride,
                "feature_shapes": self.feature_shapes}
