"""Matterport's NumPy debugging targets: random ROIs and their detection targets (``data_generator(...,
random_rois=N, detection_targets=True)``, inspect_data's ROI cells).

Training never uses these (the graph's DetectionTargetLayer samples ROIs from the proposals); they let a
notebook look at what the heads are trained on without running the model. Semantics as Matterport's
``generate_random_rois`` and ``build_detection_targets``: pixel ROIs, IoU >= 0.5 positive, < 0.5 negative,
crowds excluded from the negatives, ``ROI_POSITIVE_RATIO`` of ``TRAIN_ROIS_PER_IMAGE`` positives at most,
box deltas divided by ``BBOX_STD_DEV``, masks at ``MASK_SHAPE`` per class.
"""

from __future__ import annotations

import numpy as np

from mrcnn.boxes import box_refinement, compute_overlaps
from mrcnn.imaging import resize
from mrcnn.masks import expand_mask


def _random_boxes(rng, count, y_range, x_range):
    """``count`` int32 boxes with corners drawn in the ranges, each at least one pixel high and wide."""
    boxes = np.zeros((0, 4), np.int32)
    while len(boxes) < count:
        ys = rng.integers(y_range[0], y_range[1], (count * 2, 2))
        xs = rng.integers(x_range[0], x_range[1], (count * 2, 2))
        ok = (np.abs(ys[:, 0] - ys[:, 1]) >= 1) & (np.abs(xs[:, 0] - xs[:, 1]) >= 1)
        ys, xs = np.sort(ys[ok], axis=1), np.sort(xs[ok], axis=1)
        boxes = np.concatenate([boxes, np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], 1).astype(np.int32)])
    return boxes[:count]


def generate_random_rois(image_shape, count, gt_class_ids, gt_boxes, rng=None):
    """``count`` pixel ROIs ``[count, (y1, x1, y2, x2)]`` int32: 90% around the ground-truth boxes (within
    one box size of each), the rest anywhere in the image (Matterport's generator debugging output)."""
    rng = rng if rng is not None else np.random.default_rng()
    height, width = image_shape[:2]
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    per_box = int(0.9 * count / len(gt_boxes)) if len(gt_boxes) else 0
    rois = []
    for y1, x1, y2, x2 in gt_boxes:
        h, w = y2 - y1, x2 - x1
        y_range = (max(y1 - h, 0), min(y2 + h, height) + 1)
        x_range = (max(x1 - w, 0), min(x2 + w, width) + 1)
        rois.append(_random_boxes(rng, per_box, y_range, x_range))
    rois.append(_random_boxes(rng, count - per_box * len(gt_boxes), (0, height + 1), (0, width + 1)))
    return np.concatenate(rois).astype(np.int32)


def build_detection_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks, config, rng=None):
    """What the heads train on for ``rpn_rois`` (Matterport's ``build_detection_targets``).

    Returns ``rois`` ``[TRAIN_ROIS_PER_IMAGE, 4]`` int32 pixels (positives first), ``class_ids``
    ``[TRAIN_ROIS_PER_IMAGE]`` int32 (0 for negatives), ``bboxes`` ``[TRAIN_ROIS_PER_IMAGE, NUM_CLASSES, 4]``
    float32 deltas at each ROI's class (divided by BBOX_STD_DEV) and ``masks``
    ``[TRAIN_ROIS_PER_IMAGE, MASK_SHAPE[0], MASK_SHAPE[1], NUM_CLASSES]`` float32 at each ROI's class.
    """
    rng = rng if rng is not None else np.random.default_rng()
    rpn_rois = np.asarray(rpn_rois, np.int32)
    gt_class_ids, gt_boxes, gt_masks = np.asarray(gt_class_ids), np.asarray(gt_boxes), np.asarray(gt_masks)
    total = config.TRAIN_ROIS_PER_IMAGE
    instance = np.where(gt_class_ids > 0)[0]
    crowd = np.where(gt_class_ids < 0)[0]
    no_crowd = np.ones(len(rpn_rois), bool)
    if len(crowd):
        no_crowd = compute_overlaps(rpn_rois, gt_boxes[crowd]).max(axis=1) < 0.001
    gt_class_ids, gt_boxes, gt_masks = gt_class_ids[instance], gt_boxes[instance], gt_masks[:, :, instance]

    overlaps = compute_overlaps(rpn_rois, gt_boxes) if len(gt_boxes) else np.zeros((len(rpn_rois), 0))
    assignment = overlaps.argmax(axis=1) if len(gt_boxes) else np.zeros(len(rpn_rois), np.int64)
    iou_max = overlaps.max(axis=1) if len(gt_boxes) else np.zeros(len(rpn_rois))
    fg = np.where(iou_max > 0.5)[0]
    bg = np.where((iou_max < 0.5) & no_crowd)[0]
    fg_count = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
    fg = rng.choice(fg, fg_count, replace=False) if len(fg) > fg_count else fg
    bg_count = total - len(fg)
    bg = rng.choice(bg, bg_count, replace=False) if len(bg) > bg_count else bg
    keep = np.concatenate([fg, bg]).astype(np.int64)
    if len(keep) < total:  # too few ROIs for the balance: repeat negatives (or, without any, ROIs under 0.5)
        pool = bg if len(bg) else np.where(iou_max < 0.5)[0]
        if not len(pool):
            pool = keep if len(keep) else np.arange(len(rpn_rois))
        keep = np.concatenate([keep, rng.choice(pool, total - len(keep), replace=True)])

    rois = rpn_rois[keep]
    class_ids = np.zeros(total, np.int32)
    class_ids[:len(fg)] = gt_class_ids[assignment[fg]]
    bboxes = np.zeros((total, config.NUM_CLASSES, 4), np.float32)
    masks = np.zeros((total,) + tuple(config.MASK_SHAPE) + (config.NUM_CLASSES,), np.float32)
    for i in range(len(fg)):
        gt = assignment[keep[i]]
        class_id = class_ids[i]
        bboxes[i, class_id] = box_refinement(rois[i:i + 1].astype(np.float32), gt_boxes[gt:gt + 1])[0]
        gt_mask = gt_masks[:, :, gt]
        if config.USE_MINI_MASK:  # back to image size, at the ground-truth box
            image_shape = tuple(int(v) for v in config.IMAGE_SHAPE[:2])
            gt_mask = expand_mask(gt_boxes[gt:gt + 1], gt_mask[:, :, None], image_shape)[:, :, 0]
        y1, x1, y2, x2 = rois[i]
        crop = gt_mask[y1:y2, x1:x2].astype(np.float32)
        if crop.size:
            masks[i, :, :, class_id] = resize(crop, tuple(config.MASK_SHAPE))
    bboxes /= np.asarray(config.BBOX_STD_DEV, np.float32)
    return rois, class_ids, bboxes, masks


def add_debug_targets(inputs, config, random_rois, detection_targets, rng):
    """A batch of Matterport's generator with its debugging arrays: ``inputs + [rpn_rois]`` (and ``+ [rois]``
    with ``outputs = [class_ids [batch, rois, 1], bboxes, masks]`` when ``detection_targets``)."""
    images, gt_class_ids, gt_boxes, gt_masks = inputs[0], inputs[4], inputs[5], inputs[6]
    rpn_rois, targets = [], []
    for i in range(len(images)):
        n = int(np.count_nonzero(gt_class_ids[i]))
        rois = generate_random_rois(images[i].shape, random_rois, gt_class_ids[i, :n], gt_boxes[i, :n], rng)
        rpn_rois.append(rois)
        if detection_targets:
            targets.append(build_detection_targets(rois, gt_class_ids[i, :n], gt_boxes[i, :n],
                                                   gt_masks[i, :, :, :n], config, rng))
    inputs = list(inputs) + [np.stack(rpn_rois)]
    outputs = []
    if detection_targets:
        rois, class_ids, bboxes, masks = (np.stack(parts) for parts in zip(*targets))
        inputs.append(rois)
        outputs = [class_ids[..., None], bboxes, masks]  # Keras 2 wanted targets of the outputs' rank
    return inputs, outputs
