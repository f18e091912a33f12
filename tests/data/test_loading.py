import numpy as np
import pytest

from mrcnn import utils
from mrcnn.data import load_image_gt, parse_image_meta
from mrcnn.data.image_meta import compose_image_meta, mold_image, unmold_image
from tests.conftest import TinyConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def test_load_image_gt_resizes_and_builds_targets(shapes_dataset):
    config = TinyConfig()
    image_id = 2
    image, meta, class_ids, bbox, mask = load_image_gt(shapes_dataset, config, image_id, use_mini_mask=False)
    raw_mask, raw_ids = shapes_dataset.load_mask(image_id)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (128, 128, len(class_ids)) and mask.dtype == bool
    assert class_ids.dtype == np.int32
    visible = raw_mask.any(axis=(0, 1))
    assert class_ids.tolist() == raw_ids[visible].tolist()
    assert np.array_equal(bbox, utils.extract_bboxes(mask))
    parsed = parse_image_meta(meta[None])
    assert parsed["image_id"].tolist() == [image_id]
    assert parsed["original_image_shape"].tolist() == [[96, 160, 3]]
    assert parsed["image_shape"].tolist() == [[128, 128, 3]]
    # 96x160 scaled by 0.8 -> 77x128, padded to 128x128 (25 above, 26 below)
    assert parsed["scale"][0] == pytest.approx(0.8)
    assert parsed["window"].tolist() == [[25, 0, 102, 128]]
    assert parsed["active_class_ids"].tolist() == [[1, 1, 1, 1]]
    assert meta.shape == (config.IMAGE_META_SIZE,)


def test_mini_masks_expand_back_to_the_full_masks(shapes_dataset):
    config = TinyConfig()
    _, _, _, bbox, full = load_image_gt(shapes_dataset, config, 1, use_mini_mask=False)
    _, _, _, mini_bbox, mini = load_image_gt(shapes_dataset, config, 1, use_mini_mask=True)
    assert mini.shape == (28, 28, full.shape[-1])
    assert np.array_equal(bbox, mini_bbox)
    expanded = utils.expand_mask(mini_bbox, mini, (128, 128))
    ious = np.diag(utils.compute_overlaps_masks(expanded, full))
    assert (ious > 0.85).all()


def test_augmentation_is_applied_after_resizing(shapes_dataset):
    import albumentations as A

    config = TinyConfig()
    plain = load_image_gt(shapes_dataset, config, 0, use_mini_mask=False)
    flipped = load_image_gt(shapes_dataset, config, 0, use_mini_mask=False,
                            augmentation=A.HorizontalFlip(p=1.0))
    assert np.array_equal(flipped[0], plain[0][:, ::-1])
    assert np.array_equal(flipped[4], plain[4][:, ::-1])
    assert np.array_equal(flipped[3][:, [1, 3]], 128 - plain[3][:, [3, 1]])


class _BadDataset(utils.Dataset):
    def load_image(self, image_id):
        return np.zeros((40, 50, 3), dtype=np.uint8)

    def load_mask(self, image_id):
        return np.ones((40, 60, 1), dtype=bool), np.array([1], np.int32)


def test_mask_and_image_size_mismatch_names_the_image():
    dataset = _BadDataset()
    dataset.add_class("bad", 1, "thing")
    dataset.add_image("bad", image_id="x", path="/data/frame_0001.png")
    dataset.prepare()
    with pytest.raises(ValueError, match=r"frame_0001.png.*\(40, 60\).*\(40, 50\)"):
        load_image_gt(dataset, TinyConfig(), 0)


def test_image_meta_round_trip_and_mold():
    meta = compose_image_meta(7, (96, 160, 3), (128, 128, 3), (25, 0, 102, 128), 0.8, [1, 0, 1, 1])
    parsed = parse_image_meta(meta)
    assert int(parsed["image_id"]) == 7
    assert parsed["window"].tolist() == [25, 0, 102, 128]
    assert parsed["active_class_ids"].tolist() == [1, 0, 1, 1]
    config = TinyConfig()
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    molded = mold_image(image, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - config.MEAN_PIXEL, rtol=1e-6)
    assert np.array_equal(unmold_image(molded, config), image)
