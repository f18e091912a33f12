"""The proposal layer: RPN scores and deltas over all anchors -> the top boxes after NMS."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from mrcnn import ops as mops


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(layers.Layer):
    """Select proposals from the RPN output.

    Keeps the ``pre_nms_limit`` anchors with the highest foreground score, applies their deltas
    (scaled by ``rpn_bbox_std_dev``), clips to the image, and runs NMS at ``nms_threshold``.

    Inputs: ``rpn_probs`` ``[batch, num_anchors, (bg, fg)]``, ``rpn_bbox``
    ``[batch, num_anchors, (dy, dx, log(dh), log(dw))]``, ``anchors`` ``[batch, num_anchors, 4]``
    normalized.
    Output: ``[batch, proposal_count, (y1, x1, y2, x2)]`` normalized, highest score first,
    zero-padded when NMS leaves fewer boxes.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit, rpn_bbox_std_dev, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box math stays float32 under mixed precision
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in np.ravel(rpn_bbox_std_dev)]

    def call(self, rpn_probs, rpn_bbox, anchors):
        scores = rpn_probs[:, :, 1]
        deltas = rpn_bbox * ops.convert_to_tensor(self.rpn_bbox_std_dev, dtype=rpn_bbox.dtype)
        # Static when the anchor count is (fixed-size inputs), dynamic otherwise.
        count = anchors.shape[1]
        limit = (min(self.pre_nms_limit, count) if count is not None
                 else ops.minimum(self.pre_nms_limit, ops.shape(scores)[1]))
        scores, ix = ops.top_k(scores, limit, sorted=True)
        deltas = mops.gather_rows(deltas, ix)
        boxes = mops.apply_box_deltas(mops.gather_rows(anchors, ix), deltas)
        boxes = ops.clip(boxes, 0.0, 1.0)  # the whole image in normalized coordinates
        keep, valid = mops.non_max_suppression_padded(boxes, scores, self.proposal_count,
                                                      self.nms_threshold)
        proposals = mops.gather_rows(boxes, keep)
        return proposals * ops.cast(valid, proposals.dtype)[..., None]

    def compute_output_shape(self, rpn_probs_shape, rpn_bbox_shape, anchors_shape):
        # (declared, not traced: JAX cannot trace min(PRE_NMS_LIMIT, anchors) for inputs of unknown size)
        return (rpn_probs_shape[0], self.proposal_count, 4)

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": self.rpn_bbox_std_dev}
