import numpy as np
import pytest
from PIL import Image

from mrcnn import utils


def _two_source_dataset():
    dataset = utils.Dataset()
    dataset.add_class("coco", 1, "person")
    dataset.add_class("coco", 3, "car, automobile")
    dataset.add_class("coco", 1, "person")  # repeats are ignored
    dataset.add_class("cityscapes", 26, "car")
    dataset.add_image("coco", image_id="img-a", path="/data/a.jpg", width=640)
    dataset.add_image("cityscapes", image_id="aachen_000000_000019", path="/data/b.png")
    dataset.prepare()
    return dataset


def test_prepare_builds_matterport_tables():
    dataset = _two_source_dataset()
    assert dataset.num_classes == 4
    assert dataset.class_names == ["BG", "person", "car", "car"]
    assert dataset.class_ids.tolist() == [0, 1, 2, 3]
    assert dataset.image_ids.tolist() == [0, 1]
    assert dataset.num_images == 2
    assert dataset.map_source_class_id("coco.3") == 2
    assert dataset.map_source_class_id("cityscapes.26") == 3
    assert dataset.get_source_class_id(3, "cityscapes") == 26
    assert dataset.source_class_ids == {"": [0], "coco": [0, 1, 2], "cityscapes": [0, 3]}
    assert dataset.image_from_source_map["cityscapes.aachen_000000_000019"] == 1
    assert dataset.image_info[0]["width"] == 640
    assert dataset.source_image_link(1) == "/data/b.png"
    assert dataset.image_reference(0) == ""
    assert len(dataset.class_info) == 4


def test_source_id_errors_are_clear():
    dataset = _two_source_dataset()
    with pytest.raises(KeyError, match="coco.99"):
        dataset.map_source_class_id("coco.99")
    with pytest.raises(ValueError, match="belongs to source 'coco', not 'cityscapes'"):
        dataset.get_source_class_id(1, "cityscapes")
    with pytest.raises(ValueError, match="dot"):
        dataset.add_class("my.source", 1, "x")


def test_default_load_mask_is_empty_and_warns(caplog):
    dataset = _two_source_dataset()
    mask, class_ids = dataset.load_mask(0)
    assert mask.shape == (0, 0, 0) and class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "default load_mask" in caplog.text


@pytest.mark.parametrize("mode, suffix", [
    ("RGB", ".png"), ("RGB", ".jpg"), ("L", ".png"), ("RGBA", ".png"), ("P", ".png"), ("LA", ".png"),
    ("I;16", ".png"), ("CMYK", ".jpg"),
])
def test_load_image_always_uint8_rgb(tmp_path, mode, suffix):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    if mode == "I;16":
        values = (np.arange(12 * 17).reshape(12, 17) * 300).astype(np.uint16)
        image = Image.fromarray(values)
    else:
        image = Image.fromarray(rgb).convert(mode)
    path = tmp_path / f"image{suffix}"
    image.save(path)
    dataset = utils.Dataset()
    dataset.add_image("test", 0, str(path))
    dataset.prepare()
    loaded = dataset.load_image(0)
    assert loaded.dtype == np.uint8 and loaded.shape == (12, 17, 3)
    if (mode, suffix) == ("RGB", ".png") or mode == "RGBA":
        assert np.array_equal(loaded, rgb)  # alpha dropped, colours untouched
    if mode == "I;16":
        expected = np.rint(values / 65535 * 255).astype(np.uint8)
        assert np.array_equal(loaded[:, :, 0], expected) and np.array_equal(loaded[:, :, 2], expected)
    if mode in ("L", "LA"):
        assert np.array_equal(loaded[:, :, 0], loaded[:, :, 1])


def test_load_image_missing_and_corrupt_files_name_the_path(tmp_path):
    dataset = utils.Dataset()
    missing = tmp_path / "missing.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8) + 90).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for path in (missing, corrupt, truncated):
        dataset.add_image("test", str(path), str(path))
    dataset.prepare()
    for image_id, path in enumerate((missing, corrupt, truncated)):
        with pytest.raises(utils.ImageLoadError, match=str(path)):
            dataset.load_image(image_id)


def test_duplicated_image_ids_are_counted_and_logged(caplog):
    dataset = utils.Dataset()
    dataset.add_image("test", 7, "a/frame.png")
    dataset.add_image("test", 8, "b/other.png")
    dataset.add_image("test", 7, "c/frame.png")
    with caplog.at_level("WARNING"):
        dataset.prepare()
    assert dataset.duplicate_image_ids == {"test.7": ["a/frame.png", "c/frame.png"]}
    assert "1 image ids were added more than once" in caplog.text and "c/frame.png" in caplog.text
    assert dataset.num_images == 3 and dataset.image_from_source_map["test.7"] == 2
