"""Graph-side box math in ``keras.ops``, and the only backend-specific primitives of the model.

Everything here works on tensors with static shapes and a leading batch axis where noted. Boxes are
normalized ``(y1, x1, y2, x2)`` unless a docstring says pixels.

Backend-specific: :func:`non_max_suppression_padded` runs TensorFlow's greedy kernel on the TensorFlow
backend and :func:`mrcnn.nms.greedy_nms_padded` (``keras.ops``, the same selections) on the others.
:func:`replica_sum` and :func:`replicas_in_sync` see tf.distribute replicas and are the identity elsewhere.
:func:`crop_and_resize` is ``keras.ops`` (TensorFlow's kernel has no XLA implementation), with TensorFlow's
kernel as the faster choice where XLA is off.

Choices made when the graph is traced, never when it is built: a saved model holds the Config's layers and
weights only, and the program each machine runs follows from how that machine traces it.
:func:`static_shapes` says whether the step being traced must keep every shape fixed (XLA, JAX, PyTorch) or
may size tensors when it runs (TensorFlow without XLA); :func:`tracing` is how a model's train, test and
predict steps tell it (mrcnn.graph.MaskRCNNModel).
"""

from __future__ import annotations

import contextlib
import threading

import keras
from keras import ops

from mrcnn.boxes import MAX_LOG_SCALE  # one bound for the NumPy and the graph box math
from mrcnn.data.image_meta import meta_slices

# ----------------------------------------------------------------------------- trace-time choices
_TRACE = threading.local()


@contextlib.contextmanager
def tracing(jit_compile):
    """Trace what runs inside for XLA (``jit_compile`` True) or for TensorFlow's own kernels (False)."""
    previous = getattr(_TRACE, "xla", None)
    _TRACE.xla = bool(jit_compile)
    try:
        yield
    finally:
        _TRACE.xla = previous


def static_shapes():
    """Whether the graph being traced must keep every shape fixed: on JAX and PyTorch always (jit, and the
    shapes the backends' tests compare), on TensorFlow inside ``tracing(True)``. TensorFlow traced otherwise
    (no XLA: a model's own steps with ``jit_compile=False``, or a call outside them) may size tensors by
    counts known when the graph runs and use kernels that XLA lacks."""
    if keras.backend.backend() != "tensorflow":
        return True
    return bool(getattr(_TRACE, "xla", False))


# ----------------------------------------------------------------------------- box math (keras.ops)


def apply_box_deltas(boxes, deltas):
    """Apply ``[..., (dy, dx, log(dh), log(dw))]`` deltas to ``[..., (y1, x1, y2, x2)]`` boxes.

    The log-scale deltas are capped at :data:`MAX_LOG_SCALE` (a 62.5x growth).
    """
    boxes, deltas = ops.convert_to_tensor(boxes), ops.convert_to_tensor(deltas)  # (NumPy arrays on every backend)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * ops.exp(ops.minimum(deltas[..., 2], MAX_LOG_SCALE))
    width = width * ops.exp(ops.minimum(deltas[..., 3], MAX_LOG_SCALE))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return ops.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def box_refinement(boxes, gt_boxes):
    """Deltas ``[..., (dy, dx, log(dh), log(dw))]`` turning ``boxes`` into ``gt_boxes`` (same shapes)."""
    boxes, gt_boxes = ops.convert_to_tensor(boxes), ops.convert_to_tensor(gt_boxes)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height
    center_x = boxes[..., 1] + 0.5 * width
    gt_height = gt_boxes[..., 2] - gt_boxes[..., 0]
    gt_width = gt_boxes[..., 3] - gt_boxes[..., 1]
    gt_center_y = gt_boxes[..., 0] + 0.5 * gt_height
    gt_center_x = gt_boxes[..., 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = ops.log(gt_height / height)
    dw = ops.log(gt_width / width)
    return ops.stack([dy, dx, dh, dw], axis=-1)


def clip_boxes(boxes, window):
    """Clip ``[..., 4]`` boxes to ``window`` ``(y1, x1, y2, x2)``, broadcastable to ``[..., 4]``."""
    boxes, window = ops.convert_to_tensor(boxes), ops.convert_to_tensor(window)
    wy1, wx1, wy2, wx2 = window[..., 0], window[..., 1], window[..., 2], window[..., 3]
    y1 = ops.maximum(ops.minimum(boxes[..., 0], wy2), wy1)
    x1 = ops.maximum(ops.minimum(boxes[..., 1], wx2), wx1)
    y2 = ops.maximum(ops.minimum(boxes[..., 2], wy2), wy1)
    x2 = ops.maximum(ops.minimum(boxes[..., 3], wx2), wx1)
    return ops.stack([y1, x1, y2, x2], axis=-1)


def norm_boxes(boxes, shape):
    """Pixel boxes to normalized; ``shape`` is ``(height, width)`` (tensor or tuple)."""
    h = ops.cast(shape[0], "float32")
    w = ops.cast(shape[1], "float32")
    scale = ops.stack([h - 1.0, w - 1.0, h - 1.0, w - 1.0])
    shift = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
    return (ops.cast(boxes, "float32") - shift) / scale


def denorm_boxes(boxes, shape):
    """Normalized boxes to int32 pixel boxes; inverse of :func:`norm_boxes`."""
    boxes = ops.convert_to_tensor(boxes)
    h = ops.cast(shape[0], "float32")
    w = ops.cast(shape[1], "float32")
    scale = ops.stack([h - 1.0, w - 1.0, h - 1.0, w - 1.0])
    shift = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
    return ops.cast(ops.round(boxes * scale + shift), "int32")


def overlaps(boxes1, boxes2):
    """IoU ``[..., N1, N2]`` of ``[..., N1, 4]`` and ``[..., N2, 4]`` boxes (shared leading axes): the one
    ``keras.ops`` IoU, as TensorFlow's NMS kernel computes it (corners taken in either order; 0 where either box
    has no area), so that the ``keras.ops`` NMS (mrcnn.nms) selects what that kernel selects."""
    boxes1, boxes2 = ops.convert_to_tensor(boxes1), ops.convert_to_tensor(boxes2)
    b1 = ops.expand_dims(boxes1, -2)
    b2 = ops.expand_dims(boxes2, -3)
    y_min1, y_max1 = ops.minimum(b1[..., 0], b1[..., 2]), ops.maximum(b1[..., 0], b1[..., 2])
    x_min1, x_max1 = ops.minimum(b1[..., 1], b1[..., 3]), ops.maximum(b1[..., 1], b1[..., 3])
    y_min2, y_max2 = ops.minimum(b2[..., 0], b2[..., 2]), ops.maximum(b2[..., 0], b2[..., 2])
    x_min2, x_max2 = ops.minimum(b2[..., 1], b2[..., 3]), ops.maximum(b2[..., 1], b2[..., 3])
    area1 = (y_max1 - y_min1) * (x_max1 - x_min1)
    area2 = (y_max2 - y_min2) * (x_max2 - x_min2)
    height = ops.maximum(ops.minimum(y_max1, y_max2) - ops.maximum(y_min1, y_min2), 0.0)
    width = ops.maximum(ops.minimum(x_max1, x_max2) - ops.maximum(x_min1, x_min2), 0.0)
    intersection = height * width
    union = area1 + area2 - intersection
    has_area = ops.logical_and(area1 > 0, area2 > 0)
    return ops.where(has_area, intersection / ops.where(has_area, union, 1.0), 0.0)


def first_argmax(values):
    """Index of the largest value along the last axis (the first one on ties), as ``ops.argmax``, written
    with ``max``, ``equal`` and ``min``: Keras's TensorFlow ``argmax`` adds bit operations (for -0.0) that
    ONNX converters cannot express."""
    count = values.shape[-1]
    positions = ops.arange(count, dtype="int32")
    hits = ops.equal(values, ops.max(values, axis=-1, keepdims=True))
    return ops.min(ops.where(hits, positions, count), axis=-1)


def gather_rows(values, indices):
    """``values[b, indices[b, i]]`` for ``values`` ``[B, N, ...]`` and int ``indices`` ``[B, K]``."""
    indices = ops.cast(indices, "int32")
    extra = len(values.shape) - 2
    idx = ops.reshape(indices, tuple(ops.shape(indices)) + (1,) * extra)
    return ops.take_along_axis(values, idx, axis=1)


def parse_image_meta(meta):
    """Split ``[batch, IMAGE_META_SIZE]`` meta into named tensors (layout in mrcnn.data.image_meta)."""
    return {name: meta[:, s] for name, s in meta_slices().items()}


# ----------------------------------------------------------------------------- ROI crops (keras.ops)
def crop_and_resize(images, boxes, box_indices, crop_size):
    """Bilinear crops, equal to ``tf.image.crop_and_resize(method="bilinear")``.

    Where :func:`static_shapes` holds (XLA, JAX, PyTorch): the ``keras.ops`` gather below, which XLA
    compiles and any backend runs. TensorFlow without XLA: TensorFlow's own kernel, which has no XLA version
    but is about 4x faster on a CPU (forward and backward, measured at 400 boxes of 14x14 from 256x256x64
    maps).

    images ``[B, H, W, C]`` (H and W may be dynamic), normalized ``boxes`` ``[N, 4]``, ``box_indices``
    int ``[N]`` (which image each box samples), ``crop_size`` ``(h, w)`` -> ``[N, h, w, C]`` in the
    images' dtype. Box corners map to pixel centres (TensorFlow's convention, as Matterport's ROIAlign):
    sample ``i`` of ``h`` lies at ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (h - 1)`` (the box centre
    when ``h == 1``); a sample outside ``[0, H - 1]`` (a box reaching out of the image) is 0.

    A gather over the flattened images, so XLA compiles it (TensorFlow's CropAndResize kernel has no
    XLA implementation) and any backend runs it. Sample coordinates and weights are computed in
    float32 whatever the images' dtype (mixed precision), as TensorFlow does; gradients flow to the
    images (and to the boxes, unless the caller stops them).
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    if not static_shapes():
        import tensorflow as tf

        # the kernel takes no bfloat16 and answers float32 whatever its input
        source = images if images.dtype != tf.bfloat16 else ops.cast(images, "float32")
        crops = tf.image.crop_and_resize(source, ops.cast(boxes, "float32"), ops.cast(box_indices, "int32"),
                                         (crop_h, crop_w), method="bilinear")
        return ops.cast(crops, images.dtype)
    shape = ops.shape(images)
    height, width, channels = shape[1], shape[2], images.shape[-1]
    boxes = ops.cast(boxes, "float32")
    h_max = ops.cast(height - 1, "float32")
    w_max = ops.cast(width - 1, "float32")
    in_y = _sample_positions(boxes[:, 0], boxes[:, 2], h_max, crop_h)  # [N, h]
    in_x = _sample_positions(boxes[:, 1], boxes[:, 3], w_max, crop_w)  # [N, w]
    # A sample beyond [0, H - 1] is 0, with a margin of a few float32 roundings of the position: XLA turns the
    # division by (count - 1) into a multiplication by its reciprocal, which put the last sample of a box that
    # ends on the last pixel centre 5e-7 beyond it (the last mask-target row of a ground-truth ROI with mini
    # masks, seen on JAX). Inside the margin the edge pixel is sampled, as at the edge itself.
    margin_y, margin_x = h_max * 2.0 ** -20, w_max * 2.0 ** -20
    valid_y = ops.logical_and(in_y >= -margin_y, in_y <= h_max + margin_y)
    valid_x = ops.logical_and(in_x >= -margin_x, in_x <= w_max + margin_x)
    top, left = ops.floor(in_y), ops.floor(in_x)
    y_lerp, x_lerp = in_y - top, in_x - left
    max_y, max_x = ops.cast(height - 1, "int32"), ops.cast(width - 1, "int32")
    top_i = ops.clip(ops.cast(top, "int32"), 0, max_y)
    bottom_i = ops.clip(ops.cast(ops.ceil(in_y), "int32"), 0, max_y)
    left_i = ops.clip(ops.cast(left, "int32"), 0, max_x)
    right_i = ops.clip(ops.cast(ops.ceil(in_x), "int32"), 0, max_x)

    flat = ops.reshape(images, (-1, channels))
    width_i = ops.cast(width, "int32")
    base = ops.cast(box_indices, "int32") * ops.cast(height, "int32") * width_i  # [N]
    rows_top = base[:, None] + top_i * width_i  # [N, h]
    rows_bottom = base[:, None] + bottom_i * width_i

    def gather(rows, cols):  # [N, h] rows and [N, w] columns -> [N, h, w, C]
        return ops.take(flat, rows[:, :, None] + cols[:, None, :], axis=0)

    dtype = images.dtype
    x_lerp = ops.cast(x_lerp, dtype)[:, None, :, None]
    y_lerp = ops.cast(y_lerp, dtype)[:, :, None, None]
    top_left, top_right = gather(rows_top, left_i), gather(rows_top, right_i)
    bottom_left, bottom_right = gather(rows_bottom, left_i), gather(rows_bottom, right_i)
    top_row = top_left + (top_right - top_left) * x_lerp
    bottom_row = bottom_left + (bottom_right - bottom_left) * x_lerp
    crops = top_row + (bottom_row - top_row) * y_lerp
    valid = ops.logical_and(valid_y[:, :, None], valid_x[:, None, :])[..., None]
    return ops.where(valid, crops, ops.zeros((), dtype=dtype))


def _sample_positions(start, end, size_minus_one, count):
    """Pixel positions ``[N, count]`` of ``count`` samples from ``start`` to ``end`` (normalized), as
    TensorFlow's CropAndResize computes them in float32."""
    if count == 1:
        return (0.5 * (start + end) * size_minus_one)[:, None]
    scale = (end - start) * size_minus_one / float(count - 1)
    steps = ops.arange(count, dtype="float32")[None, :]
    return (start * size_minus_one)[:, None] + steps * scale[:, None]


# ----------------------------------------------------------------------------- NMS: TensorFlow's kernel there
def _tf():
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"mrcnn.ops needs the TensorFlow backend for NMS; the Keras backend "
            f"is {keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")
    import tensorflow as tf

    return tf


def non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold, score_threshold=None):
    """Batched greedy NMS with padded output.

    boxes: ``[B, N, 4]``; scores: ``[B, N]``; boxes whose score is below ``score_threshold`` are
    never selected. Returns ``indices`` int32 ``[B, max_output_size]`` (highest score first, padding
    indices are 0) and ``valid`` bool ``[B, max_output_size]`` marking the real selections.

    TensorFlow backend: TensorFlow's ``NonMaxSuppressionV4`` per image (faster there than the ``keras.ops``
    loop, see benchmarks/bench_nms.py); other backends: :func:`mrcnn.nms.greedy_nms_padded`.
    """
    if keras.backend.backend() != "tensorflow":
        from mrcnn.nms import greedy_nms_padded

        return greedy_nms_padded(boxes, scores, max_output_size, iou_threshold, score_threshold)
    tf = _tf()
    threshold = float("-inf") if score_threshold is None else float(score_threshold)

    def one_image(args):
        # TensorFlow's greedy kernel, padded: XLA compiles it, and ONNX converters map it to NonMaxSuppression
        # (the tiled batched version, tf.image.non_max_suppression_padded, does not convert for dynamic sizes).
        image_boxes, image_scores = args
        selected, count = tf.raw_ops.NonMaxSuppressionV4(
            boxes=image_boxes, scores=image_scores, max_output_size=max_output_size, iou_threshold=iou_threshold,
            score_threshold=threshold, pad_to_max_output_size=True)
        return selected, count

    indices, count = tf.map_fn(one_image, (ops.cast(boxes, "float32"), ops.cast(scores, "float32")),
                               fn_output_signature=(tf.int32, tf.int32))
    indices = tf.ensure_shape(indices, (None, max_output_size))
    valid = tf.range(max_output_size)[None, :] < count[:, None]
    return tf.where(valid, indices, 0), valid


def replicas_in_sync():
    """How many tf.distribute replicas run this step together (1 outside a strategy or off TensorFlow)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_sum(value):
    """``value`` summed over the tf.distribute replicas of this step (itself with one replica).

    The losses divide by counts taken over the global batch (positive anchors, sampled ROIs), as one
    device computes them, whatever the number of GPUs.
    """
    if replicas_in_sync() == 1:
        return value
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, ops.stop_gradient(value))
