"""Shared fixtures: tiny configs and synthetic data sets. Nothing here touches the network."""

import os
import sys

# tests/run_backends.py runs the JAX and PyTorch tests as a user without TensorFlow would: with this set, an
# import of tensorflow fails and importlib.util.find_spec("tensorflow") answers None, as if it were not installed.
if os.environ.get("MRCNN_TEST_HIDE_TENSORFLOW") == "1":
    sys.modules["tensorflow"] = None

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# Bounded thread pools, for this process and the subprocesses tests start (they inherit the environment):
# on a busy machine a test then slows down in proportion to the load instead of oversubscribing the cores.
# TensorFlow reads its two pool sizes when it starts; OpenCV and BLAS get one thread (they run inside data
# workers, which are threads already).
for _name, _value in (("TF_NUM_INTRAOP_THREADS", "2"), ("TF_NUM_INTEROP_THREADS", "2"), ("OMP_NUM_THREADS", "1"),
                      ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("OPENCV_FOR_THREADS_NUM", "1")):
    os.environ.setdefault(_name, _value)

import cv2  # noqa: E402

cv2.setNumThreads(1)

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


def shapes_data(count, seed, height=96, width=160):
    """A prepared synthetic ShapesDataset of ``count`` images (the fixtures of several test modules)."""
    dataset = ShapesDataset()
    dataset.load_shapes(count, height, width, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture
def shapes_dataset():
    return shapes_data(8, seed=3)


def tiny_backbone(image, stage5=True, train_bn=False):
    """A five-stage, few-channel backbone (strides 2..32) for fast model tests; names caught by presets."""
    from keras import layers

    from mrcnn.backbone import BatchNorm

    x, stages = image, []
    for i, filters in enumerate([16, 32, 48, 64, 96], start=1):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"res{i}_tiny_a")(x)
        x = BatchNorm(train_bn, name=f"bn{i}_tiny_a")(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"res{i}_tiny_b")(x)
        x = BatchNorm(train_bn, name=f"bn{i}_tiny_b")(x)
        x = layers.Activation("relu")(x)
        stages.append(x)
    return stages


class TinyModelConfig(TinyConfig):
    """A whole Mask R-CNN small enough to build and run in seconds on a CPU."""

    NAME = "tinymodel"
    BACKBONE = staticmethod(tiny_backbone)
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    DETECTION_MAX_INSTANCES = 8
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    TOP_DOWN_PYRAMID_SIZE = 32
    MASK_HEAD_SIZE = 16
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


def _keras_backend():
    import keras

    return keras.backend.backend()


def pytest_ignore_collect(collection_path, config):
    """Off TensorFlow, a test module that marks nothing for other backends is not even imported (it may import
    TensorFlow at its top, which tests/run_backends.py hides)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if _keras_backend() == "tensorflow":
        return None
    text = collection_path.read_text(encoding="utf-8")
    return True if "all_backends" not in text and "off_tensorflow" not in text else None


def pytest_collection_modifyitems(config, items):
    """Which tests run on which Keras backend (KERAS_BACKEND, as ``import mrcnn`` resolved it).

    On TensorFlow every test runs but those marked ``off_tensorflow`` (they compare another backend against
    TensorFlow). On JAX and PyTorch only the tests marked ``all_backends`` or ``off_tensorflow`` run: the others
    test TensorFlow's own parts (its kernels, XLA, tf.distribute, SavedModel and ONNX export, the CLI jobs).
    The rest are deselected (pytest's summary counts them), not skipped; tests/run_backends.py runs both.
    """
    backend = _keras_backend()
    if backend == "tensorflow":
        keep = [item for item in items if item.get_closest_marker("off_tensorflow") is None]
    else:
        keep = [item for item in items
                if item.get_closest_marker("all_backends") or item.get_closest_marker("off_tensorflow")]
    if len(keep) != len(items):
        kept = {id(item) for item in keep}
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
        items[:] = keep
