import numpy as np
import pytest

from mrcnn import utils
from mrcnn.data.generator import DataGenerator, data_generator
from mrcnn.shapes import ShapesDataset
from tests.conftest import TinyConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


class _CrowdOnlyShapes(ShapesDataset):
    """Image 0 holds only a crowd region (negative class id): it must be skipped like an empty one."""

    def load_mask(self, image_id):
        mask, class_ids = super().load_mask(image_id)
        if image_id == 0:
            class_ids = -np.abs(class_ids)
        return mask, class_ids


def _dataset(count=6, empty_fraction=0.0, cls=ShapesDataset, **kwargs):
    dataset = cls()
    dataset.load_shapes(count, 96, 160, seed=5, empty_fraction=empty_fraction, **kwargs)
    dataset.prepare()
    return dataset


def test_batch_matches_matterport_inputs():
    config = TinyConfig()
    generator = DataGenerator(_dataset(), config, seed=0)
    inputs, outputs = generator[0]
    assert outputs == []
    images, meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks = inputs
    anchors = generator.anchors.shape[0]
    assert anchors == 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.float32
    assert meta.shape == (2, config.IMAGE_META_SIZE)
    assert rpn_match.shape == (2, anchors, 1) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (2, 256, 4) and rpn_bbox.dtype == np.float32
    assert gt_class_ids.shape == (2, 10) and gt_boxes.shape == (2, 10, 4)
    assert gt_masks.shape == (2, 28, 28, 10) and gt_masks.dtype == bool
    for b in range(2):
        n = int((gt_class_ids[b] != 0).sum())
        assert n > 0
        assert not gt_boxes[b, n:].any() and not gt_masks[b, :, :, n:].any()
        assert (gt_boxes[b, :n, 2] > gt_boxes[b, :n, 0]).all()
        assert (rpn_match[b] == 1).sum() > 0
        assert ((rpn_match[b] != 0).sum()) == 256


def test_batches_are_reproducible_and_epochs_reshuffle():
    generator = DataGenerator(_dataset(count=8), TinyConfig(), seed=11)
    first = generator[1]
    again = generator[1]
    for a, b in zip(first[0], again[0]):
        assert np.array_equal(a, b)
    ids_epoch0 = [int(m) for i in range(len(generator)) for m in generator[i][0][1][:, 0]]
    generator.on_epoch_end()
    ids_epoch1 = [int(m) for i in range(len(generator)) for m in generator[i][0][1][:, 0]]
    assert sorted(ids_epoch0) == sorted(ids_epoch1) == list(range(8))
    assert ids_epoch0 != ids_epoch1


def test_an_epoch_longer_than_the_data_reshuffles_each_pass():
    """Each pass over the data within one epoch is a new order (Matterport reshuffled after each pass), every
    image once per pass, and each batch a pure function of (seed, epoch, index)."""
    count, batch = 6, 2
    config = TinyConfig(IMAGES_PER_GPU=batch)
    generator = DataGenerator(_dataset(count=count), config, seed=5, steps=4 * count // batch)  # 4 passes
    ids = [int(m) for i in range(len(generator)) for m in generator[i][0][1][:, 0]]
    passes = [ids[p * count:(p + 1) * count] for p in range(4)]
    assert all(sorted(p) == list(range(count)) for p in passes)  # every image once per pass
    assert len({tuple(p) for p in passes}) == 4  # four different orders
    fresh = DataGenerator(_dataset(count=count), config, seed=5, steps=4 * count // batch)
    for index in (5, 0, 11):  # any batch, in any order: the same images
        np.testing.assert_array_equal(fresh.batch_at(0, index)[0][1], generator[index][0][1])


def test_images_without_positive_instances_are_skipped_and_counted(caplog):
    dataset = _dataset(count=6, cls=_CrowdOnlyShapes)
    empty = _dataset(count=6, empty_fraction=0.5)
    empty_ids = {i for i in empty.image_ids if not empty.image_info[i]["shapes"]}
    assert empty_ids  # the seed gives some empty images
    for data, expected in ((dataset, {0}), (empty, empty_ids)):
        generator = DataGenerator(data, TinyConfig(), shuffle=False, seed=0)
        seen = set()
        with caplog.at_level("INFO", logger="mrcnn.data.generator"):
            for i in range(len(generator)):
                seen.update(int(m) for m in generator[i][0][1][:, 0])
        assert generator.skipped_image_ids == expected
        assert not seen & expected
        assert "no positive instance" in caplog.text


def test_dataset_without_any_positive_instance_is_an_error():
    generator = DataGenerator(_dataset(count=3, empty_fraction=1.0), TinyConfig(), seed=0)
    with pytest.raises(ValueError, match="none of the 3 images has a positive instance"):
        generator[0]


def test_more_instances_than_max_gt_are_subsampled():
    config = TinyConfig(MAX_GT_INSTANCES=2, IMAGES_PER_GPU=1)
    dataset = _dataset(count=4, min_shapes=4, max_shapes=4)
    inputs, _ = DataGenerator(dataset, config, seed=0)[0]
    assert inputs[4].shape == (1, 2) and (inputs[4] > 0).all()


def test_augmentation_and_no_augmentation_sources():
    import albumentations as A

    config = TinyConfig(IMAGES_PER_GPU=1)
    dataset = _dataset(count=2)
    flip = A.HorizontalFlip(p=1.0)
    plain = DataGenerator(dataset, config, shuffle=False, seed=0)[0][0]
    flipped = DataGenerator(dataset, config, shuffle=False, seed=0, augmentation=flip)[0][0]
    skipped = DataGenerator(dataset, config, shuffle=False, seed=0, augmentation=flip,
                            no_augmentation_sources=["shapes"])[0][0]
    assert np.array_equal(flipped[0], plain[0][:, :, ::-1])
    assert np.array_equal(skipped[0], plain[0])


def test_parallel_workers_give_the_same_batches():
    """Keras runs __getitem__ on worker threads, in any order; batches must not depend on that."""
    from concurrent.futures import ThreadPoolExecutor

    import albumentations as A

    from mrcnn.data.augmentation import imgaug_augmenters

    iaa = imgaug_augmenters()  # imgaug 0.4 on NumPy 2

    dataset = _dataset(count=8)
    for augmentation in (iaa.Sequential([iaa.Fliplr(0.5), iaa.Affine(rotate=(-10, 10))]),
                         A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-10, 10), p=1.0)])):
        serial = DataGenerator(dataset, TinyConfig(), seed=3, augmentation=augmentation)
        parallel = DataGenerator(dataset, TinyConfig(), seed=3, augmentation=augmentation, workers=2)
        assert parallel.workers == 2
        expected = [serial[i][0] for i in range(len(serial))]
        with ThreadPoolExecutor(max_workers=4) as pool:
            got = list(pool.map(lambda i, g=parallel: g[i][0], reversed(range(len(parallel)))))[::-1]
        for a, b in zip(expected, got):
            for x, y in zip(a, b):
                assert np.array_equal(x, y)
        # The augmentation does act: unaugmented batches differ
        plain = DataGenerator(dataset, TinyConfig(), seed=3)[0][0][0]
        assert not np.array_equal(plain, expected[0][0])


def test_data_generator_is_matterport_compatible():
    dataset = _dataset(count=3)
    config = TinyConfig()
    generator = data_generator(dataset, config, shuffle=True, batch_size=config.BATCH_SIZE)
    for _ in range(3):  # crosses an epoch boundary
        inputs, outputs = next(generator)
        assert len(inputs) == 7 and outputs == []
        assert inputs[0].shape[0] == 2
    inputs, outputs = next(data_generator(dataset, config, random_rois=200))  # Matterport's debugging ROIs
    assert len(inputs) == 8 and inputs[7].shape == (1, 200, 4) and outputs == []
    with pytest.raises(ValueError, match="random_rois"):
        next(data_generator(dataset, config, detection_targets=True))
    assert utils.Dataset  # utils stays importable beside the generator
