"""Mixed precision: low-precision convolutions and heads, float32 box math, losses and stored weights.

That detections of a bfloat16 copy agree with the float32 model's is tested on trained weights, in
tests/test_learning.py (random weights give near-tied scores whose order bfloat16 reshuffles).
"""

import h5py
import keras
import numpy as np
import pytest

from mrcnn import checkpoints
from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.data.generator import DataGenerator
from mrcnn.losses import LOSS_NAMES
from tests.conftest import TinyModelConfig, shapes_data

FLOAT32_LAYERS = ("anchors", "norm_gt_boxes", "ROI", "proposal_targets", "active_class_ids", *LOSS_NAMES)


@pytest.fixture(scope="module")
def shapes():
    return shapes_data(6, seed=11)


def test_bfloat16_training_keeps_box_math_and_losses_float32_and_stores_float32(tmp_path, shapes):
    keras.utils.set_random_seed(0)
    config = TinyModelConfig(MIXED_PRECISION="mixed_bfloat16", TRAIN_ADD_GT_PROPOSALS=True)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    assert keras.config.dtype_policy().name == "float32"  # the policy was set for the build only
    keras_model = model.keras_model
    assert keras_model.get_layer("fpn_p2").compute_dtype == "bfloat16"
    assert keras_model.get_layer("mrcnn_mask_conv1").compute_dtype == "bfloat16"
    assert keras_model.get_layer("roi_align_mask").compute_dtype == "bfloat16"
    for name in FLOAT32_LAYERS:
        assert keras_model.get_layer(name).compute_dtype == "float32", name
    assert {w.dtype for w in keras_model.weights} == {"float32"}
    inputs, _ = DataGenerator(shapes, config, seed=0)[0]
    outputs = keras_model(inputs, training=True)
    assert [keras.backend.standardize_dtype(o.dtype) for o in outputs[-5:]] == ["float32"] * 5
    dtypes = [keras.backend.standardize_dtype(o.dtype) for o in outputs]
    # rpn_class, mrcnn_class (probabilities), proposals and sampled ROIs are float32; logits low
    assert [dtypes[i] for i in (1, 4, 7, 8)] == ["float32"] * 4 and dtypes[0] == "bfloat16"

    history = model.train(shapes, shapes, learning_rate=0.01, epochs=2, layers="all", verbose=0).history
    for name in LOSS_NAMES:
        assert np.isfinite(history[name]).all() and np.isfinite(history["val_" + name]).all(), name
    checkpoint = model.find_last()
    with h5py.File(checkpoint, "r") as f:
        dtypes = set()  # the weights, in Matterport's layout (the training state beside them holds counters)
        for name in f.attrs["layer_names"]:
            f[name].visititems(lambda _, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None)
        momentum = {v.dtype for k, v in checkpoints.read_state(checkpoint).optimizer.items() if k != "iterations"}
    assert dtypes == {np.dtype("float32")} and momentum == {np.dtype("float32")}
    plain = modellib.MaskRCNN("training", TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True), tmp_path / "plain")
    plain.load_weights(checkpoint)
    for a, b in zip(plain.keras_model.get_layer("mrcnn_mask").get_weights(),
                    keras_model.get_layer("mrcnn_mask").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float16_training_uses_a_loss_scale_optimizer(tmp_path, shapes):
    keras.utils.set_random_seed(0)
    config = TinyModelConfig(MIXED_PRECISION="mixed_float16", TRAIN_ADD_GT_PROPOSALS=True)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    assert model.keras_model.get_layer("fpn_p2").compute_dtype == "float16"
    model.set_trainable("all", verbose=0)
    model.compile(0.01, 0.9)
    assert isinstance(model.keras_model.optimizer, keras.optimizers.LossScaleOptimizer)
    inputs, _ = DataGenerator(shapes, config, seed=0)[0]
    logs = [model.keras_model.train_on_batch(inputs, return_dict=True) for _ in range(3)]
    assert all(np.isfinite(log[name]) for log in logs for name in LOSS_NAMES)
    assert all(np.isfinite(w).all() for w in model.keras_model.get_weights())


def test_bfloat16_inference_detects_with_float32_boxes(tmp_path, shapes):
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("inference", TinyModelConfig(MIXED_PRECISION="mixed_bfloat16",
                                                          DETECTION_MIN_CONFIDENCE=0.0), tmp_path)
    assert model.keras_model.get_layer("mrcnn_detection").compute_dtype == "float32"
    image = shapes.load_image(0)
    out = model.run_graph([image], [("detections", "mrcnn_detection"), ("proposals", "ROI")])
    assert out["detections"].dtype == np.float32 and out["proposals"].dtype == np.float32
    result = model.detect([image])[0]
    n = len(result["class_ids"])
    assert result["rois"].shape == (n, 4) and result["rois"].dtype == np.int32
    assert result["scores"].dtype == np.float32 and result["masks"].shape == image.shape[:2] + (n,)


@pytest.mark.parametrize("value", ["float16", "bf16", True, "mixed_float32"])
def test_unknown_precision_is_a_clear_error(value):
    with pytest.raises(ConfigError, match="MIXED_PRECISION"):
        TinyModelConfig(MIXED_PRECISION=value)
