"""Precise BN: moving statistics recomputed from training batches with the current weights."""

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.backbone import BatchNorm
from mrcnn.checkpoints import seed_generator_states
from mrcnn.data.generator import DataGenerator
from mrcnn.precise_bn import BatchNormRecalibrator, batch_stat_layers
from tests.conftest import TinyModelConfig, shapes_data

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def _small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = BatchNorm(True, name="bn_a")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", name="conv_b")(x)
    x = BatchNorm(True, name="bn_b")(x)
    frozen = BatchNorm(False, name="bn_frozen")(x)
    return keras.Model(inputs, frozen)


def _numpy_forward(model, x):
    """bn_a and bn_b inputs, normalizing by batch statistics as a training step does (NumPy reference)."""
    import scipy.signal

    def conv(x, layer):
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        for b in range(x.shape[0]):
            for o in range(kernel.shape[-1]):
                for c in range(x.shape[-1]):
                    # correlation, as Conv2D computes it
                    out[b, :, :, o] += scipy.signal.correlate2d(padded[b, :, :, c], kernel[:, :, c, o], "valid")
        return out + bias

    def batch_norm(x, layer):
        gamma, beta = (np.asarray(w, np.float64) for w in layer.get_weights()[:2])
        mean, var = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).var(0)
        return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    a = conv(x, model.get_layer("conv_a"))
    h = np.maximum(batch_norm(a, model.get_layer("bn_a")), 0)
    return a, conv(h, model.get_layer("conv_b"))


def test_statistics_are_the_mean_of_the_batch_statistics():
    model = _small_model()
    for layer in model.layers:   # moving averages far from the truth, gamma/beta not the identity
        if isinstance(layer, BatchNorm):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 7.0, "float32"))
            layer.gamma.assign(np.linspace(0.5, 2, layer.gamma.shape[0]).astype("float32"))
            layer.beta.assign(np.linspace(-1, 1, layer.beta.shape[0]).astype("float32"))
    frozen_before = model.get_layer("bn_frozen").moving_mean.numpy().copy()
    rng = np.random.default_rng(0)
    batches = [rng.normal(1.0, 2.0, size=(4, 6, 6, 3)).astype("float32") for _ in range(3)]
    assert [inner.name for _, inner in batch_stat_layers(model)] == ["bn_a", "bn_b"]
    assert BatchNormRecalibrator(model)([(b,) for b in batches]) == 2
    for index, name in enumerate(["bn_a", "bn_b"]):
        inputs = [_numpy_forward(model, b.astype(np.float64))[index] for b in batches]
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(),
                                   np.mean([x.reshape(-1, x.shape[-1]).mean(0) for x in inputs], axis=0),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(),
                                   np.mean([x.reshape(-1, x.shape[-1]).var(0) for x in inputs], axis=0),
                                   rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model.get_layer("bn_frozen").moving_mean.numpy(), frozen_before)


def test_one_batch_makes_inference_equal_training_on_it():
    model = _small_model()
    x = np.random.default_rng(1).normal(3.0, 1.0, size=(4, 6, 6, 3)).astype("float32")
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(keras.ops.convert_to_numpy(model(x, training=False)), training, atol=1e-2)
    BatchNormRecalibrator(model)([(x,)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), training, atol=1e-4)


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        BatchNormRecalibrator(_small_model())([])


class PreciseConfig(TinyModelConfig):
    NAME = "precise"
    TRAIN_BN = True
    PRECISE_BN_BATCHES = 2
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


def test_train_recalibrates_before_the_checkpoint(tmp_path):
    data = shapes_data(6, seed=4, height=128, width=128)
    config = PreciseConfig()
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=3)
    model.train(data, data, learning_rate=0.001, epochs=1, layers="all", verbose=0)
    layers = batch_stat_layers(model.keras_model)
    assert layers, "the tiny backbone's batch norms use batch statistics"
    stats = [(inner.moving_mean.numpy().copy(), inner.moving_variance.numpy().copy()) for _, inner in layers]
    # The same batches (train() builds them with seed offset 2) with the same weights give the same statistics,
    # and recomputing leaves the ROI sampling's random state as it was.
    seeds = seed_generator_states(model.keras_model)
    batches = DataGenerator(data, config, shuffle=True, steps=2, seed=3 + 2, workers=1)
    BatchNormRecalibrator(model.keras_model)(batches[i][0] for i in range(2))
    for (_, inner), (mean, var) in zip(layers, stats):
        np.testing.assert_allclose(inner.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(inner.moving_variance.numpy(), var, rtol=1e-4, atol=1e-5)
    after = seed_generator_states(model.keras_model)
    assert seeds.keys() == after.keys() and all(np.array_equal(seeds[k], after[k]) for k in seeds)
    # and they are what the checkpoint holds
    restored = modellib.MaskRCNN("training", config, str(tmp_path), seed=9)
    restored.load_weights(model.find_last(), by_name=True)
    for (_, inner), (mean, _) in zip(batch_stat_layers(restored.keras_model), stats):
        np.testing.assert_allclose(inner.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)


def test_config_checks_precise_bn_batches():
    from mrcnn.config import ConfigError

    with pytest.raises(ConfigError, match="PRECISE_BN_BATCHES"):
        TinyModelConfig(PRECISE_BN_BATCHES=-1)
    assert TinyModelConfig().PRECISE_BN_BATCHES == 0


def test_positive_slots_keep_one_slot_for_a_batch_without_positives():
    """TRAIN_BN + MASK_HEAD_POSITIVES_ONLY: an empty mask-head input gave NaN batch statistics and gradients."""
    from mrcnn import ops as mops
    from mrcnn.layers.wiring import FirstRois

    x = np.arange(2 * 5 * 3, dtype="float32").reshape(2, 5, 3)
    layer = FirstRois(4)
    none = keras.ops.convert_to_numpy(layer(x, np.zeros((2, 5), "int32")))
    some = keras.ops.convert_to_numpy(layer(x, np.array([[3, 1, 0, 0, 0], [2, 0, 0, 0, 0]], "int32")))
    if mops.static_shapes():  # JAX and PyTorch: fixed shapes, every slot
        np.testing.assert_array_equal(none, x[:, :4])
        np.testing.assert_array_equal(some, x[:, :4])
        none = none[:, :1]
    else:  # TensorFlow without XLA: as many slots as the most positives, at least one
        np.testing.assert_array_equal(none, x[:, :1])
        np.testing.assert_array_equal(some, x[:, :2])
    with mops.tracing(True):  # traced for XLA: fixed shapes, every slot
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, np.zeros((2, 5), "int32"))), x[:, :4])
    bn = keras.layers.BatchNormalization()
    with_grads = keras.ops.convert_to_numpy(bn(none, training=True))
    assert np.isfinite(with_grads).all() and np.isfinite(keras.ops.convert_to_numpy(bn.moving_mean)).all()
