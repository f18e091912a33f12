"""Anchors in the graph: the one anchor generator, :func:`pyramid_anchors`, and :class:`AnchorsLayer`, the one
layer both models take their anchors from.

:func:`pyramid_anchors` is written in ``keras.ops`` calls. Where the image size is only known when the graph
runs (TensorFlow in pad64 and none modes) it runs as ``keras.ops``; where the size is known when the graph is
traced (square and crop modes; JAX and PyTorch, which trace with concrete sizes) the same code runs once on
NumPy (:data:`NUMPY_OPS`), in float64 on every backend (JAX computes in float32 unless x64 is switched on for
the whole process), and its result is a constant. Either way the anchors equal Matterport's
``generate_pyramid_anchors`` + ``norm_boxes`` (mrcnn.anchors: Matterport's API, the data side's, and the
reference the tests hold this to).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mrcnn.layers.wiring import Float32Layer


class _NumpyOps:
    """The ``keras.ops`` calls :func:`pyramid_anchors` makes, as NumPy (float64, any backend)."""

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x, dtype=dtype)

    convert_to_tensor = cast

    def __getattr__(self, name):
        return getattr(np, name)


NUMPY_OPS = _NumpyOps()


def pyramid_anchors(scales, ratios, height, width, feature_strides, anchor_stride, feature_shapes=None, xp=ops):
    """Normalized anchors ``[num_anchors, (y1, x1, y2, x2)]`` float32 of an image of ``height`` x ``width``:
    ``generate_pyramid_anchors`` on feature maps of ``ceil(size / stride)`` cells (or ``feature_shapes``), then
    ``norm_boxes``, computed in float64 with ``xp``: ``keras.ops`` (sizes may be tensors) or :data:`NUMPY_OPS`."""
    height, width = xp.cast(height, "float64"), xp.cast(width, "float64")
    ratios = np.asarray(ratios, dtype=np.float64)
    levels = []
    for level, (scale, stride) in enumerate(zip(scales, feature_strides)):
        heights = xp.convert_to_tensor(scale / np.sqrt(ratios), "float64")
        widths = xp.convert_to_tensor(scale * np.sqrt(ratios), "float64")
        if feature_shapes is not None:
            rows, cols = (int(v) for v in feature_shapes[level])
        else:
            rows = xp.cast(xp.ceil(height / stride), "int32")
            cols = xp.cast(xp.ceil(width / stride), "int32")
        ys = xp.arange(0, rows, anchor_stride, dtype="float64") * stride
        xs = xp.arange(0, cols, anchor_stride, dtype="float64") * stride
        grid = (xp.shape(ys)[0], xp.shape(xs)[0], len(ratios))
        cy = xp.reshape(xp.broadcast_to(ys[:, None, None], grid), (-1,))
        cx = xp.reshape(xp.broadcast_to(xs[None, :, None], grid), (-1,))
        cells = xp.shape(cy)[0] // len(ratios)
        hh = xp.reshape(xp.tile(heights[None], (cells, 1)), (-1,))
        ww = xp.reshape(xp.tile(widths[None], (cells, 1)), (-1,))
        levels.append(xp.stack([cy - 0.5 * hh, cx - 0.5 * ww, cy + 0.5 * hh, cx + 0.5 * ww], axis=1))
    anchors = xp.concatenate(levels, axis=0)
    scale = xp.stack([height - 1.0, width - 1.0, height - 1.0, width - 1.0])
    shift = xp.convert_to_tensor([0.0, 0.0, 1.0, 1.0], "float64")
    return xp.cast((anchors - shift) / scale, "float32")


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
        """The normalized float32 anchors of a ``height`` x ``width`` image, :func:`pyramid_anchors` on NumPy
        (cached)."""
        key = (int(height), int(width))
        if self._cache_key != key:
            self._cache_key, self._cache = key, pyramid_anchors(
                self.scales, self.ratios, key[0], key[1], self.feature_strides, self.anchor_stride,
                feature_shapes=self.feature_shapes, xp=NUMPY_OPS)
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
