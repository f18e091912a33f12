import numpy as np
import pytest

from mrcnn import utils


def test_extract_bboxes_hand_computed():
    mask = np.zeros((10, 12, 3), dtype=bool)
    mask[2:5, 3:7, 0] = True           # rows 2..4, cols 3..6
    mask[9, 11, 1] = True              # a single corner pixel
    boxes = utils.extract_bboxes(mask)  # instance 2 empty
    assert boxes.dtype == np.int32
    assert boxes.tolist() == [[2, 3, 5, 7], [9, 11, 10, 12], [0, 0, 0, 0]]


def test_extract_bboxes_non_convex():
    mask = np.zeros((8, 8, 1), dtype=bool)
    mask[1, 1, 0] = mask[6, 4, 0] = True
    assert utils.extract_bboxes(mask).tolist() == [[1, 1, 7, 5]]


def test_compute_iou_and_overlaps_hand_computed():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 5, 10]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = utils.compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1.0, 25 / 175, 0.0, 0.5])
    overlaps = utils.compute_overlaps(boxes, boxes[:2])
    assert overlaps.shape == (4, 2)
    np.testing.assert_allclose(overlaps[:, 0], [1.0, 25 / 175, 0.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(overlaps[:, 1], [25 / 175, 1.0, 0.0, 0.0], rtol=1e-6)


def test_compute_overlaps_matches_pairwise_loop_across_blocks():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (3000, 2))
    b = rng.uniform(0, 100, (150, 2))
    boxes1 = np.concatenate([a, a + rng.uniform(1, 30, (3000, 2))], axis=1)
    boxes2 = np.concatenate([b, b + rng.uniform(1, 30, (150, 2))], axis=1)
    overlaps = utils.compute_overlaps(boxes1, boxes2)  # > 1 block of rows
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    for i in (0, 1746, 2999):
        area = (boxes1[i, 2] - boxes1[i, 0]) * (boxes1[i, 3] - boxes1[i, 1])
        np.testing.assert_allclose(overlaps[i], utils.compute_iou(boxes1[i], boxes2, area, area2), atol=1e-5)


def test_compute_overlaps_empty_and_degenerate():
    assert utils.compute_overlaps(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    degenerate = np.array([[5, 5, 5, 5]])
    assert utils.compute_overlaps(degenerate, degenerate)[0, 0] == 0.0


def test_non_max_suppression_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    # box 3 (0.95) suppresses box 0 (IoU 90/100) and box 1 (IoU 72/118 = 0.61); box 2 is apart.
    assert keep.tolist() == [3, 2]
    assert utils.non_max_suppression(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_box_refinement_and_apply_box_deltas_invert_each_other():
    rng = np.random.default_rng(1)
    corner = rng.uniform(0, 200, (50, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 80, (50, 2))], axis=1)
    corner = rng.uniform(0, 200, (50, 2))
    targets = np.concatenate([corner, corner + rng.uniform(5, 80, (50, 2))], axis=1)
    deltas = utils.box_refinement(boxes, targets)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), targets, rtol=1e-4, atol=1e-3)


def test_box_refinement_hand_computed():
    deltas = utils.box_refinement(np.array([[0, 0, 10, 20]]), np.array([[5, 0, 25, 20]]))
    np.testing.assert_allclose(deltas, [[1.0, 0.0, np.log(2.0), 0.0]], rtol=1e-6)


def test_norm_and_denorm_boxes():
    boxes = np.array([[0, 0, 100, 200], [10, 20, 51, 101]])
    normalized = utils.norm_boxes(boxes, (100, 200))
    np.testing.assert_allclose(normalized[0], [0, 0, 1, 1])
    np.testing.assert_allclose(normalized[1], [10 / 99, 20 / 199, 50 / 99, 100 / 199], rtol=1e-6)
    assert utils.denorm_boxes(normalized, (100, 200)).tolist() == boxes.tolist()


def test_trim_zeros():
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert utils.trim_zeros(x).tolist() == [[1, 2, 3, 4], [0, 0, 1, 0]]


def test_extract_bboxes_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        utils.extract_bboxes(np.zeros((4, 4)))
