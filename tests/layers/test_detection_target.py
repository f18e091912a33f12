import numpy as np
import pytest
from keras import ops

from mrcnn import utils
from mrcnn.layers import DetectionTargetLayer

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

STD = np.array([0.1, 0.1, 0.2, 0.2])


def _layer(rois=8, ratio=0.5, mini=False, add_gt=False, seed=0):
    return DetectionTargetLayer(rois, ratio, STD, (4, 4), mini, add_gt_proposals=add_gt, seed=seed)


def _case():
    gt_boxes = np.zeros((1, 3, 4), np.float32)
    gt_boxes[0, 0] = [0.1, 0.1, 0.5, 0.5]   # class 1
    gt_boxes[0, 1] = [0.6, 0.6, 0.9, 0.9]   # crowd
    gt_class_ids = np.array([[1, -1, 0]], np.int32)
    masks = np.zeros((1, 20, 20, 3), bool)
    # gt 0 spans pixels 1.9 .. 9.5 of 20; the 4x4 target samples columns 1.9, 4.4, 7.0, 9.5:
    # a mask over columns 1..6 gives the left half.
    masks[0, 1:12, 1:7, 0] = True
    proposals = np.zeros((1, 10, 4), np.float32)
    proposals[0, 0] = [0.1, 0.1, 0.5, 0.5]  # positive, identical to gt 0
    proposals[0, 1] = [0.1, 0.1, 0.5, 0.45]  # positive, IoU 0.875
    proposals[0, 2] = [0.62, 0.62, 0.88, 0.88]  # inside the crowd: neither
    proposals[0, 3] = [0.0, 0.7, 0.2, 0.95]  # negative
    proposals[0, 4] = [0.7, 0.0, 0.95, 0.3]  # negative
    proposals[0, 5] = [0.3, 0.3, 0.55, 0.6]  # IoU < 0.5 with gt 0: negative
    return proposals, gt_class_ids, gt_boxes, masks


def test_targets_on_a_crafted_case():
    proposals, gt_class_ids, gt_boxes, masks = _case()
    rois, class_ids, deltas, target_masks = (ops.convert_to_numpy(t) for t in
                                             _layer()(proposals, gt_class_ids, gt_boxes, masks))
    assert rois.shape == (1, 8, 4) and class_ids.shape == (1, 8) and target_masks.shape == (1, 8, 4, 4)
    # 2 positives, ratio 0.5 -> 2 negatives, then padding
    assert class_ids[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert sorted(map(tuple, rois[0, :2].round(4).tolist())) == sorted(
        map(tuple, proposals[0, :2].round(4).tolist()))
    negatives = {tuple(r) for r in rois[0, 2:4].round(4).tolist()}
    assert negatives <= {tuple(p) for p in proposals[0, 3:6].round(4).tolist()}
    assert not rois[0, 4:].any() and not deltas[0, 2:].any() and not target_masks[0, 2:].any()
    # Deltas decode to the ground-truth box
    for i in range(2):
        np.testing.assert_allclose(utils.apply_box_deltas(rois[0, i:i + 1], deltas[0, i:i + 1] * STD),
                                   gt_boxes[0, :1], atol=1e-5)
    # The ROI identical to the box gets the mask's left half
    exact = int(np.argmin(np.abs(rois[0, :2] - proposals[0, 0]).sum(axis=1)))
    assert target_masks[0, exact].tolist() == [[1, 1, 0, 0]] * 4


def test_mini_masks_give_the_same_targets():
    proposals, gt_class_ids, gt_boxes, masks = _case()
    full = [ops.convert_to_numpy(t) for t in _layer()(proposals, gt_class_ids, gt_boxes, masks)]
    mini_masks = np.zeros((1, 8, 8, 3), bool)
    mini_masks[0, :, :4, 0] = True  # the left half of gt 0's box, in its own frame
    out = [ops.convert_to_numpy(t) for t in _layer(mini=True)(proposals, gt_class_ids, gt_boxes, mini_masks)]
    exact = int(np.argmin(np.abs(out[0][0, :2] - proposals[0, 0]).sum(axis=1)))
    assert out[3][0, exact].tolist() == [[1, 1, 0, 0]] * 4
    assert out[1][0].tolist() == full[1][0].tolist()


def test_no_positive_gives_no_rois_unless_gt_boxes_are_added():
    proposals, gt_class_ids, gt_boxes, masks = _case()
    proposals[0, :2] = [0.0, 0.7, 0.1, 0.8]  # no proposal overlaps gt 0 any more
    rois, class_ids, _, _ = (ops.convert_to_numpy(t) for t in _layer()(proposals, gt_class_ids, gt_boxes, masks))
    assert not rois.any() and not class_ids.any()  # Matterport's rule: no positives, no negatives
    rois, class_ids, deltas, _ = (ops.convert_to_numpy(t) for t in
                                  _layer(add_gt=True)(proposals, gt_class_ids, gt_boxes, masks))
    assert class_ids[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(rois[0, 0], gt_boxes[0, 0])
    assert not deltas[0, 0].any()
    assert rois[0, 1].any() and not rois[0, 2:].any()  # one negative for one positive at ratio 0.5


def test_sampling_caps_positives_and_keeps_the_ratio():
    rng = np.random.default_rng(0)
    gt_boxes = np.array([[[0.2, 0.2, 0.6, 0.6]]], np.float32)
    jitter = rng.uniform(-0.02, 0.02, (1, 40, 4)).astype(np.float32)
    far = np.array([0.7, 0.7, 0.95, 0.95], np.float32) + jitter / 2
    proposals = np.concatenate([gt_boxes + jitter, far], axis=1)[:, :60]
    layer = DetectionTargetLayer(20, 0.25, STD, (4, 4), False, seed=1)
    _, class_ids, _, _ = (ops.convert_to_numpy(t) for t in
                          layer(proposals, np.array([[1]]), gt_boxes, np.ones((1, 10, 10, 1), bool)))
    assert (class_ids[0] > 0).sum() == 5  # int(20 * 0.25)
    rois = ops.convert_to_numpy(layer(proposals, np.array([[1]]), gt_boxes, np.ones((1, 10, 10, 1), bool))[0])
    assert np.any(rois[0].any(axis=1)) and rois[0].any(axis=1).sum() == 20  # 5 positives + 15 negatives
