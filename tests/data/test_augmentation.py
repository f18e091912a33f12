"""Image and masks move together, with imgaug (on numpy 2) and with albumentations."""

import albumentations as A
import numpy as np
import pytest

import mrcnn  # noqa: F401  (restores the numpy aliases imgaug needs)
from mrcnn import utils
from mrcnn.data import augment_image_and_masks

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def imgaug_augmenters():
    from mrcnn.data.augmentation import imgaug_augmenters

    return imgaug_augmenters()  # imgaug 0.4 on NumPy 2


def _scene(height=96, width=128):
    """Black image with three bright, differently coloured objects, and their masks."""
    yy, xx = np.mgrid[:height, :width]
    masks = np.stack([
        ((yy - 30) ** 2 + (xx - 30) ** 2) < 15 ** 2,
        (yy >= 50) & (yy < 85) & (xx >= 70) & (xx < 110),
        (yy >= 10) & (yy < 30) & (xx >= 80) & (xx < 120),
    ], axis=-1)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for i, color in enumerate([(250, 60, 60), (60, 250, 60), (60, 60, 250)]):
        image[masks[:, :, i]] = color
    return image, masks


def _assert_image_follows_masks(image, masks):
    """Each instance's colour channel lights up exactly where its mask is (up to edge resampling)."""
    for i in range(masks.shape[-1]):
        lit = (image[:, :, i] > 150)[:, :, None]
        assert masks[:, :, i].sum() > 100, "the object should stay in view"
        assert utils.compute_overlaps_masks(lit, masks[:, :, i:i + 1])[0, 0] > 0.9


def test_imgaug_flip_moves_image_and_masks_identically():
    iaa = imgaug_augmenters()
    image, masks = _scene()
    out, out_masks = augment_image_and_masks(image, masks, iaa.Fliplr(1.0))
    assert np.array_equal(out, image[:, ::-1]) and np.array_equal(out_masks, masks[:, ::-1])
    assert out_masks.dtype == bool


def test_imgaug_geometric_and_pixel_pipeline_keeps_masks_aligned():
    iaa = imgaug_augmenters()
    image, masks = _scene()
    augmentation = iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(rotate=(-25, 25), translate_px={"x": (-8, 8)}, scale=(0.9, 1.1)),
        iaa.Multiply((0.8, 1.1)),
        iaa.GaussianBlur(sigma=(0.0, 0.8)),
    ])
    moved = 0
    for seed in range(5):
        augmentation.seed_(seed)  # reproducible draws
        out, out_masks = augment_image_and_masks(image, masks, augmentation)
        assert out.shape == image.shape and out_masks.shape == masks.shape
        _assert_image_follows_masks(out, out_masks)
        moved += not np.array_equal(out_masks, masks)
    assert moved == 5


def test_imgaug_pixel_level_augmenters_leave_masks_alone():
    iaa = imgaug_augmenters()
    image, masks = _scene()
    augmentation = iaa.Sequential([iaa.Multiply(1.4), iaa.GaussianBlur(sigma=2.0), iaa.Add(10)])
    out, out_masks = augment_image_and_masks(image, masks, augmentation)
    assert not np.array_equal(out, image)
    assert np.array_equal(out_masks, masks)


def test_albumentations_flip_moves_image_and_masks_identically():
    image, masks = _scene()
    out, out_masks = augment_image_and_masks(image, masks, A.HorizontalFlip(p=1.0))
    assert np.array_equal(out, image[:, ::-1]) and np.array_equal(out_masks, masks[:, ::-1])


def test_albumentations_geometric_and_pixel_pipeline_keeps_masks_aligned():
    image, masks = _scene()
    augmentation = A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-25, 25), translate_px={"x": (-8, 8)}, scale=(0.9, 1.1), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0),
        A.GaussianBlur(blur_limit=(3, 3), p=0.5),
    ])
    for seed in range(5):
        augmentation.set_random_seed(seed)  # reproducible draws
        out, out_masks = augment_image_and_masks(image, masks, augmentation)
        assert out.shape == image.shape and out_masks.shape == masks.shape
        _assert_image_follows_masks(out, out_masks)


def test_albumentations_pixel_level_transforms_leave_masks_alone():
    image, masks = _scene()
    augmentation = A.Compose([A.RandomBrightnessContrast(brightness_limit=(0.3, 0.3), p=1.0),
                              A.GaussianBlur(blur_limit=(5, 5), p=1.0)])
    out, out_masks = augment_image_and_masks(image, masks, augmentation)
    assert not np.array_equal(out, image)
    assert np.array_equal(out_masks, masks)


def test_images_without_instances_augment_fine():
    iaa = imgaug_augmenters()
    image, _ = _scene()
    empty = np.zeros(image.shape[:2] + (0,), dtype=bool)
    for augmentation in (iaa.Fliplr(1.0), A.HorizontalFlip(p=1.0)):
        out, out_masks = augment_image_and_masks(image, empty, augmentation)
        assert np.array_equal(out, image[:, ::-1]) and out_masks.shape == empty.shape


def test_size_changing_transform_is_rejected():
    image, masks = _scene()
    with pytest.raises(ValueError, match=r"image \(96, 128, 3\) -> \(64, 64, 3\)"):
        augment_image_and_masks(image, masks, A.RandomCrop(64, 64, p=1.0))


def test_unknown_augmentation_type_is_rejected():
    image, masks = _scene()
    with pytest.raises(TypeError, match="builtins.function"):
        augment_image_and_masks(image, masks, lambda image: image)
