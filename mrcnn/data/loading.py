"""Loading one training image with its ground truth (Matterport's ``load_image_gt``)."""

from __future__ import annotations

import logging
import random

import numpy as np

from mrcnn.boxes import extract_bboxes
from mrcnn.data.augmentation import augment_image_and_masks
from mrcnn.data.image_meta import compose_image_meta
from mrcnn.imaging import resize_image, resize_mask
from mrcnn.masks import minimize_mask

logger = logging.getLogger(__name__)


def _describe(dataset, image_id):
    info = dataset.image_info[image_id]
    return f"image {image_id} ({info.get('path') or dataset.image_reference(image_id) or info.get('id')})"


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None, use_mini_mask=False, rng=None):
    """Load and resize an image, its masks, boxes and class ids, optionally augmented (Matterport's signature).

    dataset: a prepared :class:`mrcnn.utils.Dataset`; image_id: its internal image id.
    augment: Matterport's deprecated switch: a horizontal flip half of the time (use ``augmentation``).
    augmentation: an imgaug augmenter or albumentations transform, applied after resizing
        (Matterport's order), identically to image and masks; see :mod:`mrcnn.data.augmentation`.
    use_mini_mask: store masks cropped to their boxes at ``MINI_MASK_SHAPE`` (False by default, as
        Matterport; the training generator passes ``config.USE_MINI_MASK``).
    rng: ``random.Random``-like source for crop mode and ``augment``; default the ``random`` module.

    Returns:
        image: ``[H, W, 3]`` uint8, resized as ``config.IMAGE_RESIZE_MODE`` says.
        image_meta: ``[IMAGE_META_SIZE]`` (see :mod:`mrcnn.data.image_meta`).
        class_ids: ``[N]`` int32 (negative for crowd regions).
        bbox: ``[N, (y1, x1, y2, x2)]`` int32 pixel boxes computed from the masks.
        mask: ``[H, W, N]`` bool, or ``[MINI_MASK_SHAPE..., N]`` with mini masks.
    Instances whose mask is empty after resizing and augmentation are dropped.
    """
    use_mini_mask = config.USE_MINI_MASK if use_mini_mask is None else use_mini_mask
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != len(class_ids):
        raise ValueError(f"{_describe(dataset, image_id)}: load_mask returned masks of shape {mask.shape} "
                         f"and {len(class_ids)} class ids; expected [H, W, N] and N ids")
    if len(class_ids) and class_ids.max() >= config.NUM_CLASSES:
        raise ValueError(f"{_describe(dataset, image_id)}: load_mask returned class id {int(class_ids.max())}, but "
                         f"NUM_CLASSES={config.NUM_CLASSES} (ids run from 1 to NUM_CLASSES - 1; negative ids mark "
                         f"crowds)")
    if mask.shape[-1] and mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"{_describe(dataset, image_id)}: masks are {mask.shape[:2]} but the image is "
                         f"{image.shape[:2]}")
    if mask.shape[-1] == 0:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    original_shape = image.shape
    image, window, scale, padding, crop = resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE,
        rng=rng,
    )
    mask = resize_mask(mask, scale, padding, crop)

    if augment:
        logger.warning("load_image_gt: 'augment' is deprecated; use 'augmentation' instead")
        if (rng or random).randint(0, 1):
            image, mask = np.fliplr(image), np.fliplr(mask)
    if augmentation is not None:
        image, mask = augment_image_and_masks(image, mask, augmentation)

    # Instances can vanish when cropped or augmented out of view.
    keep = mask.any(axis=(0, 1))
    mask = mask[:, :, keep]
    class_ids = class_ids[keep]
    bbox = extract_bboxes(mask)

    # Classes of the image's source are active; the others do not count in the class loss.
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    active_class_ids[source_class_ids] = 1

    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask
