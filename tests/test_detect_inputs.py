"""detect()'s input contract over a corpus of odd and bad inputs: each gives its result or its message."""

import pathlib

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.inputs import as_images
from tests.conftest import TinyModelConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (90, 140, 3), dtype=np.uint8)
FLOAT01 = IMAGE.astype(np.float32) / 255.0  # exact multiples of 1/255: scales back to IMAGE
READ_ONLY = IMAGE.copy()
READ_ONLY.flags.writeable = False


def _nan_image():
    image = IMAGE.astype(np.float32)
    image[3, 4, 1] = np.nan
    return image


def _inf_image():
    image = IMAGE.astype(np.float64)
    image[0, 0, 0] = np.inf
    return image


# (id, images argument, expected: list of (height, width) per result image | (exception, message regex),
#  equivalent uint8 input whose detections must be the same, or None)
CORPUS = [
    ("one array is one image", IMAGE, [(90, 140)], [IMAGE]),
    ("batch array is N images", np.stack([IMAGE, IMAGE[::-1]]), [(90, 140)] * 2, [IMAGE, IMAGE[::-1]]),
    ("list of two sizes", [IMAGE, IMAGE[:50, :70]], [(90, 140), (50, 70)], None),
    ("empty list", [], [], None),
    ("gray 2-D", IMAGE[:, :, 0], [(90, 140)], [np.repeat(IMAGE[:, :, :1], 3, axis=2)]),
    ("gray one channel", IMAGE[:, :, :1], [(90, 140)], [np.repeat(IMAGE[:, :, :1], 3, axis=2)]),
    ("RGBA", np.dstack([IMAGE, np.full((90, 140), 7, np.uint8)]), [(90, 140)], [IMAGE]),
    ("bool", IMAGE[:, :, 0] > 128, [(90, 140)], [np.repeat((IMAGE[:, :, :1] > 128) * np.uint8(255), 3, axis=2)]),
    ("uint16 16-bit", IMAGE.astype(np.uint16) * 257, [(90, 140)], [IMAGE]),
    ("int32 16-bit from PIL", IMAGE.astype(np.int32) * 257, [(90, 140)], [IMAGE]),
    ("int16 0..255", IMAGE.astype(np.int16), [(90, 140)], [IMAGE]),
    ("float 0..1", FLOAT01, [(90, 140)], [IMAGE]),
    ("float 0..255", IMAGE.astype(np.float64), [(90, 140)], [IMAGE]),
    ("non-contiguous", np.ascontiguousarray(IMAGE[:, ::-1])[:, ::-1], [(90, 140)], [IMAGE]),
    ("read-only", READ_ONLY, [(90, 140)], [IMAGE]),
    ("tall 1000x10", IMAGE[:1, :10].repeat(1000, axis=0), [(1000, 10)], None),
    ("wide 10x1000", IMAGE[:10, :1].repeat(1000, axis=1), [(10, 1000)], None),
    ("two channels", IMAGE[:, :, :2], (ValueError, r"images\[0\] has 2 channels")),
    ("rank 1", np.zeros(10, np.uint8), (ValueError, r"shape \(10,\) is neither one image")),
    ("rank 1 in a list", [np.zeros(10, np.uint8)], (ValueError, r"images\[0\] has shape \(10,\)")),
    ("rank 5", np.zeros((1, 2, 8, 8, 3), np.uint8), (ValueError, r"neither one image .* nor a batch")),
    ("3-D stack of gray images", np.zeros((4, 30, 40), np.uint8), (ValueError, r"pass a list of images")),
    ("string path", "street.png", (TypeError, r"path 'street.png'.*load it first")),
    ("Path in a list", [IMAGE, pathlib.Path("a.png")], (TypeError, r"images\[1\] is the path 'a.png'")),
    ("0x0 image", np.zeros((0, 0, 3), np.uint8), (ValueError, r"images\[0\] is empty")),
    ("0 rows", [IMAGE, np.zeros((0, 10, 3), np.uint8)], (ValueError, r"images\[1\] is empty")),
    ("NaN pixel", [IMAGE, _nan_image()], (ValueError, r"images\[1\] has 1 NaN or infinite values")),
    ("inf pixel", _inf_image(), (ValueError, r"images\[0\] has 1 NaN or infinite")),
    ("negative int16", IMAGE.astype(np.int16) - 100, (ValueError, r"images\[0\] has negative values")),
    ("float out of range", IMAGE.astype(np.float32) - 100.0, (ValueError, r"expected 0..1 or 0..255")),
    ("int above 16 bits", np.full((8, 8, 3), 70000, np.int32), (ValueError, r"values up to 70000")),
    ("object dtype", [np.full((4, 4, 3), None, dtype=object)], (TypeError, r"images\[0\] has dtype object")),
    ("complex", IMAGE.astype(np.complex64), (TypeError, r"has dtype complex64")),
    ("not an array", 42, (TypeError, r"expected a list of images or an image array, got int")),
    ("too thin 10000x10", IMAGE[:1, :10].repeat(10000, axis=0),
     (ValueError, r"images\[0\] of shape \(10000, 10, 3\) would shrink to 128x0 pixels .*too extreme")),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    config = TinyModelConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    return modellib.MaskRCNN("inference", config, str(tmp_path_factory.mktemp("logs")))


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 15 and len({c[0] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_detect_input(model, case):
    name, images, expected = case[:3]
    if isinstance(expected, tuple):
        error, message = expected
        with pytest.raises(error, match=message):
            model.detect(images)
        return
    results = model.detect(images)
    assert [r["masks"].shape[:2] for r in results] == expected, name
    for r in results:
        n = len(r["class_ids"])
        assert r["rois"].shape == (n, 4) and r["scores"].shape == (n,) and r["masks"].shape[2] == n
        assert r["masks"].dtype == bool and r["rois"].dtype == np.int32
    equivalent = case[3]
    if equivalent is not None:  # the same detections as the plain uint8 RGB image
        for got, want in zip(results, model.detect(equivalent)):
            np.testing.assert_array_equal(got["rois"], want["rois"])
            np.testing.assert_array_equal(got["class_ids"], want["class_ids"])
            np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6)


def test_conversion_values():
    (gray,) = as_images(np.array([[0, 255]], np.uint8))
    assert gray.shape == (1, 2, 3) and gray.dtype == np.uint8 and gray.flags.c_contiguous
    (sixteen,) = as_images(np.array([[0, 257, 65535]], np.uint16))
    assert sixteen[0, :, 0].tolist() == [0, 1, 255]
    (dark16,) = as_images(np.array([[0, 200]], np.uint16))  # uint16 is 16-bit whatever its values
    assert dark16[0, :, 0].tolist() == [0, 1]
    (unit,) = as_images(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit[0, :, 0].tolist() == [0, 128, 255]
    assert len(as_images(IMAGE for _ in range(3))) == 3  # any iterable
