"""XLA: what a GPU machine runs by default (Keras's jit_compile="auto"), forced on this CPU.

The ROI sampling of the detection-target layer draws random priorities, and TensorFlow picks another
random algorithm under XLA; XLA's fused softmax also differs from TensorFlow's in the last bits, which can
swap two near-equal RPN scores among thousands of anchors. So the training-step comparison uses a config
in which every eligible ROI is sampled (the 2 best proposals plus the ground truth, room for all of them,
at least 9 negatives wanted per positive) and seeded weights: the sample is then the same set in both
runs, only in another order, and the losses are means over it.
"""

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.data.generator import DataGenerator
from mrcnn.losses import LOSS_NAMES
from tests.conftest import TinyModelConfig, shapes_data

DETERMINISTIC_SAMPLING = dict(TRAIN_ADD_GT_PROPOSALS=True, POST_NMS_ROIS_TRAINING=2, TRAIN_ROIS_PER_IMAGE=200,
                              ROI_POSITIVE_RATIO=0.1)


@pytest.fixture(scope="module")
def shapes():
    return shapes_data(4, seed=5)


def _train_step(jit, weights, inputs, tmp_path):
    config = TinyModelConfig(JIT_COMPILE=jit, **DETERMINISTIC_SAMPLING)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    model.keras_model.set_weights(weights)
    model.set_trainable("all", verbose=0)
    model.compile(0.01, 0.9)
    assert model.keras_model.jit_compile is jit
    logs = model.keras_model.train_on_batch(inputs, return_dict=True)
    return logs, model.keras_model.get_weights()


def test_a_training_step_compiles_with_xla_and_equals_the_plain_one(tmp_path, shapes):
    keras.utils.set_random_seed(1)
    config = TinyModelConfig(**DETERMINISTIC_SAMPLING)
    weights = modellib.MaskRCNN("training", config, tmp_path, seed=0).keras_model.get_weights()
    inputs, _ = DataGenerator(shapes, config, seed=0)[0]
    plain_logs, plain_weights = _train_step(False, weights, inputs, tmp_path)
    xla_logs, xla_weights = _train_step(True, weights, inputs, tmp_path)
    for name in LOSS_NAMES:
        assert np.isfinite(plain_logs[name]) and plain_logs[name] > 0
        np.testing.assert_allclose(xla_logs[name], plain_logs[name], rtol=1e-4, err_msg=name)
    changed = [not np.array_equal(a, b) for a, b in zip(weights, plain_weights)]
    assert sum(changed) > len(weights) // 2  # the step trained
    for before, plain, xla in zip(weights, plain_weights, xla_weights):
        # tolerance relative to the step taken: XLA fuses differently (about 1e-6 relative per op)
        step = np.abs(plain - before).max()
        np.testing.assert_allclose(xla, plain, atol=1e-3 * step + 1e-7)


def test_detect_compiles_with_xla_and_equals_the_plain_one(tmp_path, shapes):
    trained = modellib.MaskRCNN("training", TinyModelConfig(), tmp_path, seed=0)
    path = str(tmp_path / "weights.h5")
    trained.save_weights(path)
    images = [shapes.load_image(0), shapes.load_image(1)]
    results = {}
    for jit in (False, True):
        config = TinyModelConfig(JIT_COMPILE=jit, DETECTION_MIN_CONFIDENCE=0.0)
        model = modellib.MaskRCNN("inference", config, tmp_path)
        model.load_weights(path, by_name=True)
        assert model.keras_model.jit_compile is jit
        results[jit] = model.detect(images)
    for plain, xla in zip(results[False], results[True]):
        assert len(plain["class_ids"]) > 0
        np.testing.assert_array_equal(xla["class_ids"], plain["class_ids"])
        np.testing.assert_allclose(xla["scores"], plain["scores"], atol=1e-5)
        assert np.abs(xla["rois"] - plain["rois"]).max() <= 1  # pixels, after rounding
        disagree = np.mean(xla["masks"] != plain["masks"])
        assert disagree < 1e-3, disagree


def test_a_keras_file_saved_here_detects_the_same_with_xla(tmp_path, shapes):
    """What a GPU machine does with a network saved on this CPU: it reloads the ``.keras`` file and runs it with
    XLA (Keras's jit_compile="auto" there). The file holds the Config's layers only; the kernels and shapes
    XLA needs are chosen when that machine traces it."""
    weights = str(tmp_path / "weights.h5")
    keras.utils.set_random_seed(1)  # seeded weights whose detections have distinct scores, whatever ran before
    modellib.MaskRCNN("training", TinyModelConfig(), tmp_path, seed=0).save_weights(weights)
    model = modellib.MaskRCNN("inference", TinyModelConfig(DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    model.load_weights(weights, by_name=True)
    images = [shapes.load_image(0), shapes.load_image(1)]
    plain = model.detect(images)
    path = str(tmp_path / "network.keras")
    model.keras_model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model.keras_model)
    reloaded.jit_compile = True
    model.keras_model = reloaded
    compiled = model.detect(images)
    for got, expected in zip(compiled, plain):
        assert len(expected["class_ids"]) > 0
        # random weights give some detections equal scores, which XLA may rank in another order
        got, expected = _in_box_order(got), _in_box_order(expected)
        np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5)
        assert np.abs(got["rois"] - expected["rois"]).max() <= 1  # pixels, after rounding
        assert np.mean(got["masks"] != expected["masks"]) < 1e-3


def _in_box_order(result):
    """A detect() result with its detections sorted by score (3 decimals), then box."""
    rois = result["rois"]
    order = np.lexsort((rois[:, 3], rois[:, 2], rois[:, 1], rois[:, 0], -np.round(result["scores"], 3)))
    return {"rois": rois[order], "class_ids": result["class_ids"][order], "scores": result["scores"][order],
            "masks": result["masks"][..., order]}
