"""Shared fixtures: tiny configs and synthetic data sets. Nothing here touches the network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402


class TinyConfig(Config):
    """128x128 images, anchors scaled to match: fast enough for unit tests on 2 cores."""

    NAME = "tiny"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    MINI_MASK_SHAPE = (28, 28)
    MAX_GT_INSTANCES = 10


@pytest.fixture
def tiny_config():
    return TinyConfig()


@pytest.fixture
def shapes_dataset():
    dataset = ShapesDataset()
    dataset.load_shapes(8, 96, 160, seed=3)
    dataset.prepare()
    return dataset
