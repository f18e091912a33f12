"""The keras.ops greedy NMS against a plain greedy loop in NumPy and, on TensorFlow, TensorFlow's greedy kernel
(NonMaxSuppressionV4, padded), which the NumPy loop must equal too.

Not against ``tf.image.non_max_suppression_padded``: in TensorFlow 2 that runs a tiled batched algorithm
that is not the greedy one in degenerate cases (below, it keeps a box identical to one it kept before);
``tf.image.non_max_suppression`` and the V4 kernel the model's graph uses agree with each other and with
this implementation.
"""

import importlib.util

import keras
import numpy as np
import pytest

from mrcnn import ops as mops
from mrcnn.nms import greedy_nms_padded
from mrcnn.ops import overlaps

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def _numpy_iou(box, boxes):
    """IoU of one box with ``boxes`` in float32, as TensorFlow's NMS kernel computes it (corners in either
    order; 0 when either box has no area)."""
    y1, y2 = np.minimum(box[0], box[2]), np.maximum(box[0], box[2])
    x1, x2 = np.minimum(box[1], box[3]), np.maximum(box[1], box[3])
    oy1, oy2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    ox1, ox2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area, other = (y2 - y1) * (x2 - x1), (oy2 - oy1) * (ox2 - ox1)
    inter = (np.maximum(np.minimum(y2, oy2) - np.maximum(y1, oy1), np.float32(0))
             * np.maximum(np.minimum(x2, ox2) - np.maximum(x1, ox1), np.float32(0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area + other - inter)
    return np.where((area > 0) & (other > 0), iou, np.float32(0))


def _numpy_greedy(boxes, scores, max_output_size, iou_threshold, score_threshold):
    """The greedy algorithm, one box at a time: by decreasing score (ties: lower index first), keep a box
    above the score threshold whose IoU with every kept box is at most the threshold."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if len(kept) == max_output_size or not scores[i] > score_threshold:
            continue
        if all(_numpy_iou(boxes[k], boxes[i:i + 1])[0] <= np.float32(iou_threshold) for k in kept):
            kept.append(int(i))
    return kept


def _reference(boxes, scores, max_output_size, iou_threshold, score_threshold=float("-inf")):
    """Greedy NMS per image: selected indices, padded with 0, and their count; on TensorFlow, checked
    against TensorFlow's kernels."""
    out, counts = [], []
    for b in range(boxes.shape[0]):
        kept = _numpy_greedy(boxes[b], scores[b], max_output_size, iou_threshold, score_threshold)
        if ON_TENSORFLOW and importlib.util.find_spec("tensorflow") is not None:
            import tensorflow as tf

            selected, count = tf.raw_ops.NonMaxSuppressionV4(
                boxes=boxes[b], scores=scores[b], max_output_size=max_output_size, iou_threshold=iou_threshold,
                score_threshold=score_threshold, pad_to_max_output_size=True)
            plain = tf.image.non_max_suppression(boxes[b], scores[b], max_output_size, iou_threshold=iou_threshold,
                                                 score_threshold=score_threshold).numpy()
            assert plain.tolist() == selected.numpy()[:int(count)].tolist() == kept
        out.append(np.array(kept + [0] * (max_output_size - len(kept)), np.int32))
        counts.append(len(kept))
    return np.stack(out), np.array(counts)


def _hard_boxes(rng, batch, count):
    """Random boxes with the hard cases: flipped corners, zero area, identical boxes, tied scores."""
    corners = rng.uniform(0, 1, (batch, count, 2))
    sizes = rng.uniform(0.02, 0.4, (batch, count, 2))
    boxes = np.concatenate([corners, corners + sizes], -1)
    boxes[:, ::7] = boxes[:, ::7][..., [2, 3, 0, 1]]               # flipped corners
    boxes[:, 3::11, 2] = boxes[:, 3::11, 0]                        # zero height
    boxes[:, 5::13] = boxes[:, 4::13][:, :boxes[:, 5::13].shape[1]]  # identical to the previous box
    scores = rng.choice(np.linspace(0.05, 1.0, 12), size=(batch, count))   # many ties
    return boxes.astype(np.float32), scores.astype(np.float32)


@pytest.mark.all_backends
@pytest.mark.parametrize("seed,count,max_output,iou,score_threshold", [
    (0, 40, 30, 0.5, None),
    (1, 200, 50, 0.3, None),
    (2, 200, 200, 0.7, 0.4),
    (3, 64, 10, 0.0, None),     # any overlap suppresses
    (4, 64, 64, 1.0, None),     # nothing is suppressed (IoU is at most 1)
])
def test_equals_the_greedy_loop_and_tensorflows_kernel(seed, count, max_output, iou, score_threshold):
    boxes, scores = _hard_boxes(np.random.default_rng(seed), 3, count)
    indices, valid = greedy_nms_padded(boxes, scores, max_output, iou, score_threshold)
    indices, valid = keras.ops.convert_to_numpy(indices), keras.ops.convert_to_numpy(valid)
    expected, counts = _reference(boxes, scores, max_output, iou,
                                  float("-inf") if score_threshold is None else score_threshold)
    assert indices.shape == valid.shape == (3, max_output)
    for b in range(3):
        assert valid[b].sum() == counts[b]
        assert valid[b, :counts[b]].all()
        np.testing.assert_array_equal(indices[b], expected[b])


def test_the_tiled_padded_op_is_not_the_greedy_one():
    import tensorflow as tf

    boxes, scores = _hard_boxes(np.random.default_rng(0), 3, 40)
    tiled, count = tf.image.non_max_suppression_padded(boxes[0], scores[0], 30, iou_threshold=0.5,
                                                       pad_to_max_output_size=True)
    tiled = tiled.numpy()[:int(count)]
    assert 4 in tiled and 5 in tiled and np.array_equal(boxes[0, 4], boxes[0, 5])   # IoU 1, both kept
    indices, valid = greedy_nms_padded(boxes, scores, 30, 0.5)
    ours = keras.ops.convert_to_numpy(indices)[0][keras.ops.convert_to_numpy(valid)[0]]
    assert 4 in ours and 5 not in ours


@pytest.mark.all_backends
def test_iou_exactly_at_the_threshold_is_kept():
    # Two 1x2 boxes overlapping by one unit square: IoU = 1 / 3 exactly as float32 computes it in both.
    boxes = np.array([[[0, 0, 1, 2], [0, 1, 1, 3], [5, 5, 6, 6]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7]], np.float32)
    iou = float(keras.ops.convert_to_numpy(overlaps(boxes[:, :1], boxes))[0, 0, 1])
    for threshold in (iou, np.nextafter(np.float32(iou), np.float32(0))):
        indices, valid = greedy_nms_padded(boxes, scores, 3, float(threshold))
        expected, counts = _reference(boxes, scores, 3, float(threshold))
        got = keras.ops.convert_to_numpy(indices)[0][keras.ops.convert_to_numpy(valid)[0]]
        assert got.tolist() == expected[0][:counts[0]].tolist()


@pytest.mark.all_backends
def test_iou_as_tensorflow_computes_it():
    rng = np.random.default_rng(5)
    boxes, _ = _hard_boxes(rng, 1, 30)
    ours = keras.ops.convert_to_numpy(overlaps(boxes[:, 4:5], boxes))[0, 0]
    # tf.image's own IoU is not public; its NMS at threshold t keeps box j after box i iff IoU <= t, which
    # pins the formula down on these cases; here, against the plain formula in float64.
    b = boxes[0].astype(np.float64)
    y1, y2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    x1, x2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    area = (y2 - y1) * (x2 - x1)
    inter = (np.clip(np.minimum(y2[4], y2) - np.maximum(y1[4], y1), 0, None)
             * np.clip(np.minimum(x2[4], x2) - np.maximum(x1[4], x1), 0, None))
    expected = np.where((area[4] > 0) & (area > 0), inter / (area[4] + area - inter), 0.0)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_compiles_with_xla_and_matches_the_graphs_nms():
    import tensorflow as tf

    boxes, scores = _hard_boxes(np.random.default_rng(6), 2, 120)
    compiled = tf.function(lambda b, s: greedy_nms_padded(b, s, 40, 0.5), jit_compile=True)
    indices, valid = compiled(boxes, scores)
    graph_indices, graph_valid = mops.non_max_suppression_padded(boxes, scores, 40, 0.5)
    np.testing.assert_array_equal(indices.numpy(), keras.ops.convert_to_numpy(graph_indices))
    np.testing.assert_array_equal(valid.numpy(), keras.ops.convert_to_numpy(graph_valid))
