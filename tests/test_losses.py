"""The five losses against NumPy computations of Matterport's formulas."""

import numpy as np
import pytest

from mrcnn import losses

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def _ce(logits, target):
    logits = logits - logits.max(-1, keepdims=True)
    return -(logits[..., target] - np.log(np.exp(logits).sum(-1)))


def _smooth_l1(d):
    d = np.abs(d)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5)


def test_rpn_class_loss_skips_neutral_anchors():
    match = np.array([[[1], [-1], [0], [1]]], np.int32)
    logits = np.array([[[0.2, 1.0], [2.0, -1.0], [9.0, -9.0], [0.5, 0.1]]], np.float32)
    expected = np.mean([_ce(logits[0, 0], 1), _ce(logits[0, 1], 0), _ce(logits[0, 3], 1)])
    assert float(losses.rpn_class_loss(match, logits)) == pytest.approx(expected, rel=1e-5)


def test_rpn_bbox_loss_pairs_positives_with_packed_targets():
    match = np.array([[[0], [1], [-1], [1]], [[1], [0], [0], [0]]], np.int32)
    pred = np.arange(32, dtype=np.float32).reshape(2, 4, 4) / 10
    target = np.zeros((2, 3, 4), np.float32)
    target[0, 0] = [0.1, 0.4, 0.9, 0.8]    # anchor 1 of image 0
    target[0, 1] = [1.0, 1.2, 1.8, 1.0]    # anchor 3 of image 0
    target[1, 0] = [3.0, 3.0, 3.0, 3.0]    # anchor 0 of image 1
    diffs = [target[0, 0] - pred[0, 1], target[0, 1] - pred[0, 3], target[1, 0] - pred[1, 0]]
    expected = np.mean(_smooth_l1(np.stack(diffs)))
    assert float(losses.rpn_bbox_loss(target, match, pred)) == pytest.approx(expected, rel=1e-5)


def test_mrcnn_class_loss_skips_padding_and_inactive_predictions():
    target = np.array([[1, 0, 2, 0]], np.int32)
    logits = np.array([[[0.1, 2.0, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 5.0]]], np.float32)
    rois = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]], np.float32)
    active = np.array([[1, 1, 0]], np.float32)   # class 2 is not in this image's source
    # row 2 predicts class 2 (inactive) -> skipped; row 3 is padding -> skipped
    expected = np.mean([_ce(logits[0, 0], 1), _ce(logits[0, 1], 0)])
    value = float(losses.mrcnn_class_loss(target, logits, active, rois))
    assert value == pytest.approx(expected, rel=1e-5)


def test_mrcnn_bbox_and_mask_losses_use_the_target_class_of_positives():
    target_ids = np.array([[2, 0, 1]], np.int32)
    target_bbox = np.array([[[0.5, 0.5, 0.5, 0.5], [9, 9, 9, 9], [1.0, -2.0, 0.0, 0.0]]], np.float32)
    pred_bbox = np.zeros((1, 3, 3, 4), np.float32)
    pred_bbox[0, 0, 2] = [0.0, 0.5, 1.0, 0.5]
    pred_bbox[0, 2, 1] = [1.0, 0.0, 0.0, 0.0]
    pred_bbox[0, 2, 2] = [7.0, 7.0, 7.0, 7.0]  # another class: ignored
    expected = np.mean(_smooth_l1(np.stack([target_bbox[0, 0] - pred_bbox[0, 0, 2],
                                            target_bbox[0, 2] - pred_bbox[0, 2, 1]])))
    assert float(losses.mrcnn_bbox_loss(target_bbox, target_ids, pred_bbox)) == pytest.approx(expected, rel=1e-5)

    rng = np.random.default_rng(0)
    target_masks = (rng.random((1, 3, 4, 4)) > 0.5).astype(np.float32)
    pred_masks = rng.uniform(0.05, 0.95, (1, 3, 4, 4, 3)).astype(np.float32)

    def bce(y, p):
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    expected = np.mean(np.stack([bce(target_masks[0, 0], pred_masks[0, 0, :, :, 2]),
                                 bce(target_masks[0, 2], pred_masks[0, 2, :, :, 1])]))
    value = float(losses.mrcnn_mask_loss(target_masks, target_ids, pred_masks))
    assert value == pytest.approx(expected, rel=1e-4)


def test_no_objects_gives_zero_box_and_mask_loss():
    target_ids = np.zeros((2, 5), np.int32)
    rng = np.random.default_rng(1)
    assert float(losses.mrcnn_bbox_loss(rng.normal(size=(2, 5, 4)).astype(np.float32), target_ids,
                                        rng.normal(size=(2, 5, 3, 4)).astype(np.float32))) == 0.0
    assert float(losses.mrcnn_mask_loss(np.ones((2, 5, 4, 4), np.float32), target_ids,
                                        rng.uniform(0.1, 0.9, (2, 5, 4, 4, 3)).astype(np.float32))) == 0.0
    no_positive_anchor = np.full((2, 6, 1), -1, np.int32)
    assert float(losses.rpn_bbox_loss(np.zeros((2, 3, 4), np.float32), no_positive_anchor,
                                      rng.normal(size=(2, 6, 4)).astype(np.float32))) == 0.0
    assert np.isfinite(float(losses.rpn_class_loss(np.zeros((2, 6, 1), np.int32),
                                                   np.zeros((2, 6, 2), np.float32))))


def test_loss_layer_names():
    assert losses.LossLayer("rpn_class_loss").name == "rpn_class_loss"
    with pytest.raises(ValueError, match="total_loss"):
        losses.LossLayer("total_loss")
