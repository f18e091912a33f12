import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mrcnn import utils


def _random_masks(rng, count, shape=(40, 50)):
    """Blobby random masks: random rectangles unioned with random noise, some empty."""
    masks = np.zeros(shape + (count,), dtype=bool)
    for i in range(count):
        if i % 7 == 6:
            continue  # leave some empty
        y, x = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 5)
        masks[y:y + rng.integers(3, 25), x:x + rng.integers(3, 25), i] = True
        masks[:, :, i] |= rng.random(shape) < 0.05
    return masks


def test_compute_overlaps_masks_equals_pycocotools():
    rng = np.random.default_rng(0)
    masks1 = _random_masks(rng, 13)
    masks2 = _random_masks(rng, 9)
    ours = utils.compute_overlaps_masks(masks1, masks2)
    rle1 = coco_mask.encode(np.asfortranarray(masks1.astype(np.uint8)))
    rle2 = coco_mask.encode(np.asfortranarray(masks2.astype(np.uint8)))
    reference = coco_mask.iou(rle1, rle2, [0] * masks2.shape[-1])
    assert ours.shape == (13, 9)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert np.count_nonzero(ours) > 20  # the case is not trivially empty


def test_compute_overlaps_masks_thresholds_soft_masks_and_handles_empty():
    soft = np.zeros((4, 4, 1))
    soft[:2, :, 0] = 0.6
    soft[2:, :, 0] = 0.4
    hard = np.zeros((4, 4, 1), dtype=bool)
    hard[:2, :2, 0] = True
    np.testing.assert_allclose(utils.compute_overlaps_masks(soft, hard), [[0.5]])
    assert utils.compute_overlaps_masks(soft, np.zeros((4, 4, 0))).shape == (1, 0)
    with pytest.raises(ValueError, match=r"\(4, 4\) vs \(5, 4\)"):
        utils.compute_overlaps_masks(soft, np.zeros((5, 4, 1)))


def test_minimize_then_expand_mask_round_trip():
    mask = np.zeros((60, 80, 2), dtype=bool)
    mask[10:40, 20:70, 0] = True
    mask[5:15, 5:12, 1] = True
    boxes = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(boxes, mask, (28, 28))
    assert mini.shape == (28, 28, 2) and mini.dtype == bool and mini.all()
    assert np.array_equal(utils.expand_mask(boxes, mini, mask.shape), mask)


def test_minimize_expand_keeps_a_circle_close():
    yy, xx = np.mgrid[:100, :100]
    mask = (((yy - 50) ** 2 + (xx - 40) ** 2) < 30 ** 2)[:, :, None]
    boxes = utils.extract_bboxes(mask)
    restored = utils.expand_mask(boxes, utils.minimize_mask(boxes, mask, (56, 56)), mask.shape)
    assert utils.compute_overlaps_masks(mask, restored)[0, 0] > 0.97


def test_minimize_mask_rejects_zero_area_box():
    with pytest.raises(ValueError, match="instance 0 has a box of zero area"):
        utils.minimize_mask(np.array([[3, 3, 3, 8]]), np.ones((10, 10, 1), bool), (7, 7))


def test_unmold_mask_pastes_into_box_and_clips_at_border():
    mask = np.zeros((28, 28), dtype=np.float32)
    mask[:, :14] = 0.9  # left half of the box
    full = utils.unmold_mask(mask, (10, 20, 30, 60), (50, 70, 3))
    assert full.shape == (50, 70) and full.dtype == bool
    assert full[10:30, 20:40].all() and not full[10:30, 40:60].any()
    assert full.sum() == 20 * 20
    clipped = utils.unmold_mask(np.ones((28, 28)), (-10, 60, 10, 90), (50, 70))
    assert clipped.sum() == 10 * 10 and clipped[:10, 60:].all()
