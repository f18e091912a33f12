"""Batched greedy non-maximum suppression in ``keras.ops``: any Keras backend, fixed shapes, XLA/jit-friendly.

The same selections as TensorFlow's ``NonMaxSuppressionV4`` (``tf.image.non_max_suppression_padded``) for
each image: candidates in order of decreasing score (equal scores: lower index first), a candidate is
kept when its IoU with every box kept before it is at most ``iou_threshold``, only scores above
``score_threshold`` take part, and at most ``max_output_size`` are kept. IoU as TensorFlow computes it
(:func:`mrcnn.ops.overlaps`): corners in either order, 0 when either box has no area.

Formulation: ``max_output_size`` rounds of a ``fori_loop``; each round takes the best candidate still
standing (an argmax over the image's sorted scores) and removes every candidate that overlaps it by more
than the threshold (one row of IoUs, ``O(N)``): ``O(max_output_size * N)`` work and ``O(N)`` memory per
image, no ``N x N`` matrix, no Python loop over boxes.
"""

from __future__ import annotations

from keras import ops

from mrcnn import ops as mops


def greedy_nms_padded(boxes, scores, max_output_size, iou_threshold, score_threshold=None):
    """boxes ``[B, N, 4]``, scores ``[B, N]`` -> ``indices`` int32 ``[B, max_output_size]`` (highest score
    first, padding 0) and ``valid`` bool ``[B, max_output_size]``; see the module docstring."""
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    count = scores.shape[1]
    max_output_size = int(max_output_size)
    # Decreasing score, equal scores by increasing index: a stable argsort of the negated scores (keras.ops.argsort
    # is stable on every backend; torch.topk, which ops.top_k is on PyTorch, orders ties as it likes)
    order = ops.cast(ops.argsort(-scores, axis=-1), "int32")
    sorted_scores = ops.take_along_axis(scores, order, axis=1)
    sorted_boxes = ops.take_along_axis(boxes, order[:, :, None], axis=1)
    standing = ops.ones_like(sorted_scores, dtype="bool")
    if score_threshold is not None:
        standing = sorted_scores > float(score_threshold)
    positions = ops.arange(count, dtype="int32")[None, :]
    slots = ops.arange(max_output_size, dtype="int32")[None, :]
    batch = ops.shape(scores)[0]
    selected = ops.zeros((batch, max_output_size), dtype="int32")
    valid = ops.zeros((batch, max_output_size), dtype="bool")

    def one_round(i, state):
        standing, selected, valid = state
        found = ops.any(standing, axis=1)                                            # [B]
        # the first standing candidate in sorted order is the best one left
        best = ops.cast(ops.argmax(ops.cast(standing, "int32"), axis=1), "int32")    # [B]
        best_box = ops.take_along_axis(sorted_boxes, best[:, None, None], axis=1)[:, 0]
        overlapping = mops.overlaps(best_box[:, None], sorted_boxes)[:, 0] > iou_threshold
        standing = standing & ~overlapping & (positions != best[:, None])
        index = ops.take_along_axis(order, best[:, None], axis=1)[:, 0]
        here = slots == i
        selected = ops.where(here & found[:, None], index[:, None], selected)
        valid = valid | (here & found[:, None])
        return standing, selected, valid

    _, selected, valid = ops.fori_loop(0, max_output_size, one_round, (standing, selected, valid))
    return selected, valid
