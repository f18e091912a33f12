import numpy as np
import skimage.transform

from mrcnn import utils
from mrcnn.postprocess import paste_masks, unmold_detections


def matterport_unmold_mask(mask, bbox, image_shape):
    """Matterport's utils.unmold_mask, written here from its procedure: skimage's resize with Matterport's
    arguments (order=1, mode="constant", cval=0, clip=True, preserve_range=False, anti_aliasing=False), >= 0.5,
    placed in the image (the part inside it)."""
    y1, x1, y2, x2 = bbox
    full = np.zeros(image_shape[:2], bool)
    if y2 <= y1 or x2 <= x1:
        return full
    resized = skimage.transform.resize(mask, (y2 - y1, x2 - x1), order=1, mode="constant", cval=0, clip=True,
                                       preserve_range=False, anti_aliasing=False) >= 0.5
    padded = np.zeros((image_shape[0] + 400, image_shape[1] + 400), bool)  # room for boxes past the borders
    padded[y1 + 200:y2 + 200, x1 + 200:x2 + 200] = resized
    return padded[200:-200, 200:-200]


def test_paste_masks_equals_matterports_unmold_mask():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 28, 28)).astype(np.float32)
    masks = (masks + np.linspace(0, 1, 28)[None, None, :]) / 2  # structure, so the threshold matters
    boxes = np.array([[10, 20, 60, 90], [0, 0, 5, 7], [-10, 100, 30, 140], [70, 110, 95, 135],
                      [40, 40, 41, 41], [50, 50, 50, 60]])  # one clipped at two borders, one empty
    # smooth elliptical masks, where clamping at the border made masks 2-3% larger than Matterport's
    yy, xx = np.mgrid[0:28, 0:28]
    ellipses = np.stack([np.clip(1.4 - ((yy - 13.5) / a) ** 2 - ((xx - 13.5) / b) ** 2, 0, 1)
                         for a, b in rng.uniform(8, 16, (30, 2))]).astype(np.float32)
    ellipse_boxes = np.stack([rng.integers(0, 60, 30), rng.integers(0, 100, 30)], 1)
    ellipse_boxes = np.concatenate([ellipse_boxes, ellipse_boxes + rng.integers(3, 120, (30, 2))], 1)
    full = paste_masks(masks, boxes, (80, 128))
    assert full[:, :, :4].any(axis=(0, 1)).all() and not full[:, :, 5].any()
    for case_masks, case_boxes in ((masks, boxes), (ellipses, ellipse_boxes)):
        full = paste_masks(case_masks, case_boxes, (80, 128))
        assert full.shape == (80, 128, len(case_boxes)) and full.dtype == bool
        for i in range(len(case_boxes)):
            expected = matterport_unmold_mask(case_masks[i], case_boxes[i], (80, 128))
            assert np.array_equal(full[:, :, i], expected), f"instance {i}"
            assert np.array_equal(utils.unmold_mask(case_masks[i], case_boxes[i], (80, 128)), expected)


def test_unmold_detections_maps_boxes_back_to_the_original_image():
    # A 100x200 image molded into 128x128: scale 0.64, window (32, 0, 96, 128)
    original, molded = (100, 200, 3), (128, 128, 3)
    window = (32, 0, 96, 128)
    detections = np.zeros((4, 6), np.float32)
    # A box covering the left half of the window, class 2, score 0.9; then one with no area
    detections[0] = [32 / 127, 0, 95 / 127, 63 / 127, 2, 0.9]
    detections[1] = [0.5, 0.5, 0.5, 0.5, 1, 0.8]
    masks = np.zeros((4, 28, 28, 3), np.float32)
    masks[0, :, :, 2] = 1.0
    boxes, class_ids, scores, full = unmold_detections(detections, masks, original, molded, window)
    assert class_ids.tolist() == [2] and scores.tolist() == [np.float32(0.9)]
    np.testing.assert_allclose(boxes[0], [0, 0, 100, 100], atol=1)
    # an all-ones mask fills its box but the corner pixels (blended with the zero border, as Matterport's)
    assert full.shape == (100, 200, 1) and full[1:-1, 1:98, 0].all() and not full[:, 101:, 0].any()
    assert not full[0, 0, 0]
