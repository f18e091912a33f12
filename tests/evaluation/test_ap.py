import numpy as np
import pytest

from mrcnn import utils


def _square_masks(specs, shape=(60, 60)):
    """specs: [(y1, x1, y2, x2)] -> masks [H, W, N] and boxes."""
    masks = np.zeros(shape + (len(specs),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(specs):
        masks[y1:y2, x1:x2, i] = True
    return masks, np.array(specs, dtype=np.int32).reshape(-1, 4)


GT = [(0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50)]


def test_compute_ap_hand_worked():
    gt_masks, gt_boxes = _square_masks(GT)
    gt_class_ids = np.array([1, 1, 1])
    # Given in shuffled order; by score: TP (gt 0), FP (nothing there), TP (gt 1), FP (duplicate of gt 0)
    specs = [(20, 20, 30, 30), (0, 0, 10, 10), (0, 0, 10, 10), (50, 0, 60, 10)]
    scores = np.array([0.7, 0.9, 0.6, 0.8])
    pred_masks, pred_boxes = _square_masks(specs)
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, np.array([1, 1, 1, 1]), scores, pred_masks)
    # precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert ap == pytest.approx(5 / 9)
    np.testing.assert_allclose(recalls, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], rtol=1e-6)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0.5, 0], rtol=1e-6)
    assert overlaps.shape == (4, 3)
    np.testing.assert_allclose(overlaps[0], [1, 0, 0])  # highest score first


def test_compute_matches_respects_class_and_threshold():
    gt_masks, gt_boxes = _square_masks([(0, 0, 10, 10), (20, 20, 30, 30)])
    # pred 0 overlaps gt 0 with IoU 50/100... (0,0,10,5) -> IoU 0.5; pred 1 is the wrong class on gt 1
    pred_masks, pred_boxes = _square_masks([(0, 0, 10, 5), (20, 20, 30, 30)])
    gt_match, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1, 2]), gt_masks, pred_boxes, np.array([1, 1]), np.array([0.9, 0.8]),
        pred_masks, iou_threshold=0.5)
    assert pred_match.tolist() == [0, -1] and gt_match.tolist() == [0, -1]
    gt_match, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1, 2]), gt_masks, pred_boxes, np.array([1, 2]), np.array([0.9, 0.8]),
        pred_masks, iou_threshold=0.75)
    assert pred_match.tolist() == [-1, 1] and gt_match.tolist() == [-1, 1]


def test_compute_ap_perfect_and_empty_cases():
    gt_masks, gt_boxes = _square_masks(GT)
    ids = np.array([1, 2, 3])
    ap, *_ = utils.compute_ap(gt_boxes, ids, gt_masks, gt_boxes, ids, np.array([.9, .8, .7]), gt_masks)
    assert ap == 1.0
    none_masks, none_boxes = _square_masks([])
    ap, *_ = utils.compute_ap(gt_boxes, ids, gt_masks, none_boxes, np.zeros(0), np.zeros(0), none_masks)
    assert ap == 0.0
    ap, *_ = utils.compute_ap(none_boxes, np.zeros(0), none_masks, none_boxes, np.zeros(0), np.zeros(0),
                              none_masks)
    assert ap == 1.0
    ap, *_ = utils.compute_ap(none_boxes, np.zeros(0), none_masks, gt_boxes, ids, np.ones(3), gt_masks)
    assert ap == 0.0


def test_compute_ap_trims_zero_padded_ground_truth():
    gt_masks, gt_boxes = _square_masks(GT)
    padded_boxes = np.concatenate([gt_boxes, np.zeros((2, 4), np.int32)])
    padded_masks = np.concatenate([gt_masks, np.zeros(gt_masks.shape[:2] + (2,), bool)], axis=-1)
    ids = np.array([1, 1, 1, 0, 0])
    ap, *_ = utils.compute_ap(padded_boxes, ids, padded_masks, gt_boxes, ids[:3], np.ones(3), gt_masks)
    assert ap == 1.0


def test_compute_ap_range_averages_thresholds(capsys):
    gt_masks, gt_boxes = _square_masks([(0, 0, 10, 10)])
    # IoU 0.8: a match up to threshold 0.8, a miss above -> 7 of 10 thresholds (0.50 ... 0.80)
    pred_masks, pred_boxes = _square_masks([(0, 0, 10, 8)])
    ap = utils.compute_ap_range(gt_boxes, np.array([1]), gt_masks, pred_boxes, np.array([1]),
                                np.array([0.9]), pred_masks, verbose=1)
    assert ap == pytest.approx(0.7)
    assert "AP @0.50-0.95" in capsys.readouterr().out


def test_compute_recall():
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred_boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 25], [100, 100, 110, 110]])
    recall, positive_ids = utils.compute_recall(pred_boxes, gt_boxes, 0.5)
    assert recall == pytest.approx(2 / 3)
    assert positive_ids.tolist() == [0, 1, 2]
