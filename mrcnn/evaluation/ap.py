"""Per-image matching and average precision, Matterport's ``compute_matches`` / ``compute_ap`` family.

These score one image at a time with mask IoU, the way Matterport's notebooks and ``coco.py --eval``
quick checks do. Data-set level COCO AP (pycocotools) and Cityscapes AP (cityscapesscripts) live beside
this module.
"""

from __future__ import annotations

import numpy as np

from mrcnn.boxes import compute_overlaps, trim_zeros
from mrcnn.masks import compute_overlaps_masks


def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
                    pred_masks, iou_threshold=0.5, score_threshold=0.0):
    """Greedily match predictions (highest score first) to ground truth of the same class by mask IoU.

    gt_boxes: ``[N, (y1, x1, y2, x2)]`` (zero-padded rows are trimmed); gt_class_ids: ``[N]``;
    gt_masks: ``[H, W, N]``; pred_*: the same for predictions, plus pred_scores ``[M]``.
    A prediction matches the unmatched ground truth of its class with the highest IoU, provided that
    IoU is >= iou_threshold; ground truth whose IoU is below score_threshold is never considered.

    Returns ``gt_match`` ``[N]`` (index of the matched prediction, or -1), ``pred_match`` ``[M]`` (index
    of the matched ground truth, or -1), both in score order for predictions, and ``overlaps``
    ``[M, N]`` mask IoUs (predictions sorted by descending score).
    """
    gt_boxes = trim_zeros(np.asarray(gt_boxes).reshape(-1, 4))
    gt_masks = np.asarray(gt_masks)[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(np.asarray(pred_boxes).reshape(-1, 4))
    pred_scores = np.asarray(pred_scores)[:pred_boxes.shape[0]]
    gt_class_ids = np.asarray(gt_class_ids)[:gt_boxes.shape[0]]
    # Sort predictions by score, high to low
    indices = np.argsort(pred_scores, kind="stable")[::-1]
    pred_class_ids = np.asarray(pred_class_ids)[indices]
    pred_masks = np.asarray(pred_masks)[..., indices]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    pred_match = -1 * np.ones([len(indices)])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    # The loop is over predictions only (up to DETECTION_MAX_INSTANCES); matching is sequential by nature.
    for i in range(len(indices)):
        candidates = np.argsort(overlaps[i], kind="stable")[::-1]
        candidates = candidates[overlaps[i, candidates] >= max(iou_threshold, score_threshold)]
        candidates = candidates[(gt_match[candidates] == -1)
                                & (gt_class_ids[candidates] == pred_class_ids[i])]
        if candidates.size:
            gt_match[candidates[0]] = i
            pred_match[i] = candidates[0]
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Average precision at one mask-IoU threshold (the area under the interpolated P-R curve).

    Returns ``mAP`` (float), ``precisions``, ``recalls`` (the curve, with sentinels at both ends) and
    ``overlaps`` ``[M, N]``. With no ground truth the AP is 1.0 if there are no predictions either and
    0.0 otherwise (Matterport divided by zero there).
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)
    if len(gt_match) == 0:
        ap = 1.0 if len(pred_match) == 0 else 0.0
        return ap, np.array([0.0, ap, 0.0]), np.array([0.0, 1.0, 1.0]), overlaps
    # Precision and recall at each prediction, in score order
    true_positives = np.cumsum(pred_match > -1)
    precisions = true_positives / (np.arange(len(pred_match)) + 1)
    recalls = true_positives.astype(np.float32) / len(gt_match)
    # Pad with start and end values to simplify the math
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    # Each precision becomes the maximum precision at any higher recall
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    # Area under the curve: sum over the points where recall changes
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    ap = float(np.sum((recalls[indices] - recalls[indices - 1]) * precisions[indices]))
    return ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Mean of :func:`compute_ap` over IoU thresholds (default 0.5:0.95:0.05, COCO's AP)."""
    iou_thresholds = np.arange(0.5, 1.0, 0.05) if iou_thresholds is None else iou_thresholds
    aps = []
    for threshold in iou_thresholds:
        ap, *_ = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                            pred_mask, iou_threshold=threshold)
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Recall of predicted boxes against ground-truth boxes at box IoU ``iou``.

    Returns ``recall`` (the fraction of ground-truth boxes that some prediction overlaps with IoU >=
    ``iou``) and ``positive_ids``, the indices of those predictions.
    """
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    if len(gt_boxes) == 0:
        raise ValueError("compute_recall: recall is undefined without ground-truth boxes")
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.shape[0] == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt_boxes = iou_argmax[positive_ids]
    recall = len(set(matched_gt_boxes.tolist())) / gt_boxes.shape[0]
    return recall, positive_ids
