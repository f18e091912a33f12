"""MaskRCNN facade: layer names, presets, training logs, checkpoints and resume, detect."""

import csv
import importlib.util
import logging
import os
import re

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.config import Config
from mrcnn.data.generator import DataGenerator
from mrcnn.losses import LOSS_NAMES
from tests.conftest import TinyModelConfig, shapes_data

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                         "matterport_coco_layer_names.txt")


class Resnet101Config(Config):
    NAME = "coco"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 256


def _reference_names():
    if os.path.isfile(REFERENCE):
        with open(REFERENCE) as f:
            return [line.strip() for line in f if line.strip()]
    return None


WEIGHT_LAYER = re.compile(
    r"conv1|bn_conv1|(res|bn)\d[a-z]_branch(1|2[abc])|fpn_c\dp\d|fpn_p[2-5]|rpn_model|"
    r"mrcnn_(class_conv\d|class_bn\d|mask_conv\d|mask_bn\d|bbox_fc|mask_deconv|class_logits|mask)")


def test_resnet101_layer_names_are_matterports():
    model = modellib.MaskRCNN("training", Resnet101Config(), "unused").keras_model
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert len(weighted) == 216 + 1 + 6 + 10  # backbone + FPN, rpn_model, classifier, mask head
    assert [layer.name for layer in model.get_layer("rpn_model").layers if layer.weights] == [
        "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
    for name in ("rpn_class_logits", "ROI", "proposal_targets", "output_rois", *LOSS_NAMES):
        assert model.get_layer(name) is not None
    reference = _reference_names()
    if reference is not None:  # shared/ sits beside the checkout, here and in CI
        assert len(reference) == 406
        assert sorted(n for n in reference if WEIGHT_LAYER.fullmatch(n)) == sorted(weighted)


@pytest.fixture(scope="module")
def shapes():
    return shapes_data(12, seed=7)


@pytest.mark.all_backends
def test_layer_presets_select_matterports_layers(tmp_path):
    model = modellib.MaskRCNN("training", TinyModelConfig(), tmp_path)
    heads = set(model.set_trainable("heads", verbose=0))
    assert "mrcnn_class_logits" in heads and "fpn_c5p5" in heads and "rpn_conv_shared" in heads
    assert not any(n.startswith(("res", "bn")) for n in heads)
    assert model.keras_model.get_layer("rpn_model").trainable
    four = set(model.set_trainable("4+", verbose=0))
    assert {"res4_tiny_a", "bn5_tiny_b", "mrcnn_mask"} <= four and "res3_tiny_a" not in four
    everything = set(model.set_trainable("all", verbose=0))
    assert {"res1_tiny_a", "bn1_tiny_a"} <= everything
    assert set(model.set_trainable(r"mrcnn\_mask.*", verbose=0)) == {
        f"mrcnn_mask_conv{i}" for i in range(1, 5)} | {f"mrcnn_mask_bn{i}" for i in range(1, 5)} | {
        "mrcnn_mask_deconv", "mrcnn_mask"}


@pytest.mark.all_backends
def test_no_objects_gives_zero_box_and_mask_loss(tmp_path, shapes):
    model = modellib.MaskRCNN("training", TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True), tmp_path, seed=0)
    inputs, _ = DataGenerator(shapes, model.config, seed=0)[0]
    outputs = model.keras_model(inputs, training=True)
    losses = dict(zip(LOSS_NAMES, (float(v) for v in outputs[-5:])))
    assert losses["mrcnn_bbox_loss"] > 0 and losses["mrcnn_mask_loss"] > 0
    inputs[4][:] = 0  # no ground-truth instance
    inputs[5][:] = 0
    inputs[6][:] = False
    outputs = model.keras_model(inputs, training=True)
    losses = dict(zip(LOSS_NAMES, (float(v) for v in outputs[-5:])))
    assert losses["mrcnn_bbox_loss"] == 0.0 and losses["mrcnn_mask_loss"] == 0.0
    assert all(np.isfinite(v) for v in losses.values())


@pytest.mark.all_backends
def test_training_logs_checkpoints_and_resume(tmp_path, shapes, caplog):
    config = TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    before = model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0].copy()
    model.train(shapes, shapes, learning_rate=0.01, epochs=2, layers="heads", verbose=0)
    after = model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0]
    assert not np.allclose(before, after)  # heads trained
    run = model.log_dir
    assert sorted(f for f in os.listdir(run) if f.endswith(".h5")) == [
        "mask_rcnn_tinymodel_0001.h5", "mask_rcnn_tinymodel_0002.h5"]
    events = any(f.startswith("events") for _, _, files in os.walk(run) for f in files)
    # TensorBoard's events where its writer (TensorFlow) is importable, else one notice (tests/run_backends.py)
    assert events if importlib.util.find_spec("tensorflow") else "TensorBoard logging is off" in caplog.text
    with open(os.path.join(run, "training_log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for name in LOSS_NAMES:
        assert all(np.isfinite(float(r[name])) and np.isfinite(float(r["val_" + name])) for r in rows)

    # A partial write (what a killed process could leave) is never picked
    open(os.path.join(run, ".tmp-abc.h5"), "wb").close()
    last = model.find_last()
    assert last == os.path.join(run, "mask_rcnn_tinymodel_0002.h5")

    resumed = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    with caplog.at_level(logging.INFO, logger="mrcnn.model"):
        resumed.load_weights(last)
    assert resumed.epoch == 2 and resumed.log_dir == run and "Re-starting from epoch 2" in caplog.text
    assert [r["epoch"] for r in resumed.history] == [0, 1]  # the CSV's rows travel in the checkpoint
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mrcnn.model"):  # loading to detect is not resuming
        modellib.MaskRCNN("inference", config, tmp_path).load_weights(last)
    assert "Re-starting" not in caplog.text
    resumed.train(shapes, shapes, learning_rate=0.01, epochs=3, layers="all", verbose=0)
    assert os.path.isfile(os.path.join(run, "mask_rcnn_tinymodel_0003.h5"))
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]  # the partial write was cleaned up
    with open(os.path.join(run, "training_log.csv")) as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]


@pytest.mark.all_backends
def test_find_last_without_checkpoints_is_a_clear_error(tmp_path):
    model = modellib.MaskRCNN("inference", TinyModelConfig(), tmp_path)
    with pytest.raises(FileNotFoundError, match="tinymodel"):
        model.find_last()


@pytest.mark.all_backends
def test_detect_any_number_of_images_of_any_size(tmp_path, shapes):
    config = TinyModelConfig(IMAGES_PER_GPU=2, DETECTION_MIN_CONFIDENCE=0.0)
    model = modellib.MaskRCNN("inference", config, tmp_path)
    rng = np.random.default_rng(0)
    images = [
        shapes.load_image(0),                                      # RGB
        rng.integers(0, 255, (40, 700), dtype=np.uint8),           # grayscale, very wide
        rng.integers(0, 255, (30, 30, 4), dtype=np.uint8),         # RGBA
        rng.integers(0, 255, (5, 7, 3), dtype=np.uint8),           # tiny
        rng.random((90, 60, 1)).astype(np.float32),                # float, one channel
    ]
    results = model.detect(images)
    assert len(results) == 5
    for image, result in zip(images, results):
        n = len(result["class_ids"])
        assert result["rois"].shape == (n, 4) and result["scores"].shape == (n,)
        assert result["masks"].shape == image.shape[:2] + (n,) and result["masks"].dtype == bool
        assert ((result["class_ids"] >= 1) & (result["class_ids"] < config.NUM_CLASSES)).all()
        if n:
            assert (result["rois"][:, 2] <= image.shape[0]).all() and (result["rois"][:, 3] <= image.shape[1]).all()
    with pytest.raises(ValueError, match=r"has 5 channels .*expected 1, 3 or 4"):
        model.detect([np.zeros((8, 8, 5))])


@pytest.mark.all_backends
def test_run_graph_returns_named_intermediate_outputs(tmp_path, shapes):
    model = modellib.MaskRCNN("inference", TinyModelConfig(IMAGES_PER_GPU=1), tmp_path)
    out = model.run_graph([shapes.load_image(1)], [("proposals", "ROI"), ("detections", "mrcnn_detection"),
                                                   ("p2", "fpn_p2")])
    assert list(out) == ["proposals", "detections", "p2"]
    assert out["proposals"].shape == (1, 50, 4) and out["detections"].shape == (1, 8, 6)
    assert out["p2"].shape == (1, 32, 32, 32)


@pytest.mark.all_backends
def test_run_graph_in_training_mode_returns_multi_output_layers(tmp_path, shapes):
    config = TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True, IMAGES_PER_GPU=1)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    inputs, _ = DataGenerator(shapes, config, seed=0)[0]
    out = model.run_graph(inputs, [("targets", "proposal_targets"), ("rois", "output_rois")])
    rois, class_ids, deltas, masks = out["targets"]
    assert rois.shape == (1, 16, 4) and class_ids.shape == (1, 16) and masks.shape == (1, 16, 28, 28)
    np.testing.assert_array_equal(out["rois"], rois)
    assert (class_ids > 0).any()  # the ground-truth boxes join the proposals


@pytest.mark.all_backends
def test_gradients_are_clipped_by_their_global_norm_as_in_matterport(tmp_path):
    import keras

    model = modellib.MaskRCNN("training", TinyModelConfig(GRADIENT_CLIP_NORM=5.0), tmp_path)
    model.compile(learning_rate=1.0, momentum=0.0)
    compiled = model.keras_model.optimizer  # built for the model's variables: the same settings, for these
    optimizer = type(compiled).from_config(compiled.get_config())
    variables = [keras.Variable(np.zeros(2, np.float32)), keras.Variable(np.zeros(2, np.float32))]
    grads = [np.array([30.0, 40.0], np.float32), np.array([6.0, 8.0], np.float32)]  # norms 50 and 10
    optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
    scale = 5.0 / np.sqrt(50.0**2 + 10.0**2)  # one factor for the whole set, not 5/50 and 5/10
    for grad, variable in zip(grads, variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), -grad * scale, rtol=1e-5)
    # under the bound: untouched
    for variable in variables:
        variable.assign(np.zeros(2, np.float32))
    optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(np.array([0.3, 0.4], np.float32)),
                                   keras.ops.zeros(2)], variables))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variables[0]), [-0.3, -0.4], rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_mask_head_on_positive_slots_gives_matterports_losses_and_masks(tmp_path, shapes, jit):
    """The training graph with the mask head on the positive slots only (the default) against Matterport's,
    which ran it on every sampled ROI: same weights, same batch, the same sample (same seed), the same five
    losses and mask-loss gradients, and the same mrcnn_mask on the positive slots, zeros after them (after the
    most positives an image of the batch has, without XLA; after int(ROIs * positive ratio) slots with it)."""
    import tensorflow as tf

    from mrcnn import ops as mops

    settings = {"TRAIN_ADD_GT_PROPOSALS": True, "IMAGES_PER_GPU": 2, "TRAIN_ROIS_PER_IMAGE": 24,
                "JIT_COMPILE": jit}
    config = TinyModelConfig(**settings)
    slots = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
    inputs = [tf.constant(x) for x in DataGenerator(shapes, config, seed=0)[0][0]]
    results, reference = [], None
    for positives_only in (False, True):
        model = modellib.MaskRCNN("training", TinyModelConfig(MASK_HEAD_POSITIVES_ONLY=positives_only, **settings),
                                  tmp_path, seed=0)
        if reference is None:
            reference = model.keras_model
        else:  # the first model's weights, layer by layer
            for layer in model.keras_model.layers:
                if layer.weights:
                    layer.set_weights(reference.get_layer(layer.name).get_weights())
        mask_weights = model.keras_model.get_layer("mrcnn_mask_conv1").trainable_weights
        with mops.tracing(jit), tf.GradientTape() as tape:  # as the training step traces it
            outputs = model.keras_model(inputs, training=True)
        gradient = tape.gradient(outputs[-1], mask_weights)[0].numpy()  # of the mask loss
        results.append(([o.numpy() for o in outputs], gradient))
    (full, full_gradient), (positive, positive_gradient) = results
    assert "positive_slots_rois" in [layer.name for layer in model.keras_model.layers]
    np.testing.assert_array_equal(positive[8], full[8])  # output_rois: the same sample
    for got, expected in zip(positive[-5:], full[-5:]):  # the five losses
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert float(full[-1]) > 0  # positives were sampled: the mask loss is real
    assert np.abs(full_gradient).max() > 0
    np.testing.assert_allclose(positive_gradient, full_gradient, rtol=1e-4, atol=1e-6)
    assert positive[6].shape == full[6].shape == (2, config.TRAIN_ROIS_PER_IMAGE, 28, 28, config.NUM_CLASSES)
    computed = int(np.flatnonzero(positive[6].any(axis=(0, 2, 3, 4))).max()) + 1  # slots the head ran on
    assert computed == slots if jit else 1 <= computed < slots
    np.testing.assert_allclose(positive[6][:, :computed], full[6][:, :computed], rtol=1e-5, atol=1e-6)
    assert not positive[6][:, computed:].any()  # (the equal mask losses say every positive was computed)


@pytest.mark.all_backends
def test_a_second_train_call_with_the_same_layers_reuses_the_traced_step(tmp_path, shapes):
    """Matterport users call train() once per stage; a call training the same layers as the last keeps the
    compiled step and resets the optimizer as a new one would start: the weights come out as with a fresh
    compile. Other layers compile anew."""
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=2)
    weights, functions, initial = [], [], None
    for reuse in (True, False):
        model = modellib.MaskRCNN("training", config, tmp_path / str(reuse), seed=0)
        if initial is None:
            initial = model.keras_model.get_weights()
        model.keras_model.set_weights(initial)
        model.train(shapes, shapes, learning_rate=0.02, epochs=1, layers="heads", workers=1, verbose=0)
        first = model.keras_model.train_function
        if not reuse:
            model._compiled_trainable = None  # what compile() does: forget, compile again
        model.train(shapes, shapes, learning_rate=0.005, epochs=2, layers="heads", workers=1, verbose=0)
        functions.append((first, model.keras_model.train_function))
        optimizer = model.keras_model.optimizer
        assert float(optimizer.learning_rate) == pytest.approx(0.005)
        assert int(optimizer.iterations) == config.STEPS_PER_EPOCH  # counted from 0 again
        weights.append(model.keras_model.get_weights())
    assert functions[0][1] is functions[0][0]  # reused
    assert functions[1][1] is not functions[1][0]  # compiled again
    for reused, fresh in zip(*weights):
        np.testing.assert_allclose(reused, fresh, rtol=1e-5, atol=1e-6)
    model.train(shapes, shapes, learning_rate=0.005, epochs=3, layers="all", workers=1, verbose=0)
    assert model.keras_model.train_function is not functions[1][1]  # other layers: compiled anew


def test_inference_mask_head_on_the_detections_there_are(tmp_path, shapes):
    """Traced without XLA, the inference mask head runs only on the detections there are: the same detections
    and masks as the same model traced for XLA (fixed shapes, every slot computed), and zeros after them. One
    model, one saved form: the choice is made when the graph is traced."""
    import keras

    from mrcnn import ops as mops

    settings = {"IMAGES_PER_GPU": 2, "DETECTION_MIN_CONFIDENCE": 0.8, "DETECTION_MAX_INSTANCES": 50}
    config = TinyModelConfig(**settings)
    keras.utils.set_random_seed(3)  # weights whose detections fill some slots, not all, whatever ran before
    model = modellib.MaskRCNN("inference", config, tmp_path)
    molded, metas, _ = model.mold_inputs([shapes.load_image(0), shapes.load_image(1)])
    inputs = [np.asarray(molded, np.float32), np.asarray(metas, np.float32)]
    got = [np.asarray(o) for o in model.keras_model(inputs)]
    with mops.tracing(True):  # XLA's graph, called on a CPU
        expected = [np.asarray(o) for o in model.keras_model(inputs)]
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)  # detections
    counts = (got[0][..., 4] > 0).sum(axis=1)
    assert counts.max() > 0 and got[3].shape == expected[3].shape == (2, config.DETECTION_MAX_INSTANCES, 28, 28,
                                                                       config.NUM_CLASSES)
    for b, n in enumerate(counts):
        np.testing.assert_allclose(got[3][b, :n], expected[3][b, :n], rtol=1e-4, atol=1e-5)
    assert counts.max() < config.DETECTION_MAX_INSTANCES and not got[3][:, counts.max():].any()
    assert expected[3][:, counts.max():].any()  # the fixed-shape graph ran the head on the empty slots too


@pytest.mark.all_backends
def test_tensorboard_is_optional(tmp_path, monkeypatch, caplog):
    import importlib.util

    import keras

    from mrcnn.training import tensorboard_callback

    callback = tensorboard_callback(str(tmp_path))
    if importlib.util.find_spec("tensorflow") is not None:  # (hidden by tests/run_backends.py)
        assert isinstance(callback, keras.callbacks.TensorBoard)
    else:
        assert callback is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    with caplog.at_level("WARNING"):
        assert tensorboard_callback(str(tmp_path)) is None
    assert "TensorBoard logging is off" in caplog.text and "training_log.csv" in caplog.text
