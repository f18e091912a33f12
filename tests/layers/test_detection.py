import numpy as np
import pytest
from keras import ops

from mrcnn.data.image_meta import compose_image_meta
from mrcnn.layers import DetectionLayer

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

STD = np.array([0.1, 0.1, 0.2, 0.2])


def _meta(window=(0, 0, 100, 100)):
    return compose_image_meta(0, (100, 100, 3), (100, 100, 3), window, 1, [1, 1, 1])[None].astype(np.float32)


def test_filters_clips_and_suppresses_per_class():
    rois = np.array([[[0.1, 0.1, 0.5, 0.5],    # class 1, 0.9
                      [0.12, 0.1, 0.5, 0.5],   # class 1, 0.8: suppressed by the first
                      [0.1, 0.12, 0.5, 0.5],   # class 2, 0.7: same place, other class, kept
                      [0.6, 0.6, 0.9, 1.2],    # class 2, 0.75, reaches past the image: clipped
                      [0.6, 0.0, 0.9, 0.3],    # background
                      [0.0, 0.6, 0.3, 0.9],    # class 1 at 0.5 < min confidence
                      [0.0, 0.0, 0.0, 0.0]]], np.float32)  # padding
    probs = np.zeros((1, 7, 3), np.float32)
    for i, (cls, p) in enumerate([(1, .9), (1, .8), (2, .7), (2, .75), (0, .9), (1, .5), (1, .99)]):
        probs[0, i, cls] = p
        probs[0, i, (cls + 1) % 3] = 1 - p
    deltas = np.zeros((1, 7, 3, 4), np.float32)
    layer = DetectionLayer(max_instances=5, min_confidence=0.6, nms_threshold=0.3, bbox_std_dev=STD)
    detections = ops.convert_to_numpy(layer(rois, probs, deltas, _meta()))
    assert detections.shape == (1, 5, 6)
    np.testing.assert_allclose(detections[0, 0], [0.1, 0.1, 0.5, 0.5, 1, 0.9], atol=1e-6)
    np.testing.assert_allclose(detections[0, 1], [0.6, 0.6, 0.9, 1.0, 2, 0.75], atol=1e-6)
    np.testing.assert_allclose(detections[0, 2], [0.1, 0.12, 0.5, 0.5, 2, 0.7], atol=1e-6)
    assert not detections[0, 3:].any()


def test_class_deltas_are_applied():
    rois = np.array([[[0.2, 0.2, 0.4, 0.4]]], np.float32)
    probs = np.array([[[0.0, 0.1, 0.9]]], np.float32)
    deltas = np.zeros((1, 1, 3, 4), np.float32)
    deltas[0, 0, 2] = [1.0, 0.0, 0.0, 0.0]   # times std 0.1 -> shift by 0.1 of the height
    deltas[0, 0, 1] = [9.0, 9.0, 9.0, 9.0]   # another class: ignored
    layer = DetectionLayer(max_instances=2, min_confidence=0.5, nms_threshold=0.3, bbox_std_dev=STD)
    detections = ops.convert_to_numpy(layer(rois, probs, deltas, _meta()))
    np.testing.assert_allclose(detections[0, 0, :4], [0.22, 0.2, 0.42, 0.4], atol=1e-6)
