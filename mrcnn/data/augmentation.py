"""Augmenting an image and its instance masks together, with imgaug or albumentations.

Both libraries get Matterport's mask-safe semantics: geometric transforms move image and masks
identically; pixel-level transforms (colour, blur, noise...) change the image only.

* **imgaug** (``imgaug.augmenters.Sequential([...])``): the augmenter is frozen with
  ``to_deterministic()`` and applied to the image, then to the masks with a hook that lets only the
  geometric augmenters in :data:`IMGAUG_MASK_AUGMENTERS` act on them (Matterport's list).
* **albumentations** (``A.Compose([...])``): called as ``transform(image=..., masks=...)``; the library
  itself applies only spatial transforms to ``masks``, with nearest-neighbour interpolation.

imgaug 0.4.0 fails at import on numpy 2 (``np.sctypes`` and ``np.complex`` were removed).
:func:`imgaug_augmenters` puts those aliases back (mrcnn.numpy_compat) and imports imgaug: Matterport's
``from imgaug import augmenters as iaa`` is ``iaa = imgaug_augmenters()`` here. Nothing else in mrcnn touches
NumPy's namespace.
"""

from __future__ import annotations

import numpy as np

from mrcnn.numpy_compat import patch_numpy_for_imgaug

IMGAUG_MASK_AUGMENTERS = frozenset({
    "Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud", "CropAndPad", "Affine",
    "PiecewiseAffine",
})


def imgaug_augmenters():
    """``imgaug.augmenters``, imported after restoring the NumPy 1 aliases imgaug 0.4.0 needs on NumPy 2."""
    patch_numpy_for_imgaug()
    import imgaug.augmenters

    return imgaug.augmenters


def _is_imgaug(augmentation):
    return hasattr(augmentation, "to_deterministic") and hasattr(augmentation, "augment_image")


def _is_albumentations(augmentation):
    return type(augmentation).__module__.split(".")[0] == "albumentations"


def check_augmentation(augmentation):
    """Raise TypeError unless ``augmentation`` is None, an imgaug augmenter or an albumentations transform."""
    if augmentation is None or _is_imgaug(augmentation) or _is_albumentations(augmentation):
        return
    raise TypeError(
        f"augmentation must be an imgaug augmenter or an albumentations transform, got "
        f"{type(augmentation).__module__}.{type(augmentation).__name__}"
    )


def _augment_imgaug(image, mask, augmentation):
    patch_numpy_for_imgaug()
    import imgaug

    def hook(images, augmenter, parents, default):
        """Only geometric augmenters act on masks."""
        return augmenter.__class__.__name__ in IMGAUG_MASK_AUGMENTERS

    det = augmentation.to_deterministic()
    image = det.augment_image(image)
    mask = det.augment_image(mask.astype(np.uint8), hooks=imgaug.HooksImages(activator=hook))
    return image, mask


def _augment_albumentations(image, mask, augmentation):
    if mask.shape[-1] == 0:
        return augmentation(image=image)["image"], mask
    result = augmentation(image=image, masks=np.ascontiguousarray(np.moveaxis(mask.astype(np.uint8), -1, 0)))
    masks = np.asarray(result["masks"])
    return result["image"], np.moveaxis(masks, 0, -1)


def augment_image_and_masks(image, mask, augmentation):
    """Apply one random draw of ``augmentation`` to ``image`` ``[H, W, C]`` and ``mask`` ``[H, W, N]``.

    Returns the augmented image (same shape and dtype) and bool masks (same shape). Transforms that
    change the image size are rejected with a ValueError giving both shapes, since the molded image
    size is fixed by the Config.
    """
    check_augmentation(augmentation)
    image_shape, mask_shape, dtype = image.shape, mask.shape, image.dtype
    if _is_imgaug(augmentation):
        new_image, new_mask = _augment_imgaug(image, mask, augmentation)
    else:
        new_image, new_mask = _augment_albumentations(image, mask, augmentation)
    if new_image.shape != image_shape or new_mask.shape != mask_shape:
        raise ValueError(
            f"augmentation changed the image or mask shape: image {image_shape} -> {new_image.shape}, "
            f"masks {mask_shape} -> {new_mask.shape}; use size-preserving transforms (resizing is "
            f"done by the Config's IMAGE_RESIZE_MODE)"
        )
    return new_image.astype(dtype, copy=False), new_mask.astype(bool)
