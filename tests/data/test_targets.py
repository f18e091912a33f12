import numpy as np
import pytest

from mrcnn import utils
from mrcnn.data import build_rpn_targets
from tests.conftest import TinyConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

ANCHORS = np.array([
    [0, 0, 10, 10],        # a0: IoU 1.0 with gt 0           -> positive
    [0, 0, 10, 8],         # a1: IoU 0.8 with gt 0           -> positive
    [0, 0, 10, 6],         # a2: IoU 0.6                     -> neutral
    [0, 0, 10, 2],         # a3: IoU 0.2                     -> negative
    [50, 50, 60, 60],      # a4: no overlap                  -> negative
    [100, 100, 110, 110],  # a5: IoU 0.25 with the crowd box -> neither (crowd)
    [30, 30, 40, 40],      # a6: IoU 0.67 with gt 1, its best anchor -> positive
    [200, 200, 210, 210],  # a7: no overlap                  -> negative
    [30, 35, 40, 45],      # a8: IoU 0.67 with gt 1, tied best anchor -> positive
], dtype=np.float64)
GT_BOXES = np.array([[0, 0, 10, 10], [30, 30, 40, 45], [100, 100, 120, 120]])
GT_CLASS_IDS = np.array([1, 2, -1])


def test_crafted_case_labels_crowd_and_deltas():
    config = TinyConfig()
    rpn_match, rpn_bbox = build_rpn_targets((128, 128, 3), ANCHORS, GT_CLASS_IDS, GT_BOXES, config)
    assert rpn_match.dtype == np.int32
    assert rpn_match.tolist() == [1, 1, 0, -1, -1, 0, 1, -1, 1]
    assert rpn_bbox.shape == (config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    # Deltas, in anchor order, decode back to each positive anchor's ground-truth box
    positives = np.nonzero(rpn_match == 1)[0]
    decoded = utils.apply_box_deltas(ANCHORS[positives], rpn_bbox[:4] * config.RPN_BBOX_STD_DEV)
    np.testing.assert_allclose(decoded, GT_BOXES[[0, 0, 1, 1]], atol=1e-4)
    assert not rpn_bbox[4:].any()


def test_sampling_is_balanced_to_the_budget():
    config = TinyConfig(RPN_TRAIN_ANCHORS_PER_IMAGE=16)
    anchors = utils.generate_anchors(16, [0.5, 1, 2], (16, 16), 8, 1)
    gt_boxes = np.array([[8, 8, 40, 40], [60, 60, 100, 90], [20, 80, 50, 120]] * 4)
    rng = np.random.default_rng(0)
    rpn_match, rpn_bbox = build_rpn_targets((128, 128, 3), anchors, np.ones(12), gt_boxes, config, rng=rng)
    positives = int((rpn_match == 1).sum())
    assert 0 < positives <= 8
    assert (rpn_match != 0).sum() == 16
    assert np.count_nonzero(rpn_bbox.any(axis=1)) == positives
    # Same seed, same sample
    again, _ = build_rpn_targets((128, 128, 3), anchors, np.ones(12), gt_boxes, config,
                                 rng=np.random.default_rng(0))
    assert np.array_equal(rpn_match, again)


def test_no_positive_instances_gives_only_negatives_outside_crowds():
    config = TinyConfig(RPN_TRAIN_ANCHORS_PER_IMAGE=256)
    rpn_match, rpn_bbox = build_rpn_targets((128, 128, 3), ANCHORS, np.array([-1]),
                                            GT_BOXES[2:], config)
    assert rpn_match.tolist() == [-1, -1, -1, -1, -1, 0, -1, -1, -1]
    assert not rpn_bbox.any()
    rpn_match, _ = build_rpn_targets((128, 128, 3), ANCHORS, np.zeros(0), np.zeros((0, 4)), config)
    assert (rpn_match == -1).all()


def test_ground_truth_touching_no_anchor_does_not_make_everything_positive():
    config = TinyConfig()
    rpn_match, _ = build_rpn_targets((128, 128, 3), ANCHORS[:2], np.array([1, 1]),
                                     np.array([[0, 0, 10, 10], [300, 300, 310, 310]]), config)
    assert rpn_match.tolist() == [1, 1]


def _matterport_dense(anchors, gt_class_ids, gt_boxes, config, rng):
    """Matterport's build_rpn_targets as written there: the whole [anchors, gt] IoU matrix (the reference
    for the pruned pairs of mrcnn.data.anchor_index), with this project's crowd threshold and RNG."""
    budget = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((budget, 4), dtype=np.float32)
    crowd = gt_class_ids < 0
    if crowd.any():
        no_crowd = utils.compute_overlaps(anchors, gt_boxes[crowd]).max(axis=1) < 0.001
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)
    gt_boxes = gt_boxes[gt_class_ids > 0]
    overlaps = utils.compute_overlaps(anchors, gt_boxes)
    anchor_iou_argmax = np.argmax(overlaps, axis=1)
    anchor_iou_max = overlaps[np.arange(overlaps.shape[0]), anchor_iou_argmax]
    rpn_match[(anchor_iou_max < 0.3) & no_crowd] = -1
    gt_best = overlaps.max(axis=0)
    rpn_match[np.argwhere((overlaps == gt_best) & (gt_best > 0))[:, 0]] = 1
    rpn_match[anchor_iou_max >= 0.7] = 1
    positive = np.nonzero(rpn_match == 1)[0]
    extra = len(positive) - budget // 2
    if extra > 0:
        rpn_match[rng.choice(positive, extra, replace=False)] = 0
    negative = np.nonzero(rpn_match == -1)[0]
    extra = len(negative) - (budget - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[rng.choice(negative, extra, replace=False)] = 0
    positive = np.nonzero(rpn_match == 1)[0]
    deltas = utils.box_refinement(anchors[positive], gt_boxes[anchor_iou_argmax[positive]])
    rpn_bbox[:len(positive)] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float32)
    return rpn_match, rpn_bbox


def _hard_gt(rng, size, anchors):
    """Boxes of every kind: small, huge, thin, beyond the image, zero area, duplicates, copies of anchors
    (exact ties between boxes and anchors), and crowds."""
    count = int(rng.integers(1, 40))
    y1, x1 = rng.uniform(-0.1 * size, size, (2, count))
    h, w = np.exp(rng.uniform(np.log(1.0), np.log(size), (2, count)))
    boxes = np.stack([y1, x1, y1 + h, x1 + w], axis=1)
    boxes[::9, 3] = boxes[::9, 1] + 1.5                                           # thin
    boxes[1::11] = anchors[rng.integers(0, len(anchors), len(boxes[1::11]))]       # exactly an anchor
    boxes[2::13] = boxes[1::13][:len(boxes[2::13])]                                # duplicates
    boxes[3::17, 2] = boxes[3::17, 0]                                              # zero area
    class_ids = rng.integers(1, 4, count)
    class_ids[rng.random(count) < 0.15] = -1                                       # crowds
    return np.round(boxes).astype(np.int32), class_ids.astype(np.int32)


@pytest.mark.parametrize("size,scales,seed", [(128, (8, 16, 32, 64, 128), 0), (128, (8, 16, 32, 64, 128), 1),
                                              (256, (16, 32, 64, 128, 256), 2), (320, (32, 64, 128, 256, 512), 3)])
def test_pruned_pairs_give_matterports_dense_targets(size, scales, seed):
    """The same labels and deltas (bit for bit, same random sub-sampling) as Matterport's whole IoU matrix,
    on many random images with the hard cases."""
    from mrcnn.anchors import generate_pyramid_anchors

    config = TinyConfig(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, RPN_ANCHOR_SCALES=scales,
                        RPN_TRAIN_ANCHORS_PER_IMAGE=64)
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       config.feature_shapes(), config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    rng = np.random.default_rng(seed)
    positives = 0
    for case in range(25):
        gt_boxes, gt_class_ids = _hard_gt(rng, size, anchors)
        if not (gt_class_ids > 0).any():
            continue
        got = build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_class_ids, gt_boxes, config,
                                rng=np.random.default_rng(case))
        expected = _matterport_dense(anchors, gt_class_ids, gt_boxes, config, np.random.default_rng(case))
        np.testing.assert_array_equal(got[0], expected[0], err_msg=f"rpn_match, case {case}")
        np.testing.assert_array_equal(got[1], expected[1], err_msg=f"rpn_bbox, case {case}")
        positives += int((got[0] == 1).sum())
    assert positives > 0


def test_anchors_that_are_no_grid_and_changed_anchors():
    """Anchors in no grid (random boxes) are matched whole, and an index is not reused for other anchors."""
    rng = np.random.default_rng(7)
    config = TinyConfig(RPN_TRAIN_ANCHORS_PER_IMAGE=64)
    corners = rng.uniform(0, 120, (500, 2))
    anchors = np.concatenate([corners, corners + rng.uniform(4, 60, (500, 2))], axis=1)
    anchors[::50, 2] = anchors[::50, 0]                                  # zero height
    anchors[1::50] = anchors[1::50][:, [2, 1, 0, 3]]                     # flipped rows
    for _ in range(3):
        gt_boxes, gt_class_ids = _hard_gt(rng, 128, anchors)
        gt_class_ids[0] = 1
        got = build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_class_ids, gt_boxes, config,
                                rng=np.random.default_rng(0))
        expected = _matterport_dense(anchors, gt_class_ids, gt_boxes, config, np.random.default_rng(0))
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        anchors[:10] += 3.0  # the same array, changed in place: a new index
