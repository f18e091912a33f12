"""Small layers that wire the graph: box normalization, meta fields, roi-axis reshapes and slots."""

from __future__ import annotations

import keras
from keras import layers, ops

from mrcnn import ops as mops


@keras.saving.register_keras_serializable(package="mrcnn")
class Float32Layer(layers.Layer):
    """A layer that computes in float32 whatever the dtype policy (box math under mixed precision):
    floating inputs are cast to float32 on the way in."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(Float32Layer):
    """Pixel boxes ``[batch, N, 4]`` to normalized ones, using the image size of the input image."""

    def call(self, boxes, image):
        return mops.norm_boxes(boxes, ops.shape(image)[1:3])


@keras.saving.register_keras_serializable(package="mrcnn")
class MergeRoiAxis(layers.Layer):
    """``[batch, num_rois, ...]`` -> ``[batch * num_rois, ...]`` so per-ROI layers see a plain batch.

    A reshape: it keeps its input's dtype under any dtype policy.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None or input_shape[1] is None else input_shape[0] * input_shape[1]
        return (batch,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class SplitRoiAxis(layers.Layer):
    """``[batch * num_rois, ...]`` -> ``[batch, num_rois, ...]``; ``shape`` (optional) reshapes the rest.

    A reshape: it keeps its input's dtype under any dtype policy (float32 class probabilities stay so).
    """

    def __init__(self, num_rois, shape=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_rois = None if num_rois is None else int(num_rois)
        self.shape = None if shape is None else [int(v) for v in shape]

    def _rest(self, input_shape):
        return tuple(self.shape) if self.shape is not None else tuple(input_shape[1:])

    def call(self, x, rois=None):
        """``rois`` ``[batch, num_rois, ...]``: where ``num_rois`` is None, the ROIs whose count to split by."""
        if self.num_rois is not None:
            return ops.reshape(x, (-1, self.num_rois) + self._rest(x.shape))
        # (the batch size given, not -1: with no ROIs at all, -1 would be ambiguous)
        return ops.reshape(x, (ops.shape(rois)[0], ops.shape(rois)[1]) + self._rest(x.shape))

    def compute_output_shape(self, x_shape, rois_shape=None):
        return (None, self.num_rois) + self._rest(x_shape)

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois, "shape": self.shape}


@keras.saving.register_keras_serializable(package="mrcnn")
class FirstRois(layers.Layer):
    """``[batch, num_rois, ...]`` -> the first ``count`` ROI slots; with ``pad_to``, zeros appended back to
    ``pad_to`` slots instead. Keeps its input's dtype.

    Given ``class_ids`` ``[batch, num_rois]`` whose positive rows come first, and where the graph being traced
    may size tensors when it runs (:func:`mrcnn.ops.static_shapes` is False: TensorFlow without XLA), only as
    many slots as the batch's largest number of positives are kept (at most ``count``, at least 1), so the work
    after it follows the positives there are; under fixed shapes, ``count`` slots.
    """

    def __init__(self, count, pad_to=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.count = int(count)
        self.pad_to = None if pad_to is None else int(pad_to)

    def call(self, x, class_ids=None):
        if self.pad_to is not None:
            missing = self.pad_to - ops.shape(x)[1]
            return ops.pad(x, [[0, 0], [0, missing]] + [[0, 0]] * (len(x.shape) - 2))
        if class_ids is not None and not mops.static_shapes():
            positives = ops.sum(ops.cast(ops.greater(class_ids[:, :self.count], 0), "int32"), axis=1)
            # At least one slot: a batch norm in training mode (TRAIN_BN) takes the statistics of its input,
            # and those of an empty one are NaN, gradients included (a batch without positives made the
            # next step's weights NaN). The extra slot is a padded one, outside the mask loss.
            return x[:, :ops.maximum(ops.max(positives), 1)]
        return x[:, :self.count]

    def compute_output_shape(self, x_shape, class_ids_shape=None):
        slots = self.pad_to or (None if class_ids_shape is not None else self.count)
        return (x_shape[0], slots) + tuple(x_shape[2:])

    def get_config(self):
        return {**super().get_config(), "count": self.count, "pad_to": self.pad_to}


@keras.saving.register_keras_serializable(package="mrcnn")
class MetaField(Float32Layer):
    """One named field of ``[batch, IMAGE_META_SIZE]`` image meta (layout in mrcnn.data.image_meta)."""

    def __init__(self, field, **kwargs):
        super().__init__(**kwargs)
        self.field = field

    def call(self, image_meta):
        return mops.parse_image_meta(image_meta)[self.field]

    def get_config(self):
        return {**super().get_config(), "field": self.field}


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(Float32Layer):
    """The boxes ``[batch, N, 4]`` of ``[batch, N, (y1, x1, y2, x2, class_id, score)]`` detections."""

    def call(self, detections):
        return detections[..., :4]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionClassIds(Float32Layer):
    """The class ids ``[batch, N]`` (0: a padding slot) of ``[batch, N, (y1, x1, y2, x2, class_id, score)]``
    detections."""

    def call(self, detections):
        return detections[..., 4]
