"""NumPy instance-mask utilities with Matterport's names and semantics.

Masks are ``[height, width, num_instances]`` bool arrays. Mini masks (``Config.USE_MINI_MASK``) store each
instance cropped to its box and resized to ``MINI_MASK_SHAPE``: ``[mini_h, mini_w, num_instances]``.
"""

from __future__ import annotations

import numpy as np

from mrcnn.imaging import resize


def compute_overlaps_masks(masks1, masks2):
    """IoU matrix between two sets of masks.

    masks1: ``[H, W, N1]``, masks2: ``[H, W, N2]`` (bool, or float thresholded at 0.5).
    Returns float32 ``[N1, N2]``; 0 where both masks are empty.
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(
            f"compute_overlaps_masks: mask sizes differ, {masks1.shape[:2]} vs {masks2.shape[:2]}"
        )
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), dtype=np.float32)
    flat1 = np.reshape(masks1 > 0.5, (-1, n1)).astype(np.float32)
    flat2 = np.reshape(masks2 > 0.5, (-1, n2)).astype(np.float32)
    area1 = flat1.sum(axis=0)
    area2 = flat2.sum(axis=0)
    intersections = flat1.T @ flat2
    union = area1[:, None] + area2[None, :] - intersections
    return np.divide(intersections, union, out=np.zeros_like(intersections), where=union > 0)


def _check_masks(bbox, mask, name):
    if mask.ndim != 3 or len(bbox) != mask.shape[-1]:
        raise ValueError(f"{name}: expected masks [H, W, N] with one box each, "
                         f"got {len(bbox)} boxes and masks of shape {mask.shape}")


def minimize_mask(bbox, mask, mini_shape):
    """Crop each instance to its box and resize it to ``mini_shape`` to save memory.

    bbox: ``[N, (y1, x1, y2, x2)]`` pixel boxes (y2, x2 exclusive); mask: ``[H, W, N]``;
    mini_shape: ``(height, width)``. Returns bool ``[mini_h, mini_w, N]``.
    Raises ValueError for a box of zero area.
    """
    mask = np.asarray(mask)
    bbox = np.asarray(bbox)
    _check_masks(bbox, mask, "minimize_mask")
    mini_mask = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(bbox[:, :4].astype(int)):
        crop = mask[y1:y2, x1:x2, i]
        if crop.size == 0:
            raise ValueError(f"minimize_mask: instance {i} has a box of zero area: {(y1, x1, y2, x2)}")
        mini_mask[:, :, i] = resize(crop.astype(np.float32), mini_shape) >= 0.5
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of :func:`minimize_mask`: paste mini masks back into full-size masks.

    bbox: ``[N, (y1, x1, y2, x2)]`` pixel boxes; mini_mask: ``[mini_h, mini_w, N]``;
    image_shape: ``(height, width, ...)``. Returns bool ``[height, width, N]``.
    """
    mini_mask = np.asarray(mini_mask)
    bbox = np.asarray(bbox)
    _check_masks(bbox, mini_mask, "expand_mask")
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(bbox[:, :4].astype(int)):
        if y2 <= y1 or x2 <= x1:
            continue
        mask[y1:y2, x1:x2, i] = resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1)) >= 0.5
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Paste one predicted mask into an image-sized binary mask (Matterport's ``unmold_mask``).

    mask: float ``[mask_h, mask_w]`` probabilities; bbox: ``(y1, x1, y2, x2)`` pixel box the mask
    covers (may reach past the image, the overflow is cut off); image_shape: ``(height, width, ...)``.
    Returns bool ``[height, width]``: the mask resized bilinearly to the box with a zero border (scikit-image's
    ``mode="constant"``, as Matterport), thresholded at 0.5 (see mrcnn.postprocess.paste_masks).
    """
    from mrcnn.postprocess import paste_masks

    bbox = np.asarray(bbox[:4], dtype=np.int64)
    return paste_masks(np.asarray(mask, dtype=np.float32)[None], bbox[None], image_shape)[:, :, 0]
