"""Final detections from the classifier head (Matterport's ``DetectionLayer``)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from mrcnn import ops as mops


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(layers.Layer):
    """Refine ROIs with the class-specific deltas, filter, and run per-class NMS.

    A ROI becomes a detection of its highest-probability class when that class is not background and
    its probability is >= ``min_confidence``; boxes are clipped to the image window; NMS at
    ``nms_threshold`` runs per class (one NMS over class-offset boxes, which is equivalent); the
    ``max_instances`` highest scores are kept.

    Inputs: ``rois`` ``[batch, N, 4]`` normalized, ``mrcnn_class`` ``[batch, N, num_classes]``
    probabilities, ``mrcnn_bbox`` ``[batch, N, num_classes, 4]`` deltas, ``image_meta``.
    Output: ``[batch, max_instances, (y1, x1, y2, x2, class_id, score)]``, normalized boxes, highest
    score first, zero rows after the last detection.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold, bbox_std_dev, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box math stays float32 under mixed precision
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in np.ravel(bbox_std_dev)]

    def call(self, rois, mrcnn_class, mrcnn_bbox, image_meta):
        class_ids = mops.first_argmax(mrcnn_class)
        scores = ops.max(mrcnn_class, axis=-1)
        index = ops.repeat(ops.reshape(class_ids, (-1, class_ids.shape[1], 1, 1)), 4, axis=-1)
        deltas = ops.take_along_axis(mrcnn_bbox, index, axis=2)[:, :, 0]
        deltas = deltas * ops.convert_to_tensor(self.bbox_std_dev, dtype=deltas.dtype)
        boxes = mops.apply_box_deltas(rois, deltas)
        meta = mops.parse_image_meta(image_meta)
        window = mops.norm_boxes(meta["window"], meta["image_shape"][0, :2])  # [B, 4]
        boxes = mops.clip_boxes(boxes, window[:, None, :])

        valid_roi = ops.any(ops.not_equal(rois, 0.0), axis=-1)
        keep = ops.logical_and(ops.greater(class_ids, 0), scores >= self.min_confidence)
        keep = ops.logical_and(keep, valid_roi)
        nms_scores = ops.where(keep, scores, -1.0)
        # Offsetting each class by 2 (boxes live in [0, 1]) keeps classes from suppressing each other.
        class_f = ops.cast(class_ids, boxes.dtype)
        offset_boxes = boxes + 2.0 * class_f[..., None]
        ix, valid = mops.non_max_suppression_padded(offset_boxes, nms_scores, self.max_instances,
                                                    self.nms_threshold, score_threshold=-0.5)
        detections = ops.concatenate([
            mops.gather_rows(boxes, ix),
            mops.gather_rows(class_f, ix)[..., None],
            mops.gather_rows(scores, ix)[..., None],
        ], axis=-1)
        return detections * ops.cast(valid, detections.dtype)[..., None]

    def get_config(self):
        return {**super().get_config(), "max_instances": self.max_instances,
                "min_confidence": self.min_confidence, "nms_threshold": self.nms_threshold,
                "bbox_std_dev": self.bbox_std_dev}
