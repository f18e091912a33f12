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
