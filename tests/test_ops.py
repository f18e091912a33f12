"""Graph box math (keras.ops) against the NumPy utilities."""

import keras
import numpy as np
import pytest
from keras import ops

from mrcnn import ops as mops
from mrcnn import utils


def _random_boxes(rng, n, scale=1.0):
    corner = rng.uniform(0, 0.7, (n, 2)) * scale
    return np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (n, 2)) * scale], axis=1).astype(np.float32)


@pytest.mark.all_backends
def test_box_math_matches_numpy():
    rng = np.random.default_rng(0)
    boxes, targets = _random_boxes(rng, 20), _random_boxes(rng, 20)
    deltas = ops.convert_to_numpy(mops.box_refinement(boxes, targets))
    np.testing.assert_allclose(deltas, utils.box_refinement(boxes, targets), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(mops.apply_box_deltas(boxes, deltas)),
                               utils.apply_box_deltas(boxes, deltas), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(mops.overlaps(boxes, targets)),
                               utils.compute_overlaps(boxes, targets), atol=1e-6)
    # extreme deltas (an untrained head): both cap the log-scale growth at the same bound
    wild = np.concatenate([deltas[:, :2], rng.uniform(3, 12, (20, 2))], axis=1).astype(np.float32)
    capped = utils.apply_box_deltas(boxes, wild)
    assert np.isfinite(capped).all()
    np.testing.assert_allclose(ops.convert_to_numpy(mops.apply_box_deltas(boxes, wild)), capped, rtol=1e-5)
    heights = (capped[:, 2] - capped[:, 0]) / (boxes[:, 2] - boxes[:, 0])
    np.testing.assert_allclose(heights, np.exp(np.minimum(wild[:, 2], np.log(62.5))), rtol=1e-4)
    batched = ops.convert_to_numpy(mops.overlaps(np.stack([boxes, targets]), np.stack([targets, boxes])))
    np.testing.assert_allclose(batched[1], utils.compute_overlaps(targets, boxes), atol=1e-6)


@pytest.mark.all_backends
def test_norm_denorm_and_clip():
    pixel = np.array([[0, 0, 100, 200], [10, 20, 51, 101]])
    normalized = ops.convert_to_numpy(mops.norm_boxes(pixel, (100, 200)))
    np.testing.assert_allclose(normalized, utils.norm_boxes(pixel, (100, 200)), rtol=1e-6)
    assert ops.convert_to_numpy(mops.denorm_boxes(normalized, (100, 200))).tolist() == pixel.tolist()
    boxes = np.array([[[-0.1, 0.2, 0.5, 1.3]], [[0.3, 0.3, 0.4, 0.4]]], np.float32)
    windows = np.array([[0.0, 0.0, 1.0, 1.0], [0.35, 0.0, 0.6, 1.0]], np.float32)
    clipped = ops.convert_to_numpy(mops.clip_boxes(boxes, windows[:, None, :]))
    np.testing.assert_allclose(clipped, [[[0.0, 0.2, 0.5, 1.0]], [[0.35, 0.3, 0.4, 0.4]]])


@pytest.mark.all_backends
def test_nms_padded_matches_numpy_nms():
    rng = np.random.default_rng(1)
    boxes = np.stack([_random_boxes(rng, 60), _random_boxes(rng, 60)])
    scores = rng.random((2, 60)).astype(np.float32)
    ix, valid = mops.non_max_suppression_padded(boxes, scores, 50, 0.3)
    ix, valid = ops.convert_to_numpy(ix), ops.convert_to_numpy(valid)
    for b in range(2):
        expected = utils.non_max_suppression(boxes[b], scores[b], 0.3)
        assert ix[b][valid[b]].tolist() == expected.tolist()
        assert not valid[b][len(expected):].any() and (ix[b][~valid[b]] == 0).all()


@pytest.mark.all_backends
def test_crop_and_resize_samples_pixel_centres_at_box_corners():
    image = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1)
    # The box from pixel (1, 1) to pixel (3, 3) in normalized coordinates (size - 1 = 4)
    crop = ops.convert_to_numpy(mops.crop_and_resize(image, np.array([[0.25, 0.25, 0.75, 0.75]], np.float32),
                                                     np.array([0]), (3, 3)))
    np.testing.assert_allclose(crop[0, :, :, 0], image[0, 1:4, 1:4, 0])


def test_crop_and_resize_equals_tensorflows_kernel_inside_and_outside_the_image():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    images = rng.normal(size=(3, 13, 17, 5)).astype(np.float32)
    corner = rng.uniform(-0.4, 1.2, (300, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(-0.3, 0.9, (300, 2))], axis=1).astype(np.float32)
    boxes[:4] = [[0, 0, 1, 1], [1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5], [-1, -1, 2, 2]]  # whole, flipped, point, beyond
    box_indices = rng.integers(0, 3, 300).astype(np.int32)
    for size in [(7, 7), (14, 14), (1, 1), (1, 6), (5, 1)]:
        expected = tf.image.crop_and_resize(images, boxes, box_indices, size).numpy()
        with mops.tracing(True):  # the keras.ops gather
            got = ops.convert_to_numpy(mops.crop_and_resize(images, boxes, box_indices, size))
        assert got.shape == expected.shape == (300,) + size + (5,)
        np.testing.assert_array_equal(got, expected)
    assert (expected[3] == 0).any() and (expected[3] != 0).any()  # the box beyond the image is 0 outside


def test_crop_and_resize_gradients_equal_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    images = tf.constant(rng.normal(size=(2, 9, 11, 3)).astype(np.float32))
    boxes = np.concatenate([rng.uniform(-0.2, 0.6, (40, 2)), rng.uniform(0.5, 1.2, (40, 2))], 1).astype(np.float32)
    box_indices = rng.integers(0, 2, 40).astype(np.int32)
    weights = tf.constant(rng.normal(size=(40, 4, 4, 3)).astype(np.float32))
    grads = []
    for crop in (tf.image.crop_and_resize, mops.crop_and_resize):
        with mops.tracing(True), tf.GradientTape() as tape:  # (the keras.ops gather for mops)
            tape.watch(images)
            loss = tf.reduce_sum(crop(images, boxes, box_indices, (4, 4)) * weights)
        grads.append(tape.gradient(loss, images).numpy())
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-5)


def test_crop_and_resize_compiles_with_xla_and_keeps_the_images_dtype():
    import tensorflow as tf

    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 16, 16, 4)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.7, 0.9], [-0.1, 0.0, 0.5, 1.1]], np.float32)
    box_indices = np.array([1, 0], np.int32)
    with mops.tracing(True):  # as a model's step traced for XLA
        compiled = tf.function(lambda i, b, x: mops.crop_and_resize(i, b, x, (7, 7)), jit_compile=True)
        expected = tf.image.crop_and_resize(images, boxes, box_indices, (7, 7)).numpy()
        np.testing.assert_allclose(compiled(images, boxes, box_indices).numpy(), expected, atol=1e-5)
    for xla in (True, False):
        with mops.tracing(xla):
            low = mops.crop_and_resize(ops.cast(images, "bfloat16"), boxes, box_indices, (7, 7))
        assert keras.backend.standardize_dtype(low.dtype) == "bfloat16"
        np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(low, "float32")), expected, atol=0.1)


def test_crop_and_resize_kernel_is_chosen_when_traced():
    """TensorFlow's CropAndResize where the step is traced without XLA (and outside a model's steps), the
    keras.ops gather where it is traced for XLA: the choice belongs to the trace, not to the built model."""
    import tensorflow as tf

    def op_types(xla):
        def crop(images, boxes):
            return mops.crop_and_resize(images, boxes, tf.zeros((1,), tf.int32), (3, 3))

        with mops.tracing(xla):
            graph = tf.function(crop).get_concrete_function(
                tf.TensorSpec((1, 8, 8, 2)), tf.TensorSpec((1, 4))).graph
        return {op.type for op in graph.get_operations()}

    assert "CropAndResize" in op_types(False)
    assert "CropAndResize" not in op_types(True) and "GatherV2" in op_types(True)
    assert not mops.static_shapes()  # outside a trace: TensorFlow's kernels


@pytest.mark.all_backends
def test_first_argmax_equals_argmax_ties_included():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, (50, 7)).astype(np.float32)  # many ties
    values[0] = 0.0
    np.testing.assert_array_equal(ops.convert_to_numpy(mops.first_argmax(values)), np.argmax(values, axis=-1))


def _compiled(fn):
    """``fn`` as the backend compiles a model's step: XLA on TensorFlow and JAX, eager on PyTorch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=True)

        def traced_for_xla(*args):  # as a model's step traced for XLA (mrcnn.ops.tracing)
            with mops.tracing(True):
                return compiled(*args)

        return traced_for_xla
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


@pytest.mark.all_backends
def test_compiled_crop_keeps_the_samples_on_the_last_pixel_centre():
    """A box from the first to the last pixel centre samples the edge rows and columns, compiled too (XLA's
    reciprocal of the divisor put the last sample a rounding error outside, where samples are 0); the mini-mask
    frame of a ground-truth ROI, ``(roi - gt) / gt_size``, is such a box."""
    image = np.arange(1.0, 65.0, dtype=np.float32).reshape(1, 8, 8, 1)
    gt = np.array([0.1, 0.1, 0.5, 0.5], np.float32)
    frame = (gt - np.array([0.1, 0.1, 0.1, 0.1], np.float32)) / np.float32(0.4)  # [0, 0, 1, 1]

    def crop(boxes_gt, roi):
        height = boxes_gt[2] - boxes_gt[0]
        boxes = ops.stack([(roi[0] - boxes_gt[0]) / height, (roi[1] - boxes_gt[1]) / height,
                           (roi[2] - boxes_gt[0]) / height, (roi[3] - boxes_gt[1]) / height])[None]
        return mops.crop_and_resize(ops.convert_to_tensor(image), boxes, ops.zeros((1,), "int32"), (4, 4))

    got = ops.convert_to_numpy(_compiled(crop)(ops.convert_to_tensor(gt), ops.convert_to_tensor(gt)))[0, :, :, 0]
    assert frame.tolist() == [0.0, 0.0, 1.0, 1.0]
    positions = np.linspace(0.0, 7.0, 4)  # pixel value = 1 + 8 * row + column, linear in both
    np.testing.assert_allclose(got[-1], 57.0 + positions, rtol=1e-5)       # the last row, not zeros
    np.testing.assert_allclose(got[:, -1], 8.0 + 8.0 * positions, rtol=1e-5)  # the last column
