"""samples/nucleus: Matterport's nucleus sample on DSB2018's layout, its default (real tiles from stardist's
wheel), bad input, Kaggle's run-length encoding, evaluation with pycocotools and the command line."""

import importlib.util
import os
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from samples.nucleus import nucleus, tiles
from samples.nucleus.nucleus import NucleusDataError


@pytest.fixture(scope="module")
def tiles_root(tmp_path_factory):
    return tiles.stardist_tiles(str(tmp_path_factory.mktemp("cache")), progress=False)


def _stardist_arrays():
    image_path, label_path = tiles.stardist_files()
    return tifffile.imread(image_path), tifffile.imread(label_path)


def test_the_tiles_are_stardists_image_and_labels_in_dsb2018_layout(tiles_root):
    image, labels = _stardist_arrays()
    train, val = nucleus.load_subset(tiles_root, "train"), nucleus.load_subset(tiles_root, "val")
    assert len(train.image_ids) == 12 and len(val.image_ids) == 4
    assert sorted(info["id"] for info in val.image_info) == sorted(tiles.VAL_TILE_IDS)
    assert not {info["id"] for info in train.image_info} & set(nucleus.HELD_OUT_IDS)
    for dataset in (train, val):
        for image_id in dataset.image_ids:
            tile_id = dataset.image_info[image_id]["id"]
            row, col = (int(part[1:]) for part in tile_id.split("_")[1:])
            window = np.s_[row * 128:(row + 1) * 128, col * 128:(col + 1) * 128]
            with Image.open(dataset.image_info[image_id]["path"]) as png:
                assert png.mode == "RGBA"  # as DSB2018's files
            rgb = dataset.load_image(image_id)
            assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
            np.testing.assert_array_equal(rgb[:, :, 1], image[window])
            masks, class_ids = dataset.load_mask(image_id)
            assert masks.dtype == bool and class_ids.dtype == np.int32 and (class_ids == 1).all()
            # the reference: every connected part of a label inside the tile, of 16 pixels or more
            tile = labels[window]
            expected = []
            for label in np.unique(tile[tile > 0]):
                parts, n = ndimage.label(tile == label)
                expected += [parts == k for k in range(1, n + 1) if (parts == k).sum() >= tiles.MIN_PART_PIXELS]
            assert masks.shape[-1] == len(expected) > 0
            assert sorted(m.tobytes() for m in np.moveaxis(masks, -1, 0)) == sorted(m.tobytes() for m in expected)
    assert sum(val.load_mask(i)[0].shape[-1] for i in val.image_ids) == 40


def _copy_dsb(tiles_root, tmp_path, count=2):
    """A small DSB2018 folder (two training images) to break."""
    root = tmp_path / "dsb"
    for tile_id in tiles.TILE_IDS[:count]:
        shutil.copytree(os.path.join(tiles_root, "stage1_train", tile_id), root / "stage1_train" / tile_id)
    return root


def _load_all(root):
    dataset = nucleus.load_subset(str(root), "stage1_train")
    for image_id in dataset.image_ids:
        dataset.load_image(image_id)
        dataset.load_mask(image_id)
    return dataset


def test_bad_dsb2018_folders_are_refused_naming_the_file(tiles_root, tmp_path):
    first = tiles.TILE_IDS[0]
    root = _copy_dsb(tiles_root, tmp_path)
    masks_dir = root / "stage1_train" / first / "masks"

    (masks_dir / "Thumbs.db").write_bytes(b"not a mask")  # not a PNG: skipped and counted
    dataset = _load_all(root)
    assert dataset.skipped_files == [str(masks_dir / "Thumbs.db")]

    mask_file = sorted(masks_dir.glob("*.png"))[0]
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(mask_file)
    with pytest.raises(NucleusDataError, match=f"{mask_file}: mask of 128x64 pixels for an image of 128x128"):
        _load_all(root)

    for png in masks_dir.glob("*.png"):
        png.unlink()
    with pytest.raises(NucleusDataError, match=f"{masks_dir}: no mask PNG"):
        _load_all(root)

    shutil.rmtree(masks_dir)
    with pytest.raises(NucleusDataError, match="the image has no masks folder"):
        _load_all(root)

    root = _copy_dsb(tiles_root, tmp_path / "2")
    image_file = root / "stage1_train" / first / "images" / f"{first}.png"
    image_file.write_bytes(b"GIF89a not a png")
    with pytest.raises(NucleusDataError, match=f"{image_file}: not a PNG file"):
        _load_all(root)
    image_file.unlink()
    with pytest.raises(NucleusDataError, match=f"{image_file}: missing"):
        _load_all(root)

    with pytest.raises(NucleusDataError, match="data-science-bowl-2018"):
        nucleus.load_subset(str(tmp_path / "nowhere"), "train")
    with pytest.raises(NucleusDataError, match="subset 'stage3'"):
        nucleus.load_subset(str(root), "stage3")


def test_run_length_encoding_is_kaggles():
    mask = np.zeros((4, 3), bool)
    mask[1:3, 0] = True   # column-major pixels 2, 3
    mask[0, 2] = True     # pixel 9
    assert nucleus.rle_encode(mask) == "2 2 9 1"
    np.testing.assert_array_equal(nucleus.rle_decode("2 2 9 1", (4, 3)), mask)
    rng = np.random.default_rng(0)
    for _ in range(5):
        random_mask = rng.random((7, 5)) > 0.5
        np.testing.assert_array_equal(nucleus.rle_decode(nucleus.rle_encode(random_mask), (7, 5)), random_mask)
    # overlapping masks: the higher score keeps the pixel, every line one instance
    masks = np.zeros((4, 4, 2), bool)
    masks[:2, :2, 0] = True
    masks[1:3, 1:3, 1] = True
    lines = nucleus.mask_to_rle("img", masks, np.array([0.6, 0.9])).splitlines()
    decoded = [nucleus.rle_decode(line.split(",")[1], (4, 4)) for line in lines]
    assert len(decoded) == 2 and not (decoded[0] & decoded[1]).any()
    np.testing.assert_array_equal(decoded[0], masks[:, :, 1])
    assert nucleus.mask_to_rle("img", masks[:, :, :0], np.zeros(0)) == "img,"


class _Oracle:
    """A stand-in for a trained model: detect() returns the ground truth of the image it is given."""

    def __init__(self, dataset, drop=0):
        self.truth = {dataset.load_image(i).tobytes(): dataset.load_mask(i)[0] for i in dataset.image_ids}
        self.drop = drop

    def detect(self, images, verbose=0):
        masks = self.truth[images[0].tobytes()]
        masks = masks[:, :, self.drop:]
        from mrcnn.utils import extract_bboxes

        n = masks.shape[-1]
        return [{"rois": extract_bboxes(masks), "masks": masks, "class_ids": np.ones(n, np.int32),
                 "scores": np.linspace(1.0, 0.6, n)}]


def test_evaluate_scores_with_pycocotools_and_draws_pictures(tiles_root, tmp_path):
    val = nucleus.load_subset(tiles_root, "val")
    summary = nucleus.evaluate(_Oracle(val), val, str(tmp_path / "eval"), progress=False)
    assert summary["segm"]["AP"] == pytest.approx(1.0) and summary["bbox"]["AP50"] == pytest.approx(1.0)
    assert summary["images"] == 4 and summary["instances"] == summary["detections"] == 40
    pictures = sorted(p.name for p in (tmp_path / "eval").glob("*.png"))
    assert pictures == sorted(f"{tile}.png" for tile in tiles.VAL_TILE_IDS)
    with Image.open(tmp_path / "eval" / pictures[0]) as picture:
        assert picture.size == (384 * 2 + 4, 384)  # ground truth | detections, enlarged 3x
    assert (tmp_path / "eval" / "evaluation.json").is_file()
    missing_one = nucleus.evaluate(_Oracle(val, drop=1), val, progress=False)
    assert missing_one["segm"]["AP"] < 1.0 and missing_one["detections"] == 36


def test_without_stardist_the_cli_says_what_to_install(monkeypatch, tmp_path, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "stardist" else real_find_spec(name, *a))
    monkeypatch.setenv("MRCNN_CACHE", str(tmp_path))
    assert nucleus.main(["train"]) == 2
    error = capsys.readouterr().err
    assert "pip install --no-deps" in error and "--dataset" in error
    assert not list(tmp_path.iterdir())  # nothing half-written
