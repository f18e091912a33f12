"""Image and mask resizing (Matterport's ``resize``, ``resize_image``, ``resize_mask``).

Resampling uses OpenCV: bilinear (``INTER_LINEAR``) for images and centre-aligned nearest neighbour
(``INTER_NEAREST_EXACT``) for masks; :func:`resize_image` gives images Matterport's border and truncation
(:func:`resize_like_matterport`). Both put output pixel centres at the same input positions,
``(i + 0.5) / scale - 0.5``, so a mask resized by :func:`resize_mask` stays aligned with the image
resized by :func:`resize_image` with the same scale. Matterport used scikit-image and
``scipy.ndimage.zoom``; those agree with this to within one pixel along object edges and are several
times slower on 1024x2048 frames.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

# OpenCV's Python binding resizes at most 128 channels per call (OpenCV 5; 512 in OpenCV 4).
_CV_MAX_CHANNELS = 128


def _cv_resize(array, height, width, interpolation):
    if array.ndim == 3 and array.shape[2] == 0:
        return np.zeros((height, width, 0), dtype=array.dtype)
    if array.ndim == 2 or array.shape[2] <= _CV_MAX_CHANNELS:
        out = cv2.resize(array, (width, height), interpolation=interpolation)
        if array.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
            out = out[:, :, None]
        return out
    chunks = [
        _cv_resize(array[:, :, i:i + _CV_MAX_CHANNELS], height, width, interpolation)
        for i in range(0, array.shape[2], _CV_MAX_CHANNELS)
    ]
    return np.concatenate(chunks, axis=2)


def _resize_target(image, output_shape):
    """``image`` as an array and the output ``height, width``, which must be positive."""
    height, width = int(output_shape[0]), int(output_shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"resize: output shape must be positive, got {(height, width)}")
    return np.asarray(image), height, width


def resize(image, output_shape, order=1, preserve_range=True):
    """Resize ``[H, W]`` or ``[H, W, C]`` to ``output_shape`` ``(height, width)``, keeping the dtype.

    order: 1 bilinear, 0 nearest (centre-aligned). ``preserve_range`` is accepted for Matterport
    compatibility; values are never rescaled. Bool input is resized as 0/1 and returned as bool.
    """
    if not preserve_range:
        raise ValueError("resize only supports preserve_range=True")
    image, height, width = _resize_target(image, output_shape)
    if image.shape[:2] == (height, width):
        return image.copy()
    dtype = image.dtype
    interpolation = cv2.INTER_NEAREST_EXACT if order == 0 else cv2.INTER_LINEAR
    if dtype == np.bool_:
        # 0/1 resized as uint8 (OpenCV rounds), so >= 1 means an interpolated value >= 0.5.
        return _cv_resize(image.astype(np.uint8), height, width, interpolation) >= 1
    if dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        return _cv_resize(image, height, width, interpolation)
    out = _cv_resize(image.astype(np.float32), height, width, interpolation)
    if np.issubdtype(dtype, np.integer):
        out = np.rint(out)
    return out.astype(dtype)


def _border_weights(size_in, size_out):
    """Per output row (or column): the weight bilinear sampling gives to pixels inside the input, when the
    outside is 0 (1 except where a sample position falls within one pixel beyond the first or last centre)."""
    position = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    return np.clip(1 - np.maximum(0, -position) - np.maximum(0, position - (size_in - 1)), 0, 1)


def resize_like_matterport(image, output_shape):
    """Resize an image as Matterport's ``resize_image`` does: ``skimage.transform.resize(image, shape, order=1,
    mode="constant", cval=0, clip=True, preserve_range=True, anti_aliasing=False)`` then ``astype(dtype)``.

    Bilinear with pixel centres at ``(i + 0.5) * in / out - 0.5`` and 0 beyond the border (so upscaling darkens
    the outermost row and column), clipped to the input's range, and truncated (not rounded) back to an
    integer dtype. Computed with OpenCV in float32 (its border replicates the edge) and the border weights
    applied after, which is exact for separable bilinear sampling: equal to scikit-image's within one grey level
    (float32 against float64 at the truncation).
    """
    image, height, width = _resize_target(image, output_shape)
    if image.shape[:2] == (height, width):
        return image.copy()
    dtype = image.dtype
    out = _cv_resize(image.astype(np.float32), height, width, cv2.INTER_LINEAR)
    weights = _border_weights(image.shape[0], height)[:, None] * _border_weights(image.shape[1], width)[None, :]
    out = out * (weights[:, :, None] if out.ndim == 3 else weights).astype(np.float32)
    if image.size:
        low, high = float(image.min()), float(image.max())
        if not low <= 0 <= high:  # scikit-image's clip=True: into the input's range (cval 0 outside it kept)
            out = np.clip(out, low, high)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return out.astype(dtype)  # truncation, as Matterport's astype
    return out.astype(dtype, copy=False)


def resize_scale(height, width, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """The scale :func:`resize_image` applies to an image of ``height x width`` (1 in "none" mode)."""
    if mode == "none":
        return 1
    scale = 1
    if min_dim:
        scale = max(1, min_dim / min(height, width))
    if min_scale and scale < min_scale:
        scale = min_scale
    if mode == "square" and max_dim and round(max(height, width) * scale) > max_dim:
        scale = max_dim / max(height, width)
    return scale


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize an image keeping its aspect ratio (Matterport's semantics).

    image: ``[H, W, C]``.
    min_dim: scale up so the shorter side is at least this (never scales down).
    max_dim: in "square" mode, scale down so the longer side is at most this, then pad to it.
    min_scale: scale up at least this much, even if min_dim does not require it.
    mode: "none" (unchanged), "square" (``[max_dim, max_dim]``, zero-padded), "pad64" (zero-pad each
        side to a multiple of 64; ``max_dim`` ignored), "crop" (random ``[min_dim, min_dim]`` crop).
    rng: ``random.Random`` (or anything with ``randint``) for crop mode; default the ``random`` module.

    Returns ``image`` (same dtype), ``window`` ``(y1, x1, y2, x2)`` of the image inside the padded
    result in pixels (y2, x2 exclusive), ``scale`` (float), ``padding``
    ``[(top, bottom), (left, right), (0, 0)]`` and ``crop`` ``(y, x, h, w)`` or None.
    """
    image = np.asarray(image)
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode not in ("none", "square", "pad64", "crop"):
        raise ValueError(f"resize_image: unknown mode {mode!r}; expected none, square, pad64 or crop")
    if mode == "none":
        return image, window, scale, padding, crop

    if mode == "square" and not max_dim:
        raise ValueError("resize_image: square mode needs max_dim")
    scale = resize_scale(h, w, min_dim, max_dim, min_scale, mode)
    if scale != 1:
        image = resize_like_matterport(image, (round(h * scale), round(w * scale)))

    h, w = image.shape[:2]
    if mode == "square":
        top_pad = (max_dim - h) // 2
        left_pad = (max_dim - w) // 2
        padding = [(top_pad, max_dim - h - top_pad), (left_pad, max_dim - w - left_pad), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "pad64":
        if min_dim and min_dim % 64 != 0:
            raise ValueError(f"resize_image: in pad64 mode min_dim must be a multiple of 64, got {min_dim}")
        pad_h = (-h) % 64
        pad_w = (-w) % 64
        padding = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (pad_h // 2, pad_w // 2, h + pad_h // 2, w + pad_w // 2)
    elif mode == "crop":
        if not min_dim:
            raise ValueError("resize_image: crop mode needs min_dim")
        rng = rng or random
        y = rng.randint(0, h - min_dim)
        x = rng.randint(0, w - min_dim)
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    """Resize masks like :func:`resize_image` resized their image.

    mask: ``[H, W, N]``; scale, padding, crop: as returned by :func:`resize_image`.
    Returns bool ``[H', W', N]`` aligned with the resized image.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    if scale != 1:
        mask = resize(mask.astype(bool), (round(h * scale), round(w * scale)), order=0)
    else:
        mask = mask.astype(bool, copy=False)
    if crop is not None:
        y, x, ch, cw = crop
        mask = mask[y:y + ch, x:x + cw]
    else:
        mask = np.pad(mask, padding, mode="constant", constant_values=False)
    return mask
