"""The five Mask R-CNN losses as free functions in ``keras.ops``, and the layer that wraps them.

Names, formulas and normalization follow Matterport, with one change: the classifier loss ignores the
zero-padding rows of the ROI sample (Matterport scored them as background).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mrcnn import ops as mops
from mrcnn.config import LOSS_NAMES


def smooth_l1(y_true, y_pred):
    """Elementwise smooth-L1 (Huber with delta 1): ``0.5 d^2`` below 1, ``|d| - 0.5`` above."""
    diff = ops.abs(ops.convert_to_tensor(y_true) - ops.convert_to_tensor(y_pred))
    less_than_one = ops.cast(diff < 1.0, diff.dtype)
    return less_than_one * 0.5 * diff ** 2 + (1.0 - less_than_one) * (diff - 0.5)


def _safe_mean(total, count):
    """``total / count`` with ``count`` taken over the global batch.

    Under tf.distribute each replica sees part of the batch: the count is summed over the replicas and
    each replica's share is scaled by their number, so the mean of the replicas' values (what Keras
    reports) and the sum of their gradients (after the training model's division by the number of
    replicas) are those of the whole batch on one device.
    """
    count = mops.replica_sum(ops.cast(count, "float32"))
    return total * float(mops.replicas_in_sync()) / ops.maximum(count, 1.0)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor foreground/background cross-entropy over the non-neutral anchors.

    rpn_match: ``[batch, anchors, 1]`` (1, -1, 0); rpn_class_logits: ``[batch, anchors, 2]``.
    """
    rpn_match = ops.squeeze(ops.cast(rpn_match, "int32"), -1)
    target = ops.cast(ops.equal(rpn_match, 1), "int32")
    used = ops.cast(ops.not_equal(rpn_match, 0), "float32")
    loss = ops.sparse_categorical_crossentropy(target, rpn_class_logits, from_logits=True)
    return _safe_mean(ops.sum(loss * used), ops.sum(used))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Smooth-L1 between the positive anchors' predicted deltas and their targets.

    target_bbox: ``[batch, max_positives, 4]``, the positives' targets in anchor order, zero-padded
    (as build_rpn_targets packs them); rpn_match: ``[batch, anchors, 1]``; rpn_bbox:
    ``[batch, anchors, 4]``. Mean over positives x 4, as Matterport.
    """
    rpn_match = ops.squeeze(ops.cast(rpn_match, "int32"), -1)
    num_anchors = rpn_bbox.shape[1]
    slots = target_bbox.shape[1]
    positive = ops.equal(rpn_match, 1)
    # Positive anchors in index order, packed to the front: the same order as the targets.
    key = ops.where(positive, num_anchors - ops.arange(num_anchors, dtype="int32")[None, :], -1)
    top, ix = ops.top_k(key, min(slots, num_anchors), sorted=True)
    valid = ops.cast(top > 0, "float32")
    predicted = ops.take_along_axis(rpn_bbox, ops.repeat(ix[..., None], 4, axis=-1), axis=1)
    loss = smooth_l1(target_bbox[:, :predicted.shape[1]], predicted) * valid[..., None]
    return _safe_mean(ops.sum(loss), 4.0 * ops.sum(valid))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids, rois):
    """Classifier cross-entropy over the sampled ROIs, skipping padding rows and predictions of
    classes that are not in the image's source data set (Matterport's ``active_class_ids``).

    target_class_ids: ``[batch, rois]``; pred_class_logits: ``[batch, rois, classes]``;
    active_class_ids: ``[batch, classes]``; rois: ``[batch, rois, 4]`` (zero rows are padding).
    """
    target_class_ids = ops.cast(target_class_ids, "int32")
    pred_class_ids = ops.argmax(pred_class_logits, axis=2)
    pred_active = ops.cast(ops.take_along_axis(ops.cast(active_class_ids, "float32"),
                                               ops.cast(pred_class_ids, "int32"), axis=1), "float32")
    valid = ops.cast(ops.any(ops.not_equal(rois, 0.0), axis=-1), "float32")
    weight = pred_active * valid
    loss = ops.sparse_categorical_crossentropy(target_class_ids, pred_class_logits, from_logits=True)
    return _safe_mean(ops.sum(loss * weight), ops.sum(weight))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Smooth-L1 of the target class's deltas over positive ROIs (mean over positives x 4).

    target_bbox: ``[batch, rois, 4]``; target_class_ids: ``[batch, rois]``;
    pred_bbox: ``[batch, rois, classes, 4]``.
    """
    target_class_ids = ops.cast(target_class_ids, "int32")
    positive = ops.cast(target_class_ids > 0, "float32")
    index = ops.repeat(ops.reshape(target_class_ids, (-1, target_class_ids.shape[1], 1, 1)), 4, axis=-1)
    predicted = ops.take_along_axis(pred_bbox, index, axis=2)[:, :, 0]
    loss = smooth_l1(target_bbox, predicted) * positive[..., None]
    return _safe_mean(ops.sum(loss), 4.0 * ops.sum(positive))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Per-pixel binary cross-entropy of the target class's mask over positive ROIs.

    target_masks: ``[batch, rois, h, w]`` 0/1; target_class_ids: ``[batch, rois]``;
    pred_masks: ``[batch, rois, h, w, classes]`` sigmoid probabilities.
    """
    target_class_ids = ops.cast(target_class_ids, "int32")
    positive = ops.cast(target_class_ids > 0, "float32")
    h, w = pred_masks.shape[2], pred_masks.shape[3]
    index = ops.reshape(target_class_ids, tuple(ops.shape(target_class_ids)) + (1, 1, 1))
    index = ops.broadcast_to(index, ops.shape(pred_masks)[:-1] + (1,))
    predicted = ops.take_along_axis(pred_masks, index, axis=-1)[..., 0]
    loss = ops.binary_crossentropy(target_masks[..., None], predicted[..., None])
    loss = ops.reshape(loss, tuple(ops.shape(target_class_ids)) + (h, w)) * positive[..., None, None]
    return _safe_mean(ops.sum(loss), float(h * w) * ops.sum(positive))


LOSS_FUNCTIONS = {
    "rpn_class_loss": rpn_class_loss,
    "rpn_bbox_loss": rpn_bbox_loss,
    "mrcnn_class_loss": mrcnn_class_loss,
    "mrcnn_bbox_loss": mrcnn_bbox_loss,
    "mrcnn_mask_loss": mrcnn_mask_loss,
}


@keras.saving.register_keras_serializable(package="mrcnn")
class LossLayer(layers.Layer):
    """Computes one named loss in the graph; its name is the loss name (``rpn_class_loss``...)."""

    def __init__(self, name, **kwargs):
        if name not in LOSS_FUNCTIONS:
            raise ValueError(f"LossLayer: unknown loss {name!r}; expected one of {LOSS_NAMES}")
        kwargs.setdefault("dtype", "float32")  # losses stay float32 under mixed precision
        super().__init__(name=name, **kwargs)

    def call(self, *inputs):
        return LOSS_FUNCTIONS[self.name](*inputs)

