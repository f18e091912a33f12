"""What ``MaskRCNN.detect`` accepts as images, checked and converted to uint8 RGB ``[H, W, 3]``.

* A list (or tuple, or any iterable) of images; a single ``[H, W]`` or ``[H, W, C]`` array is one image;
  a ``[N, H, W, C]`` array is N images. A 3-D array whose last axis is longer than 4 is refused (it could be
  several grayscale images: pass a list).
* Channels: 1 (gray, repeated), 3 (RGB), 4 (RGBA, alpha dropped).
* Values: uint8 as is; bool as 0/255; uint16 as a 16-bit image (divided by 257, so 65535 -> 255); other
  integers 0..255 as is, and as 16-bit when they hold values above 255 (PIL reads 16-bit PNGs as int32);
  floats in 0..1 are scaled by 255, floats in 0..255 are rounded. NaN or infinite pixels, negative values and
  values out of those ranges are refused.
* Paths are refused: load the image first (``mrcnn.dataset.read_image_rgb(path)``).

Every refusal is a ``ValueError`` (``TypeError`` for objects that are not arrays) naming the image's index.
"""

from __future__ import annotations

import os

import numpy as np

CHANNELS = (1, 3, 4)


def as_images(images, caller="detect"):
    """``images`` as a list of uint8 RGB ``[H, W, 3]`` arrays (see the module docstring)."""
    if isinstance(images, (str, bytes, os.PathLike)):
        raise TypeError(f"{caller}: got the path {os.fsdecode(images)!r}, not an image; load it first, e.g. "
                        f"mrcnn.dataset.read_image_rgb(path) or skimage.io.imread(path)")
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[2] <= max(CHANNELS)):
            return [as_rgb(images, 0, caller)]
        if images.ndim == 4:
            return [as_rgb(image, i, caller) for i, image in enumerate(images)]
        raise ValueError(
            f"{caller}: an array of shape {images.shape} is neither one image ([H, W] or [H, W, C] with C in "
            f"1, 3, 4) nor a batch [N, H, W, C]; pass a list of images")
    try:
        images = list(images)
    except TypeError:
        raise TypeError(f"{caller}: expected a list of images or an image array, got "
                        f"{type(images).__name__}") from None
    return [as_rgb(image, i, caller) for i, image in enumerate(images)]


def as_rgb(image, index=0, caller="detect"):
    """One image as uint8 RGB ``[H, W, 3]``; errors name it as ``images[index]``."""
    where = f"{caller}: images[{index}]"
    if isinstance(image, (str, bytes, os.PathLike)):
        raise TypeError(f"{where} is the path {os.fsdecode(image)!r}, not an image; load it first, e.g. "
                        f"mrcnn.dataset.read_image_rgb(path) or skimage.io.imread(path)")
    try:
        array = np.asarray(image)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where} is not an array ({type(image).__name__}: {error})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) \
            or np.iscomplexobj(array):
        raise TypeError(f"{where} has dtype {array.dtype}; expected uint8, another integer, float or bool pixels")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{where} has shape {array.shape}; expected [H, W] or [H, W, C]")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ValueError(f"{where} is empty (shape {array.shape})")
    if channels not in CHANNELS:
        raise ValueError(f"{where} has {channels} channels (shape {array.shape}); expected 1, 3 or 4")
    return _to_uint8(array, where)[:, :, _channel_index(channels)].copy(order="C")


def _channel_index(channels):
    return [0, 0, 0] if channels == 1 else [0, 1, 2]


def _to_uint8(array, where):
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            count = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ValueError(f"{where} has {count} NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"{where} has float values in [{low:g}, {high:g}]; expected 0..1 or 0..255 (a molded "
                             f"image, mean pixel subtracted, goes to detect_molded)")
        if high <= 1.0:
            array = array * 255.0
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    low, high = int(array.min()), int(array.max())  # integers
    if low < 0:
        raise ValueError(f"{where} has negative values (min {low}, dtype {array.dtype}); expected 0..255, or "
                         f"0..65535 for 16-bit images")
    if high <= 255 and array.dtype != np.uint16:
        return array.astype(np.uint8)
    if high <= 65535:
        return np.rint(array.astype(np.float32) / 257.0).astype(np.uint8)  # 16-bit: 65535 -> 255
    raise ValueError(f"{where} has values up to {high} (dtype {array.dtype}); expected 0..255, or 0..65535 for "
                     f"16-bit images")
