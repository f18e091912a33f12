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


def _every_class_reference(rois, probs, deltas, min_confidence, nms_threshold, max_instances):
    """torchvision's rule as a loop: every (ROI, foreground class) pair with probability >= min_confidence,
    boxed by its class's deltas and clipped to the image; the as-many-as-ROIs best pairs; greedy NMS per class
    (Matterport's NumPy NMS); the best ``max_instances``."""
    from mrcnn import utils

    candidates = []
    for i in range(rois.shape[0]):
        for c in range(1, probs.shape[1]):
            if probs[i, c] >= min_confidence:
                box = utils.apply_box_deltas(rois[i:i + 1].astype(np.float64), deltas[i:i + 1, c] * STD)[0]
                candidates.append((float(probs[i, c]), c, np.clip(box, 0.0, 1.0)))
    candidates = sorted(candidates, key=lambda t: -t[0])[:rois.shape[0]]
    kept = []
    for c in sorted({t[1] for t in candidates}):
        mine = [t for t in candidates if t[1] == c]
        keep = utils.non_max_suppression(np.array([t[2] for t in mine]), np.array([t[0] for t in mine]),
                                         nms_threshold)
        kept += [mine[k] for k in keep]
    return sorted(kept, key=lambda t: -t[0])[:max_instances]


def test_every_class_scores_each_class_of_each_roi_as_torchvision():
    rng = np.random.default_rng(3)
    count, classes = 12, 3
    corner = rng.uniform(0, 0.6, (count, 2))
    rois = np.concatenate([corner, corner + rng.uniform(0.1, 0.4, (count, 2))], axis=1).astype(np.float32)
    probs = rng.dirichlet(np.ones(classes), count).astype(np.float32)
    probs[0] = [0.55, 0.4, 0.05]  # background most likely: Matterport's rule drops it, torchvision's keeps 0.4
    deltas = rng.normal(0, 1, (count, classes, 4)).astype(np.float32)
    layer = DetectionLayer(max_instances=8, min_confidence=0.05, nms_threshold=0.3, bbox_std_dev=STD,
                           every_class=True)
    detections = ops.convert_to_numpy(layer(rois[None], probs[None], deltas[None], _meta()))[0]
    expected = _every_class_reference(rois, probs, deltas, 0.05, 0.3, 8)
    found = detections[detections[:, 5] > 0]
    assert len(found) == len(expected) > 0
    for got, (score, class_id, box) in zip(found, expected):
        np.testing.assert_allclose(got[:4], box, atol=1e-5)
        assert got[4] == class_id and got[5] == pytest.approx(score, abs=1e-6)
    assert any(abs(d[5] - 0.4) < 1e-6 and d[4] == 1 for d in found)
    argmax = DetectionLayer(max_instances=8, min_confidence=0.05, nms_threshold=0.3, bbox_std_dev=STD)
    matterport = ops.convert_to_numpy(argmax(rois[None], probs[None], deltas[None], _meta()))[0]
    assert not any(abs(d[5] - 0.4) < 1e-6 and d[4] == 1 for d in matterport)
    assert DetectionLayer.from_config(layer.get_config()).every_class
    # without suppression, as many candidates as ROIs reach the output: the best-scored (ROI, class) pairs
    wide = DetectionLayer(max_instances=30, min_confidence=0.0, nms_threshold=1.0, bbox_std_dev=STD,
                          every_class=True)
    scores = ops.convert_to_numpy(wide(rois[None], probs[None], deltas[None], _meta()))[0, :, 5]
    np.testing.assert_allclose(np.sort(scores[scores > 0])[::-1], np.sort(probs[:, 1:].ravel())[::-1][:count],
                               atol=1e-6)
