import numpy as np

from mrcnn import utils
from mrcnn.postprocess import paste_masks, unmold_detections


def test_paste_masks_equals_per_instance_unmold_mask():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 28, 28)).astype(np.float32)
    masks = (masks + np.linspace(0, 1, 28)[None, None, :]) / 2  # structure, so the threshold matters
    boxes = np.array([[10, 20, 60, 90], [0, 0, 5, 7], [-10, 100, 30, 140], [70, 110, 95, 135],
                      [40, 40, 41, 41], [50, 50, 50, 60]])  # one clipped at two borders, one empty
    full = paste_masks(masks, boxes, (80, 128))
    assert full.shape == (80, 128, 6) and full.dtype == bool
    for i in range(6):
        expected = utils.unmold_mask(masks[i], boxes[i], (80, 128))
        assert np.array_equal(full[:, :, i], expected), f"instance {i}"
    assert full[:, :, :4].any(axis=(0, 1)).all() and not full[:, :, 5].any()


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
    assert full.shape == (100, 200, 1) and full[:, :99, 0].all() and not full[:, 101:, 0].any()
