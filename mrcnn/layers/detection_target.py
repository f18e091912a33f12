"""Training targets for the classifier, box and mask heads (Matterport's ``DetectionTargetLayer``)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from mrcnn import ops as mops

POSITIVE_IOU = 0.5
CROWD_IOU = 0.001


def _select(scores, k):
    """Indices and validity of the top-``k`` entries of ``scores`` ``[B, N]`` (invalid ones are < 0)."""
    k = min(k, scores.shape[1])
    top, ix = ops.top_k(scores, k, sorted=True)
    return ix, top >= 0.0


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(layers.Layer):
    """Sample ROIs from the proposals and build their class, box and mask targets.

    * A proposal with IoU >= 0.5 against a non-crowd ground-truth box is positive, one with IoU < 0.5
      negative, unless it overlaps a crowd box (negative class id): then it is neither.
    * Up to ``train_rois_per_image * roi_positive_ratio`` positives are drawn at random, then negatives
      so that positives make ``roi_positive_ratio`` of the sample (Matterport's rule: no positives,
      no negatives).
    * With ``add_gt_proposals`` the ground-truth boxes are added to the proposals first.
    * Positives get the class of their best ground-truth box, the box deltas to it divided by
      ``bbox_std_dev``, and its mask cropped to the ROI and resized to ``mask_shape`` (from mini masks
      when ``use_mini_mask``).

    Inputs: ``proposals`` ``[batch, num_proposals, 4]`` normalized (zero rows are padding),
    ``gt_class_ids`` ``[batch, MAX_GT_INSTANCES]``, ``gt_boxes`` ``[batch, MAX_GT_INSTANCES, 4]``
    normalized, ``gt_masks`` ``[batch, height, width, MAX_GT_INSTANCES]``.
    Outputs, ``T = train_rois_per_image``, sampled ROIs first, zero rows after:
    ``rois`` ``[batch, T, 4]``, ``target_class_ids`` int32 ``[batch, T]``, ``target_deltas``
    ``[batch, T, 4]``, ``target_masks`` ``[batch, T, mask_h, mask_w]`` (0/1).
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio, bbox_std_dev, mask_shape,
                 use_mini_mask, add_gt_proposals=False, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box math stays float32 under mixed precision
        super().__init__(**kwargs)
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.bbox_std_dev = [float(v) for v in np.ravel(bbox_std_dev)]
        self.mask_shape = tuple(int(v) for v in mask_shape)
        self.use_mini_mask = bool(use_mini_mask)
        self.add_gt_proposals = bool(add_gt_proposals)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, proposals, gt_class_ids, gt_boxes, gt_masks):
        rois_per_image = self.train_rois_per_image
        gt_class_ids = ops.cast(gt_class_ids, "int32")
        gt_boxes = ops.cast(gt_boxes, "float32")
        if self.add_gt_proposals:
            # The ground-truth boxes join the proposals (torchvision, detectron2): the heads get
            # positives from the first step, before the RPN has learned to propose them.
            real = ops.logical_and(ops.any(ops.not_equal(gt_boxes, 0.0), axis=-1), gt_class_ids > 0)
            proposals = ops.concatenate([proposals, gt_boxes * ops.cast(real, "float32")[..., None]], axis=1)
        valid_proposal = ops.any(ops.not_equal(proposals, 0.0), axis=-1)
        valid_gt = ops.any(ops.not_equal(gt_boxes, 0.0), axis=-1)
        crowd = ops.logical_and(valid_gt, ops.less(gt_class_ids, 0))
        instance = ops.logical_and(valid_gt, ops.greater(gt_class_ids, 0))

        iou = mops.overlaps(proposals, gt_boxes)  # [B, P, G]
        iou_instances = ops.where(instance[:, None, :], iou, -1.0)
        roi_iou_max = ops.max(iou_instances, axis=2)
        crowd_iou_max = ops.max(ops.where(crowd[:, None, :], iou, 0.0), axis=2)
        positive = ops.logical_and(roi_iou_max >= POSITIVE_IOU, valid_proposal)
        negative = ops.logical_and(
            ops.logical_and(roi_iou_max < POSITIVE_IOU, crowd_iou_max < CROWD_IOU), valid_proposal)

        # Random sampling with static shapes: random priorities, top-k among the eligible.
        priority = keras.random.uniform(ops.shape(roi_iou_max), seed=self.seed_generator)
        max_positives = int(rois_per_image * self.roi_positive_ratio)
        pos_ix, pos_valid = _select(ops.where(positive, priority, -1.0), max_positives)
        positive_count = ops.sum(ops.cast(pos_valid, "int32"), axis=1, keepdims=True)
        negative_count = ops.cast(
            ops.cast(positive_count, "float32") / self.roi_positive_ratio, "int32") - positive_count
        neg_ix, neg_valid = _select(ops.where(negative, priority, -1.0), rois_per_image - max_positives)
        slot = ops.arange(neg_ix.shape[1], dtype="int32")[None, :]
        neg_valid = ops.logical_and(neg_valid, slot < negative_count)

        # Gather the sample: positives then negatives; then move the valid rows to the front.
        ix = ops.concatenate([pos_ix, neg_ix], axis=1)
        valid = ops.concatenate([pos_valid, neg_valid], axis=1)
        is_positive = ops.concatenate([pos_valid, ops.zeros_like(neg_valid)], axis=1)
        slots = ix.shape[1]
        order_key = ops.where(valid, 2 * slots, 0) - ops.arange(slots, dtype="int32")[None, :]
        _, order = ops.top_k(order_key, slots, sorted=True)
        ix = ops.take_along_axis(ix, order, axis=1)
        valid = ops.take_along_axis(valid, order, axis=1)
        is_positive = ops.take_along_axis(is_positive, order, axis=1)

        rois = mops.gather_rows(proposals, ix) * ops.cast(valid, "float32")[..., None]
        assignment = ops.argmax(mops.gather_rows(iou_instances, ix), axis=-1)  # [B, S]
        roi_gt_boxes = mops.gather_rows(gt_boxes, assignment)
        positive_f = ops.cast(is_positive, "float32")
        class_ids = mops.gather_rows(gt_class_ids, assignment) * ops.cast(is_positive, "int32")
        std = ops.convert_to_tensor(self.bbox_std_dev, dtype="float32")
        # Non-positive rows get a unit box, so the delta and mask math stays finite before masking.
        unit_box = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
        safe_rois = ops.where(is_positive[..., None], rois, unit_box)
        safe_gt = ops.where(is_positive[..., None], roi_gt_boxes, unit_box)
        deltas = mops.box_refinement(safe_rois, safe_gt) / std * positive_f[..., None]

        masks = self._mask_targets(gt_masks, assignment, safe_rois, safe_gt) * positive_f[..., None, None]
        pad = rois_per_image - slots
        outputs = [rois, class_ids, deltas, masks]
        if pad > 0:
            outputs = [ops.pad(t, [[0, 0], [0, pad]] + [[0, 0]] * (len(t.shape) - 2)) for t in outputs]
        return [ops.stop_gradient(t) for t in outputs]

    def _mask_targets(self, gt_masks, assignment, rois, roi_gt_boxes):
        """Each ROI's ground-truth mask, cropped to the ROI and resized to ``mask_shape``."""
        masks = ops.transpose(ops.cast(gt_masks, "float32"), (0, 3, 1, 2))  # [B, G, h, w]
        roi_masks = mops.gather_rows(masks, assignment)  # [B, S, h, w]
        slots = roi_masks.shape[1]
        boxes = rois
        if self.use_mini_mask:
            # Mini masks cover the GT box: express the ROI in the GT box's frame.
            gy1, gx1, gy2, gx2 = (roi_gt_boxes[..., i] for i in range(4))
            gh, gw = gy2 - gy1, gx2 - gx1
            boxes = ops.stack([(rois[..., 0] - gy1) / gh, (rois[..., 1] - gx1) / gw,
                               (rois[..., 2] - gy1) / gh, (rois[..., 3] - gx1) / gw], axis=-1)
        flat_masks = ops.reshape(roi_masks, (-1,) + tuple(roi_masks.shape[2:]) + (1,))
        flat_boxes = ops.reshape(boxes, (-1, 4))
        box_ids = ops.arange(ops.shape(flat_boxes)[0], dtype="int32")
        crops = mops.crop_and_resize(flat_masks, flat_boxes, box_ids, self.mask_shape)
        return ops.reshape(ops.round(crops), (-1, slots) + self.mask_shape)

    def get_config(self):
        return {**super().get_config(), "train_rois_per_image": self.train_rois_per_image,
                "roi_positive_ratio": self.roi_positive_ratio, "bbox_std_dev": self.bbox_std_dev,
                "mask_shape": list(self.mask_shape), "use_mini_mask": self.use_mini_mask,
                "add_gt_proposals": self.add_gt_proposals, "seed": self.seed}
