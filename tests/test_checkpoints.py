"""mrcnn.checkpoints: the training state stored with each checkpoint, the CSV, temporary files."""

import csv

import keras
import numpy as np
import pytest

from mrcnn import checkpoints
from mrcnn.training import SGD
from mrcnn.weights import load_weights, save_weights

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def _model():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="dense_a")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="dense_b")(x))


def _fit(model, optimizer, steps=3):
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model.fit(x, x[:, :1], batch_size=8, epochs=steps, verbose=0)


@pytest.mark.parametrize("loss_scale", [False, True])
def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path, loss_scale):
    wrap = keras.optimizers.LossScaleOptimizer if loss_scale else (lambda o: o)
    model = _model()
    _fit(model, wrap(SGD(learning_rate=0.1, momentum=0.9)))
    state = checkpoints.TrainingState(
        epoch=3, seed=7, train_call={"layers": "all", "learning_rate": 0.1, "epochs": 5},
        history=[{"epoch": 0, "loss": 1.5}],
        optimizer=checkpoints.optimizer_state(model.optimizer, model.trainable_variables))
    assert int(state.optimizer["iterations"]) == 3
    assert {k for k in state.optimizer if k.startswith("momentum:")} == {
        "momentum:dense_a/kernel", "momentum:dense_a/bias", "momentum:dense_b/kernel", "momentum:dense_b/bias"}
    assert any(k.startswith("loss_scale:") for k in state.optimizer) == loss_scale
    path = tmp_path / "mask_rcnn_x_0003.h5"
    save_weights(model, path, extra=lambda f: checkpoints.write_state(f, state))

    restored = _model()
    load_weights(restored, path)  # the extra group does not disturb Matterport's layout
    read = checkpoints.read_state(path)
    assert read.epoch == 3 and read.seed == 7 and read.train_call == state.train_call
    assert read.history == [{"epoch": 0, "loss": 1.5}]
    optimizer = wrap(SGD(learning_rate=0.1, momentum=0.9))
    assert checkpoints.restore_optimizer(optimizer, restored.trainable_variables, read.optimizer) == 4
    assert checkpoints.optimizer_state(optimizer, restored.trainable_variables).keys() == state.optimizer.keys()
    for key, value in checkpoints.optimizer_state(optimizer, restored.trainable_variables).items():
        np.testing.assert_array_equal(value, state.optimizer[key], err_msg=key)
    # the restored optimizer takes the step the original would have taken
    _fit(model, model.optimizer, steps=1)
    restored.compile(optimizer=optimizer, loss="mse")
    _fit(restored, optimizer, steps=1)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weights_without_a_training_state(tmp_path):
    path = tmp_path / "plain.h5"
    save_weights(_model(), path)
    assert checkpoints.read_state(path) is None
    assert checkpoints.read_state(tmp_path / "missing.h5") is None


def test_csv_is_rewritten_whole_and_debris_cleaned(tmp_path):
    history = [{"epoch": 0, "loss": 2.0, "val_loss": 3.0}, {"epoch": 1, "loss": 1.0, "val_loss": 2.5}]
    path = tmp_path / "training_log.csv"
    checkpoints.write_csv(path, history)
    checkpoints.write_csv(path, history)  # again: the same file, never appended twice
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"] and list(rows[0]) == ["epoch", "loss", "val_loss"]
    (tmp_path / ".tmp-abc.h5").write_bytes(b"partial")
    (tmp_path / ".tmp-def.txt").write_text("epoch,lo")
    assert checkpoints.clean_debris(tmp_path) == [".tmp-abc.h5", ".tmp-def.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_log.csv"]


def test_non_finite_weights_are_named():
    model = _model()
    assert checkpoints.non_finite_weights(model) == []
    kernel = model.get_layer("dense_b").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    assert checkpoints.non_finite_weights(model) == ["dense_b/kernel"]
