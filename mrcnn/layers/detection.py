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
    its probability is >= ``min_confidence`` (Matterport). With ``every_class``, each (ROI, class) pair
    whose class is not background and whose probability is >= ``min_confidence`` is a candidate, boxed by
    that class's deltas (torchvision and Detectron2: a ROI the classifier finds more likely background
    still yields its lower-scored detections, which is what average precision counts); the ROI count of
    candidates with the highest scores go on. Boxes are clipped to the image window; NMS at
    ``nms_threshold`` runs per class (one NMS over class-offset boxes, which is equivalent); the
    ``max_instances`` highest scores are kept.

    Inputs: ``rois`` ``[batch, N, 4]`` normalized, ``mrcnn_class`` ``[batch, N, num_classes]``
    probabilities, ``mrcnn_bbox`` ``[batch, N, num_classes, 4]`` deltas, ``image_meta``.
    Output: ``[batch, max_instances, (y1, x1, y2, x2, class_id, score)]``, normalized boxes, highest
    score first, zero rows after the last detection.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold, bbox_std_dev, every_class=False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box math stays float32 under mixed precision
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in np.ravel(bbox_std_dev)]
        self.every_class = bool(every_class)

    def _candidates(self, rois, mrcnn_class, mrcnn_bbox):
        """``(rois, class_ids, scores, deltas)`` of the candidates, ``[batch, candidates, ...]``."""
        if not self.every_class:
            class_ids = mops.first_argmax(mrcnn_class)
            scores = ops.max(mrcnn_class, axis=-1)
            index = ops.repeat(ops.reshape(class_ids, (-1, class_ids.shape[1], 1, 1)), 4, axis=-1)
            return rois, class_ids, scores, ops.take_along_axis(mrcnn_bbox, index, axis=2)[:, :, 0]
        count, classes = mrcnn_class.shape[1], mrcnn_class.shape[2]
        pairs = count * (classes - 1)  # (ROI, class) pairs, ROI-major
        scores = ops.reshape(mrcnn_class[:, :, 1:], (-1, pairs))
        deltas = ops.reshape(mrcnn_bbox[:, :, 1:], (-1, pairs, 4))
        rois = ops.reshape(ops.repeat(rois[:, :, None, :], classes - 1, axis=2), (-1, pairs, 4))
        class_ids = ops.zeros_like(scores, dtype="int32") + ops.tile(ops.arange(1, classes, dtype="int32"), count)
        if classes > 2:  # as many candidates as ROIs: the best-scored pairs
            scores, ix = ops.top_k(scores, count)
            rois, class_ids, deltas = (mops.gather_rows(t, ix) for t in (rois, class_ids, deltas))
        return rois, class_ids, scores, deltas

    def call(self, rois, mrcnn_class, mrcnn_bbox, image_meta):
        rois, class_ids, scores, deltas = self._candidates(rois, mrcnn_class, mrcnn_bbox)
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
                "bbox_std_dev": self.bbox_std_dev, "every_class": self.every_class}
