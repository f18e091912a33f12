"""mrcnn.training.SGD and MaskRCNN.compile: Keras's momentum SGD (its own update), built before the first step
so that TensorFlow traces the training step once."""

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.data.generator import DataGenerator, model_inputs
from mrcnn.training import SGD
from tests.conftest import TinyModelConfig, shapes_data


def _train(optimizer, steps, jit_compile=False):
    rng = np.random.default_rng(0)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, name="b")(keras.layers.Dense(4, name="a")(inputs))
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.normal(size=(16, 3)).astype(np.float32)
    for step in range(steps):
        model.train_on_batch(x[step % 2::2], y[step % 2::2])
    return model.get_weights(), [np.asarray(v) for v in optimizer.variables[1:]]


@pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_sgd_takes_keras_steps(nesterov, jit_compile):
    """Weights and momentum slots after 5 steps equal Keras's SGD's (the reference: its six-op update)."""
    if jit_compile and keras.backend.backend() == "torch":
        jit_compile = False  # torch.compile is not what this checks
    got = _train(SGD(learning_rate=0.05, momentum=0.9, nesterov=nesterov), 5, jit_compile)
    expected = _train(keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=nesterov), 5, jit_compile)
    moved = _train(SGD(learning_rate=0.05, momentum=0.9, nesterov=nesterov), 0)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(np.abs(a - s).max() > 1e-3 for a, s in zip(got[0], moved[0]))  # the steps moved the weights


@pytest.mark.all_backends
def test_compile_builds_the_optimizer_and_the_step_is_traced_once(tmp_path):
    """Keras builds an optimizer in the first traced step when no tf.distribute strategy is set; a variable
    created there makes TensorFlow trace the step a second time (about 12 of a ResNet-50's first 28 s)."""
    config = TinyModelConfig(IMAGES_PER_GPU=1)
    model = modellib.MaskRCNN("training", config, tmp_path, seed=0)
    model.compile(0.01, 0.9)
    optimizer = model.keras_model.optimizer
    assert optimizer.built
    assert len(optimizer.variables) == 2 + len(model.keras_model.trainable_variables)  # step, lr, momenta
    traces = []
    train_step = model.keras_model.train_step
    model.keras_model.train_step = lambda *args: traces.append(1) or train_step(*args)
    inputs = tuple(model_inputs(DataGenerator(shapes_data(2, 0), config, seed=0)[0][0]))
    before = [np.asarray(w) for w in model.keras_model.trainable_weights]
    for _ in range(2):
        model.keras_model.train_on_batch(inputs)
    after = [np.asarray(w) for w in model.keras_model.trainable_weights]
    assert int(optimizer.iterations) == 2 and any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    if keras.backend.backend() == "tensorflow":
        assert len(traces) == 1  # traced once, then the traced step runs; before: twice
    else:
        assert len(traces) >= 1
