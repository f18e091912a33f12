"""RPN training targets (Matterport's ``build_rpn_targets``), built in NumPy by the data pipeline.

Matching rules, from the Faster R-CNN paper as Matterport implements them:

* an anchor with IoU >= 0.7 against some ground-truth box is positive;
* the best anchor of each ground-truth box is positive, whatever its IoU (so no object goes without
  one), provided that IoU is above zero;
* an anchor with IoU < 0.3 against every ground-truth box is negative, unless it overlaps a crowd
  region (negative class id): those anchors are neither, since a crowd may hide an object;
* everything else is neutral (0) and does not contribute to the loss;
* positives are capped at half of ``RPN_TRAIN_ANCHORS_PER_IMAGE`` and negatives fill the rest, both by
  uniform random sub-sampling.
"""

from __future__ import annotations

import numpy as np

from mrcnn.boxes import box_refinement, compute_overlaps
from mrcnn.data.anchor_index import AnchorIndex

POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3
# An anchor overlapping a crowd box by at least this IoU is never used as a negative.
CROWD_IOU = 0.001


_indexes = []  # AnchorIndex of the last few anchors arrays (a generator passes the same array every time)


def _index_of(anchors):
    for index in list(_indexes):
        if index.matches(anchors):
            return index
    index = AnchorIndex(anchors)
    _indexes[:] = [index] + _indexes[:3]
    return index


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config, rng=None):
    """Anchor labels and box deltas for training the RPN.

    image_shape: ``(H, W, C)`` of the molded image (unused; kept for Matterport's signature).
    anchors: ``[num_anchors, (y1, x1, y2, x2)]`` pixels.
    gt_class_ids: ``[num_gt]`` int; negative ids are crowd regions.
    gt_boxes: ``[num_gt, (y1, x1, y2, x2)]`` pixels.
    config: reads ``RPN_TRAIN_ANCHORS_PER_IMAGE`` and ``RPN_BBOX_STD_DEV``.
    rng: ``numpy.random.Generator`` for the sub-sampling (default: a fresh, unseeded one).

    Returns ``rpn_match`` int32 ``[num_anchors]`` (1 positive, -1 negative, 0 neutral) and ``rpn_bbox``
    float32 ``[RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]``: the deltas of the positive
    anchors in anchor order, divided by ``RPN_BBOX_STD_DEV``, zero-padded.
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = np.asarray(anchors)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    if len(gt_class_ids) != len(gt_boxes):
        raise ValueError(f"build_rpn_targets: {len(gt_class_ids)} class ids but {len(gt_boxes)} boxes")
    budget = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((budget, 4), dtype=np.float32)

    index = _index_of(anchors)
    # Crowd boxes: anchors touching them are excluded from the negatives.
    crowd = gt_class_ids < 0
    no_crowd = np.ones([anchors.shape[0]], dtype=bool)
    if crowd.any():
        touching, _, _ = index.pairs(gt_boxes[crowd], CROWD_IOU)
        no_crowd[touching] = False
    gt_boxes = gt_boxes[gt_class_ids > 0]

    anchor_iou_argmax = np.zeros([anchors.shape[0]], dtype=np.int64)
    if len(gt_boxes):
        # Only pairs with IoU >= NEGATIVE_IOU decide anything but "negative" (mrcnn.data.anchor_index): the
        # same labels as Matterport's whole [anchors, gt] matrix, from the pairs that can reach 0.3.
        pair_anchor, pair_gt, pair_iou = index.pairs(gt_boxes, NEGATIVE_IOU)
        anchor_iou_max = np.zeros([anchors.shape[0]], dtype=np.float32)
        # each anchor's best pair, ties to the lowest GT index (np.argmax over its row)
        order = np.lexsort((pair_gt, -pair_iou, pair_anchor))
        first = order[np.unique(pair_anchor[order], return_index=True)[1]]  # each anchor's first row in that order
        anchor_iou_max[pair_anchor[first]] = pair_iou[first]
        anchor_iou_argmax[pair_anchor[first]] = pair_gt[first]
        rpn_match[(anchor_iou_max < NEGATIVE_IOU) & no_crowd] = -1
        # Each GT box's best anchor(s) are positive, ties included (Matterport's argwhere), if that IoU is
        # above zero. A GT with a pair >= 0.3 has its best among its pairs; one without (small or oddly shaped)
        # gets its column over all anchors.
        gt_best = np.zeros(len(gt_boxes), dtype=np.float32)
        np.maximum.at(gt_best, pair_gt, pair_iou)
        best = [pair_anchor[(pair_iou == gt_best[pair_gt]) & (gt_best[pair_gt] > 0)]]
        for j in np.flatnonzero(gt_best == 0):
            column = compute_overlaps(anchors, gt_boxes[j:j + 1])[:, 0]
            top = column.max()
            if top > 0:
                best.append(np.flatnonzero(column == top))
        best = np.unique(np.concatenate(best))
        # a best anchor without a pair >= 0.3 takes its argmax over its whole row
        lonely = best[anchor_iou_max[best] < NEGATIVE_IOU]
        if len(lonely):
            anchor_iou_argmax[lonely] = np.argmax(compute_overlaps(anchors[lonely], gt_boxes), axis=1)
        rpn_match[best] = 1
        rpn_match[anchor_iou_max >= POSITIVE_IOU] = 1
    else:
        rpn_match[no_crowd] = -1

    # Balance: at most half positives, negatives fill the budget.
    positive = np.nonzero(rpn_match == 1)[0]
    extra = len(positive) - budget // 2
    if extra > 0:
        rpn_match[rng.choice(positive, extra, replace=False)] = 0
    negative = np.nonzero(rpn_match == -1)[0]
    extra = len(negative) - (budget - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[rng.choice(negative, extra, replace=False)] = 0

    positive = np.nonzero(rpn_match == 1)[0]
    if len(positive):
        deltas = box_refinement(anchors[positive], gt_boxes[anchor_iou_argmax[positive]])
        rpn_bbox[:len(positive)] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float32)
    return rpn_match, rpn_bbox
