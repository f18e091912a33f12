import random

import numpy as np
import pytest

from mrcnn import utils

H, W = 1024, 2048


def _frame_with_objects(height=H, width=W):
    """A Cityscapes-sized frame: a dark background with two bright objects and their masks."""
    yy, xx = np.mgrid[:height, :width]
    masks = np.stack([
        ((yy - 400) ** 2 + (xx - 700) ** 2) < 150 ** 2,
        (yy >= 600) & (yy < 900) & (xx >= 1500) & (xx < 1901),
    ], axis=-1)
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    image[masks.any(axis=-1)] = 230
    return image, masks


def _assert_mask_aligned(image, mask, tolerance_px=0.5):
    """The bright pixels of the resized image and the resized mask agree, centroids within tolerance."""
    bright = image[:, :, 0] > 125
    for i in range(mask.shape[-1]):
        region = mask[:, :, i]
        assert region.any()
        lit = (bright & _near(region))[:, :, None]
        assert utils.compute_overlaps_masks(lit, region[:, :, None])[0, 0] > 0.97
        np.testing.assert_allclose(np.argwhere(region).mean(axis=0),
                                   np.argwhere(bright & _near(region)).mean(axis=0), atol=tolerance_px)


def _near(region, margin=3):
    y1, x1, y2, x2 = utils.extract_bboxes(region[:, :, None])[0]
    near = np.zeros_like(region)
    near[max(0, y1 - margin):y2 + margin, max(0, x1 - margin):x2 + margin] = True
    return near


def test_square_mode_on_cityscapes_frame():
    image, masks = _frame_with_objects()
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=800, max_dim=1024, mode="square")
    assert out.shape == (1024, 1024, 3) and out.dtype == np.uint8
    assert scale == 0.5 and crop is None
    assert padding == [(256, 256), (0, 0), (0, 0)]
    assert window == (256, 0, 768, 1024)
    assert not out[:256].any() and not out[768:].any()  # zero padding outside the window
    assert (out[256:768] > 0).all()
    mask = utils.resize_mask(masks, scale, padding, crop)
    assert mask.shape == (1024, 1024, 2) and mask.dtype == bool
    _assert_mask_aligned(out, mask)
    # Boxes shrink by the scale and shift by the padding
    expected = [600 / 2 + 256, 750, 900 / 2 + 256, 951]
    np.testing.assert_allclose(utils.extract_bboxes(mask)[1], expected, atol=1)


def test_pad64_mode_pads_to_multiples_of_64():
    image, masks = _frame_with_objects(1000, 2000)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=768, max_dim=1024, mode="pad64")
    assert out.shape == (1024, 2048, 3) and scale == 1
    assert padding == [(12, 12), (24, 24), (0, 0)]
    assert window == (12, 24, 1012, 2024)
    assert np.array_equal(out[12:1012, 24:2024], image)
    mask = utils.resize_mask(masks, scale, padding, crop)
    assert np.array_equal(mask[12:1012, 24:2024], masks)
    _assert_mask_aligned(out, mask)


def test_pad64_mode_leaves_a_1024x2048_frame_alone():
    image, masks = _frame_with_objects()
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=768, max_dim=1024, mode="pad64")
    assert out.shape == (1024, 2048, 3) and scale == 1 and window == (0, 0, 1024, 2048)
    assert padding == [(0, 0), (0, 0), (0, 0)] and np.array_equal(out, image)
    assert np.array_equal(utils.resize_mask(masks, scale, padding, crop), masks)


def test_pad64_mode_scales_up_to_min_dim():
    image = np.ones((300, 500, 3), dtype=np.uint8)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=640, mode="pad64")
    assert scale == pytest.approx(640 / 300)
    assert out.shape == (640, 1088, 3)  # 640 x round(1066.67) = 1067 -> padded to 1088
    assert window == (0, 10, 640, 1077)


def test_crop_mode_returns_a_random_crop_with_aligned_masks():
    image, masks = _frame_with_objects()
    image = image.copy()
    image[:, :, 1] = np.arange(W) % 256  # make the crop position visible
    out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=512, max_dim=1024, mode="crop", rng=random.Random(4))
    assert out.shape == (512, 512, 3) and scale == 1 and window == (0, 0, 512, 512)
    y, x, h, w = crop
    assert (h, w) == (512, 512) and 0 <= y <= H - 512 and 0 <= x <= W - 512
    assert np.array_equal(out, image[y:y + 512, x:x + 512])
    mask = utils.resize_mask(masks, scale, padding, crop)
    assert np.array_equal(mask, masks[y:y + 512, x:x + 512])


def test_none_mode_returns_image_unchanged():
    image, _ = _frame_with_objects(64, 128)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=800, max_dim=1024, mode="none")
    assert out is image and window == (0, 0, 64, 128) and scale == 1 and crop is None


def test_square_mode_scales_small_images_up_to_min_dim_within_max_dim():
    image = np.full((100, 300, 3), 7, dtype=np.uint8)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=200, max_dim=512, mode="square")
    # min_dim asks for x2 (600 px wide), max_dim caps the long side at 512 -> 171 x 512
    assert scale == pytest.approx(512 / 300) and out.shape == (512, 512, 3)
    assert padding == [(170, 171), (0, 0), (0, 0)]
    assert window == (170, 0, 341, 512)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="'stretch'"):
        utils.resize_image(np.zeros((8, 8, 3)), mode="stretch")


def test_resize_keeps_dtype_and_many_channel_masks():
    masks = np.zeros((40, 60, 300), dtype=bool)
    masks[10:20, 10:30, ::2] = True
    out = utils.resize(masks, (80, 120), order=0)
    assert out.shape == (80, 120, 300) and out.dtype == bool
    assert out[20:40, 20:60, 0].all() and not out[:, :, 1].any()
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert utils.resize(image, (6, 8)).dtype == np.uint16


@pytest.mark.parametrize("shape, scale", [((37, 53, 3), 2.7), ((40, 30, 3), 1.0 / 3), ((64, 96, 3), 1.6),
                                          ((25, 25, 1), 4.0), ((100, 61, 3), 0.45)])
def test_resize_image_equals_matterports_skimage_resize(shape, scale):
    import skimage.transform

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(-20, 21, shape), axis=0) % 256
    for image in (rng.integers(0, 256, shape).astype(np.uint8), smooth.astype(np.uint8),
                  (rng.integers(60, 200, shape)).astype(np.uint8)):  # a range without 0: skimage's clip
        if scale >= 1:  # scaled up by min_scale, padded to 64
            got, window, used, _, _ = utils.resize_image(image, min_scale=scale, mode="pad64")
        else:  # scaled down to max_dim, padded square
            got, window, used, _, _ = utils.resize_image(image, max_dim=round(max(shape[:2]) * scale),
                                                         mode="square")
        size = (round(shape[0] * used), round(shape[1] * used))
        expected = skimage.transform.resize(image, size, order=1, mode="constant", cval=0, clip=True,
                                            preserve_range=True, anti_aliasing=False).astype(np.uint8)
        y1, x1, y2, x2 = window
        got = got[y1:y2, x1:x2]
        assert got.shape == expected.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected).max() <= 1
        assert np.mean(got != expected) < 0.05  # equal but for float32/float64 truncation ties
