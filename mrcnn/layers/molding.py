"""Pre-processing inside the graph: raw images to the model's molded input and image meta (the serving model).

:class:`MoldImages` does in ``keras.ops`` what ``MaskRCNN.mold_inputs`` does in NumPy (Matterport's
``resize_image`` + ``mold_image`` + ``compose_image_meta``): the resize scale of the Config's mode, bilinear
resizing with Matterport's semantics (``skimage.transform.resize(order=1, mode="constant", clip=True,
preserve_range=True)`` then truncation to uint8: pixel centres at ``(i + 0.5) * in / out - 0.5``, 0 beyond the
border), zero padding (square: to ``IMAGE_MAX_DIM``; pad64: each side to a multiple of 64; none: no change),
mean subtraction and the meta vector. Positions and pixels are float64, as scikit-image computes them (float32
pixels moved more values across an integer before the truncation: a few more grey levels off, and detection
scores 3e-4 away from the NumPy path's on the test model).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

INFERENCE_MODES = ("square", "pad64", "none")


def resize_scale(height, width, min_dim, max_dim, min_scale, mode):
    """``mrcnn.imaging.resize_scale`` on float64 tensors (``height``, ``width`` scalars)."""
    if mode == "none":
        return ops.ones((), "float64")
    scale = ops.ones((), "float64")
    if min_dim:
        scale = ops.maximum(scale, float(min_dim) / ops.minimum(height, width))
    if min_scale:
        scale = ops.maximum(scale, float(min_scale))
    if mode == "square" and max_dim:
        longest = ops.maximum(height, width)
        scale = ops.where(ops.round(longest * scale) > float(max_dim), float(max_dim) / longest, scale)
    return scale


def _axis_samples(size_in, size_out, offset, length):
    """For the ``length`` output positions along one axis, the two source indices into the input padded with
    one zero on each side, and their weights: the image (``size_out`` long, resized from ``size_in``) starts at
    ``offset``; positions outside it get weight 0."""
    j = ops.arange(length, dtype="float64") - offset
    inside = ops.logical_and(j >= 0, j < size_out)
    position = (j + 0.5) * (size_in / size_out) - 0.5
    floor = ops.floor(position)
    w1 = position - floor
    last = ops.cast(size_in, "int32") + 1
    i0 = ops.clip(ops.cast(floor, "int32") + 1, 0, last)
    i1 = ops.clip(ops.cast(floor, "int32") + 2, 0, last)
    zero = ops.zeros((), "float64")
    return i0, i1, ops.where(inside, 1.0 - w1, zero), ops.where(inside, w1, zero)


def resize_and_pad(images, size, offset, out_shape, dtype="float64"):
    """Bilinear resize of ``images`` ``[B, H, W, C]`` to ``size`` ``(h, w)`` placed at ``offset`` ``(top, left)``
    of a zero canvas ``out_shape`` ``(Lh, Lw)``, with Matterport's zero border blend. Sample positions are
    float64; pixels are blended in ``dtype``."""
    shape = ops.shape(images)
    height, width = ops.cast(shape[1], "float64"), ops.cast(shape[2], "float64")
    padded = ops.pad(ops.cast(images, dtype), [[0, 0], [1, 1], [1, 1], [0, 0]])
    r0, r1, rw0, rw1 = (ops.cast(v, dtype) if i > 1 else v
                        for i, v in enumerate(_axis_samples(height, size[0], offset[0], out_shape[0])))
    rows = (ops.take(padded, r0, axis=1) * rw0[None, :, None, None]
            + ops.take(padded, r1, axis=1) * rw1[None, :, None, None])
    c0, c1, cw0, cw1 = (ops.cast(v, dtype) if i > 1 else v
                        for i, v in enumerate(_axis_samples(width, size[1], offset[1], out_shape[1])))
    return (ops.take(rows, c0, axis=2) * cw0[None, None, :, None]
            + ops.take(rows, c1, axis=2) * cw1[None, None, :, None])


@keras.saving.register_keras_serializable(package="mrcnn")
class MoldImages(layers.Layer):
    """uint8 RGB images ``[B, H, W, 3]`` (one size per call) -> ``molded`` ``[B, Lh, Lw, 3]`` float32 (mean
    subtracted) and ``image_meta`` ``[B, 12 + num_classes]`` float32, as ``MaskRCNN.mold_inputs``.

    ``Lh, Lw`` is ``(max_dim, max_dim)`` in square mode (static), the resized size padded to multiples of 64 in
    pad64 mode, the input size in none mode. Crop mode is for training only.
    """

    def __init__(self, mode, min_dim, max_dim, min_scale, mean_pixel, num_classes, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if mode not in INFERENCE_MODES:
            raise ValueError(f"MoldImages: IMAGE_RESIZE_MODE={mode!r} has no inference form; expected one of "
                             f"{', '.join(INFERENCE_MODES)} (crop is for training)")
        self.mode = mode
        self.min_dim = int(min_dim or 0)
        self.max_dim = int(max_dim or 0)
        self.min_scale = float(min_scale or 0)
        self.mean_pixel = [float(v) for v in np.ravel(mean_pixel)]
        self.num_classes = int(num_classes)

    @classmethod
    def from_model_config(cls, config, **kwargs):
        return cls(config.IMAGE_RESIZE_MODE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE,
                   config.MEAN_PIXEL, config.NUM_CLASSES, **kwargs)

    def call(self, images):
        shape = ops.shape(images)
        batch = shape[0]
        height, width = ops.cast(shape[1], "float64"), ops.cast(shape[2], "float64")
        scale = resize_scale(height, width, self.min_dim, self.max_dim, self.min_scale, self.mode)
        new_h, new_w = ops.round(height * scale), ops.round(width * scale)
        if self.mode == "square":
            out_h = out_w = self.max_dim
            top = ops.floor((self.max_dim - new_h) / 2)
            left = ops.floor((self.max_dim - new_w) / 2)
        elif self.mode == "pad64":
            pad_h = ops.mod(-new_h, 64.0)
            pad_w = ops.mod(-new_w, 64.0)
            top, left = ops.floor(pad_h / 2), ops.floor(pad_w / 2)
            out_h, out_w = ops.cast(new_h + pad_h, "int32"), ops.cast(new_w + pad_w, "int32")
        else:
            top = left = ops.zeros((), "float64")
            out_h, out_w = shape[1], shape[2]
        mean = ops.convert_to_tensor(self.mean_pixel, "float32")

        def resized():
            image = resize_and_pad(images, (new_h, new_w), (top, left), (out_h, out_w))
            # scikit-image's clip=True (into the input's range) and Matterport's astype(uint8) (truncation)
            low = ops.cast(ops.min(images, axis=(1, 2, 3), keepdims=True), "float64")
            high = ops.cast(ops.max(images, axis=(1, 2, 3), keepdims=True), "float64")
            inside = self._inside(top, left, new_h, new_w, out_h, out_w)
            image = ops.where(inside, ops.clip(image, low, high), 0.0)
            return ops.cast(ops.floor(image), "float32") - mean

        def padded():
            # scale 1 (the image already has its molded size, or only needs padding): the resize is the
            # identity (every sample lands on a pixel centre), so the image is only padded
            # (zero blocks concatenated around the image: dynamic sizes every converter can express)
            top_i, left_i = ops.cast(top, "int32"), ops.cast(left, "int32")
            image = ops.concatenate([ops.zeros((batch, top_i, shape[2], 3), images.dtype), images,
                                     ops.zeros((batch, out_h - shape[1] - top_i, shape[2], 3), images.dtype)], axis=1)
            image = ops.concatenate([ops.zeros((batch, out_h, left_i, 3), images.dtype), image,
                                     ops.zeros((batch, out_h, out_w - shape[2] - left_i, 3), images.dtype)], axis=2)
            return ops.cast(image, "float32") - mean

        molded = padded() if self.mode == "none" else ops.cond(ops.equal(scale, 1.0), padded, resized)
        if self.mode == "square":
            molded = ops.reshape(molded, (-1, self.max_dim, self.max_dim, 3))  # static, as compute_output_spec

        molded_h, molded_w = ops.cast(out_h, "float64"), ops.cast(out_w, "float64")
        meta = ops.stack([
            ops.zeros((), "float64"), height, width, ops.convert_to_tensor(3.0, "float64"),
            molded_h, molded_w, ops.convert_to_tensor(3.0, "float64"),
            top, left, top + new_h, left + new_w, scale])
        meta = ops.concatenate([meta, ops.zeros((self.num_classes,), "float64")])
        meta = ops.broadcast_to(ops.cast(meta, "float32")[None], (batch, 12 + self.num_classes))
        return molded, meta

    @staticmethod
    def _inside(top, left, new_h, new_w, out_h, out_w):
        """``[1, Lh, Lw, 1]``: True on the resized image, False on the padding (which stays 0 before the mean)."""
        rows = ops.arange(out_h, dtype="float64")
        cols = ops.arange(out_w, dtype="float64")
        in_rows = ops.logical_and(rows >= top, rows < top + new_h)
        in_cols = ops.logical_and(cols >= left, cols < left + new_w)
        return ops.logical_and(in_rows[:, None], in_cols[None, :])[None, :, :, None]

    def compute_output_spec(self, images):
        size = (self.max_dim, self.max_dim) if self.mode == "square" else (None, None)
        batch = images.shape[0]
        return (keras.KerasTensor((batch,) + size + (3,), dtype="float32"),
                keras.KerasTensor((batch, 12 + self.num_classes), dtype="float32"))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "min_dim": self.min_dim, "max_dim": self.max_dim,
                "min_scale": self.min_scale, "mean_pixel": self.mean_pixel, "num_classes": self.num_classes}
