"""Cityscapes masks against the official converter (cityscapesscripts), on crafted and generated data."""

import json

import numpy as np
import pytest
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from PIL import Image

from samples.cityscapes.dataset import (
    BENCHMARK_CLASSES,
    INSTANCE_CLASSES,
    CityscapesDataError,
    CityscapesDataset,
)
from samples.cityscapes.synthetic import generate, paint

H, W = 60, 100

CRAFTED = [
    {"label": "road", "polygon": [[0, 30], [100, 30], [100, 60], [0, 60]]},
    {"label": "car", "polygon": [[10, 20], [50, 20], [50, 45], [10, 45]]},          # car 26000, half hidden
    {"label": "person", "polygon": [[30, 10], [40, 10], [40, 50], [30, 50]]},      # person 24000, over the car
    {"label": "license plate", "polygon": [[15, 40], [25, 40], [25, 44], [15, 44]]},  # never drawn
    {"label": "cargroup", "polygon": [[60, 25], [90, 25], [90, 35], [60, 35]]},    # crowd, bare id 26
    {"label": "car", "deleted": 1, "polygon": [[0, 0], [99, 0], [99, 59], [0, 59]]},  # skipped
    {"label": "bicycle", "polygon": [[85, 40], [130, 40], [130, 70], [85, 70]]},   # reaches outside
    {"label": "person", "polygon": [[70, 50], [71, 50], [71, 52], [70, 52]]},      # tiny: person 24001
    {"label": "caravan", "polygon": [[0, 0], [20, 0], [20, 10], [0, 10]]},         # caravan: crowd in 8-class
    {"label": "sky", "polygon": [[0, 0], [5, 0], [5, 5], [0, 5]]},                 # stuff over the caravan
    {"label": "car", "polygon": [[60, 50], [65, 50], [65, 55], [60, 55]]},         # car 26001
    {"label": "car", "polygon": [[60, 50], [65, 50], [65, 55], [60, 55]]},         # car 26002 hides 26001
]


def _write_frame(root, objects, subset="train", city="aachen", seq=0, size=(H, W)):
    image_dir = root / "leftImg8bit" / subset / city
    gt_dir = root / "gtFine" / subset / city
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{city}_{seq:06d}_000019"
    Image.fromarray(paint(objects, size[0], size[1], np.random.default_rng(0))).save(
        image_dir / f"{stem}_leftImg8bit.png")
    path = gt_dir / f"{stem}_gtFine_polygons.json"
    path.write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    return path


def _official_ids(json_path):
    annotation = Annotation()
    annotation.fromJsonFile(str(json_path))
    return np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)


def _dataset(root, classes=BENCHMARK_CLASSES, subset="train", **kwargs):
    dataset = CityscapesDataset(classes=classes, **kwargs)
    dataset.load_cityscapes(str(root), subset)
    dataset.prepare()
    return dataset


def _assert_matches_official(masks, class_ids, dataset, official):
    """Every official instance id v >= 1000 is exactly one of our positive masks; groups are crowds."""
    ours = {}
    for i, class_id in enumerate(class_ids):
        ours.setdefault(int(class_id), []).append(masks[:, :, i])
    official_instances = [v for v in np.unique(official)
                          if v >= 1000 and f"cityscapes.{v // 1000}" in dataset.class_from_source_map]
    for value in official_instances:
        class_id = dataset.map_source_class_id(f"cityscapes.{value // 1000}")
        assert any(np.array_equal(m, official == value) for m in ours.get(class_id, [])), value
    positives = [m for c, ms in ours.items() if c > 0 for m in ms]
    assert len(positives) == len(official_instances)


def test_crafted_frame_matches_the_official_converter(tmp_path):
    json_path = _write_frame(tmp_path, CRAFTED)
    official = _official_ids(json_path)
    dataset = _dataset(tmp_path)
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape[:2] == (H, W) and masks.dtype == bool and class_ids.dtype == np.int32
    _assert_matches_official(masks, class_ids, dataset, official)
    car = dataset.map_source_class_id("cityscapes.26")
    person = dataset.map_source_class_id("cityscapes.24")
    # Occlusion: the car loses the person's columns; the hidden duplicate car has no mask at all
    car_masks = [masks[:, :, i] for i in np.nonzero(class_ids == car)[0]]
    assert len(car_masks) == 2
    assert np.array_equal(car_masks[0], official == 26000) and not (official == 26001).any()
    assert np.array_equal(car_masks[1], official == 26002)
    assert (class_ids == person).sum() == 2  # including the tiny one
    # The license plate is not drawn: the car keeps those pixels
    assert car_masks[0][42, 20]
    # Crowds: the car group and, in 8-class mode, the caravan (partly under the sky polygon)
    crowd = masks[:, :, class_ids < 0]
    assert np.array_equal(crowd.any(axis=-1), (official == 26) | (official == 29000))
    assert -car in class_ids.tolist()
    # The bicycle is clipped at the frame border
    bicycle = masks[:, :, class_ids == dataset.map_source_class_id("cityscapes.33")][:, :, 0]
    assert np.array_equal(bicycle, official == 33000) and bicycle[:, -1].any()


def test_ten_class_mode_keeps_caravan_and_trailer_as_instances(tmp_path):
    _write_frame(tmp_path, CRAFTED)
    dataset = _dataset(tmp_path, classes=INSTANCE_CLASSES)
    assert dataset.num_classes == 11
    masks, class_ids = dataset.load_mask(0)
    caravan = dataset.map_source_class_id("cityscapes.29")
    assert caravan in class_ids.tolist()
    _assert_matches_official(masks, class_ids, dataset, _official_ids(
        tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json"))


def test_frame_without_instances_gives_no_masks(tmp_path):
    _write_frame(tmp_path, CRAFTED[:1])
    masks, class_ids = _dataset(tmp_path).load_mask(0)
    assert masks.shape == (H, W, 0) and class_ids.shape == (0,)


def test_generated_tree_matches_the_official_pngs(tmp_path):
    root = generate(str(tmp_path), {"train": 6, "val": 2}, height=96, width=192, seed=3, progress=False)
    for subset, count in (("train", 6), ("val", 2)):
        dataset = _dataset(tmp_path, classes=INSTANCE_CLASSES, subset=subset)
        assert dataset.num_images == count
        for image_id in dataset.image_ids:
            info = dataset.image_info[image_id]
            png = info["annotation"].replace("_gtFine_polygons.json", "_gtFine_instanceIds.png")
            official = np.asarray(Image.open(png), dtype=np.int64)
            masks, class_ids = dataset.load_mask(image_id)
            image = dataset.load_image(image_id)
            assert image.shape == (96, 192, 3) and masks.shape[:2] == (96, 192)
            _assert_matches_official(masks, class_ids, dataset, official)
    assert root == str(tmp_path)


def test_bad_inputs_name_the_file_or_are_counted_and_skipped(tmp_path, caplog):
    _write_frame(tmp_path, CRAFTED, seq=0)
    bad_json = _write_frame(tmp_path, CRAFTED, seq=1)
    bad_json.write_text("{not json")
    unknown = _write_frame(tmp_path, CRAFTED[:1] + [{"label": "spaceship", "polygon": [[0, 0], [5, 0], [5, 5]]}],
                           seq=2)
    missing = _write_frame(tmp_path, CRAFTED, seq=3)
    missing.unlink()
    wrong_size = _write_frame(tmp_path, CRAFTED, seq=4)
    wrong_size.write_text(json.dumps({"imgHeight": H + 1, "imgWidth": W, "objects": CRAFTED}))
    corrupt_png = tmp_path / "leftImg8bit/train/aachen/aachen_000005_000019_leftImg8bit.png"
    _write_frame(tmp_path, CRAFTED, seq=5)
    corrupt_png.write_bytes(b"not a png")

    strict = _dataset(tmp_path)
    assert strict.load_mask(0)[0].shape[-1] > 0
    for image_id, (method, name) in enumerate([("load_mask", bad_json.name), ("load_mask", unknown.name),
                                               ("load_mask", missing.name), ("load_image", wrong_size.name),
                                               ("load_image", corrupt_png.name)], start=1):
        with pytest.raises((CityscapesDataError, OSError), match=name):
            getattr(strict, method)(image_id)
    with pytest.raises(CityscapesDataError, match="spaceship"):
        strict.load_mask(2)

    lenient = _dataset(tmp_path, skip_bad=True)
    with caplog.at_level("WARNING"):
        for image_id in lenient.image_ids:
            lenient.load_image(image_id)
            lenient.load_mask(image_id)
    assert len(lenient.skipped) == 5
    assert "5 skipped so far" in caplog.text


def _frame_with(tmp_path, objects, size=(H, W), mode=None, city="aachen", seq=0):
    """One frame with ``objects``; its image re-saved in PIL ``mode`` if given. Returns the JSON path."""
    image_dir = tmp_path / "leftImg8bit" / "train" / city
    gt_dir = tmp_path / "gtFine" / "train" / city
    image_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{city}_{seq:06d}_000019"
    rgb = paint([CAR], size[0], size[1], np.random.default_rng(0))  # the pixels do not matter here
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)
    elif mode is not None:
        image = image.convert(mode)
    image.save(image_dir / f"{stem}_leftImg8bit.png")
    path = gt_dir / f"{stem}_gtFine_polygons.json"
    path.write_text(json.dumps({"imgHeight": size[0], "imgWidth": size[1], "objects": objects}))
    return path


CAR = {"label": "car", "polygon": [[10, 20], [50, 20], [50, 45], [10, 45]]}


# (id, objects, frame size, image mode, expected: number of positive masks, or an error message regex)
FRAMES = [
    ("polygon of 2 points", [CAR, {"label": "person", "polygon": [[60, 10], [70, 30]]}], (H, W), None, 2),
    ("polygon of 1 point", [CAR, {"label": "person", "polygon": [[60, 10]]}], (H, W), None, 1),
    ("polygon far outside", [CAR, {"label": "person", "polygon": [[900, 900], [990, 900], [990, 990]]}],
     (H, W), None, 1),
    ("no objects", [], (H, W), None, 0),
    ("image 1 px wide", [{"label": "car", "polygon": [[0, 10], [1, 10], [1, 40], [0, 40]]}], (H, 1), None, 1),
    ("16-bit PNG", [CAR], (H, W), "I;16", 1),
    ("palette PNG", [CAR], (H, W), "P", 1),
    ("gray PNG", [CAR], (H, W), "L", 1),
    ("polygon not numbers", [{"label": "car", "polygon": [["a", "b"], [1, 2], [3, 4]]}], (H, W), None,
     r"object 0 \(car\) has a polygon that is not a list of \[x, y\] numbers"),
    ("object without polygon", [{"label": "car"}], (H, W), None, "object 0 has no label or polygon"),
]


@pytest.mark.parametrize("case", FRAMES, ids=[c[0] for c in FRAMES])
def test_odd_frames_give_the_official_masks_or_name_the_file(tmp_path, case, caplog):
    name, objects, size, mode, expected = case
    json_path = _frame_with(tmp_path, objects, size, mode)
    dataset = _dataset(tmp_path)
    if isinstance(expected, str):
        with pytest.raises(CityscapesDataError, match=expected) as error:
            dataset.load_mask(0)
        assert json_path.name in str(error.value)
        lenient = _dataset(tmp_path, skip_bad=True)
        lenient.load_mask(0)
        assert len(lenient.skipped) == 1 and json_path.name in lenient.skipped[0][1]
        return
    image = dataset.load_image(0)
    assert image.dtype == np.uint8 and image.shape == size + (3,)
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == size + (len(class_ids),) and int(np.sum(class_ids > 0)) == expected
    if name == "polygon of 1 point":  # the official converter cannot draw it: left out, logged, counted
        assert "a polygon of 1 point(s)" in caplog.text and json_path.name in caplog.text
        assert list(dataset.left_out_objects) == [str(json_path)]
        objects = objects[:1]
        json_path.write_text(json.dumps({"imgHeight": size[0], "imgWidth": size[1], "objects": objects}))
    _assert_matches_official(masks, class_ids, dataset, _official_ids(json_path))


def test_truncated_png_and_duplicated_frame_names_name_the_files(tmp_path):
    _frame_with(tmp_path, [CAR], seq=0)
    truncated = tmp_path / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png"
    _frame_with(tmp_path, [CAR], seq=1)
    truncated.write_bytes(truncated.read_bytes()[:100])
    strict = _dataset(tmp_path)
    with pytest.raises(CityscapesDataError, match=truncated.name):
        strict.load_image(1)
    lenient = _dataset(tmp_path, skip_bad=True)
    assert lenient.load_image(1).shape == (64, 64, 3) and lenient.skipped[0][0] == str(truncated)

    _frame_with(tmp_path, [CAR], city="bochum", seq=0)
    copy = tmp_path / "leftImg8bit/train/bochum/aachen_000000_000019_leftImg8bit.png"
    copy.write_bytes((tmp_path / "leftImg8bit/train/bochum/bochum_000000_000019_leftImg8bit.png").read_bytes())
    with pytest.raises(CityscapesDataError, match="bochum/aachen_000000_000019_leftImg8bit.png has the same frame"):
        _dataset(tmp_path)
    lenient = _dataset(tmp_path, skip_bad=True)
    assert [p for p, _ in lenient.skipped] == [str(copy)] and len(lenient.image_ids) == 3
