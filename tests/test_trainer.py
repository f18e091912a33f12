"""The training loop (mrcnn.trainer) without validation: val_dataset=None or VALIDATION_STEPS = 0."""

import csv
import os

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.checkpoints import TrainingDiverged
from mrcnn.config import ConfigError
from mrcnn.losses import LOSS_NAMES
from mrcnn.precise_bn import batch_stat_layers
from tests.conftest import TinyModelConfig, shapes_data
from tests.test_precise_bn import PreciseConfig


@pytest.mark.parametrize("how", ["val_dataset=None", "VALIDATION_STEPS=0"])
def test_training_without_validation_keeps_checkpoints_csv_and_precise_bn(tmp_path, how):
    data = shapes_data(4, seed=4, height=128, width=128)
    config = PreciseConfig(STEPS_PER_EPOCH=2, **({"VALIDATION_STEPS": 0} if how == "VALIDATION_STEPS=0" else {}))
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=3)
    before = [inner.moving_mean.numpy().copy() for _, inner in batch_stat_layers(model.keras_model)]
    model.train(data, None if how == "val_dataset=None" else data, learning_rate=0.001, epochs=2, layers="all",
                workers=1, verbose=0)
    assert [os.path.basename(p) for p in modellib.checkpoints_of(model.log_dir)] == [
        "mask_rcnn_precise_0001.h5", "mask_rcnn_precise_0002.h5"]
    with open(os.path.join(model.log_dir, "training_log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert set(LOSS_NAMES) <= set(rows[0]) and not any(key.startswith("val_") for key in rows[0])
    after = [inner.moving_mean.numpy() for _, inner in batch_stat_layers(model.keras_model)]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))  # precise BN recomputed them


def test_a_diverging_run_without_validation_still_stops(tmp_path):
    data = shapes_data(2, seed=4)
    model = modellib.MaskRCNN("training", TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=3), str(tmp_path), seed=0)
    with pytest.raises(TrainingDiverged, match="training diverged"):
        model.train(data, None, learning_rate=1e30, epochs=1, layers="all", workers=1, verbose=0)
    assert not modellib.checkpoints_of(model.log_dir)  # the diverged epoch wrote no checkpoint


def test_validation_steps_must_be_a_count():
    with pytest.raises(ConfigError, match="VALIDATION_STEPS"):
        TinyModelConfig(VALIDATION_STEPS=-1)
    assert TinyModelConfig(VALIDATION_STEPS=0).VALIDATION_STEPS == 0


def test_checkpoints_to_keep_keeps_the_last_ones_and_resume_works(tmp_path):
    data = shapes_data(2, seed=4)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1, CHECKPOINTS_TO_KEEP=2)
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    model.train(data, data, learning_rate=0.001, epochs=3, layers="heads", workers=1, verbose=0)
    names = lambda: [os.path.basename(p) for p in modellib.checkpoints_of(model.log_dir)]  # noqa: E731
    assert names() == ["mask_rcnn_tinymodel_0002.h5", "mask_rcnn_tinymodel_0003.h5"]
    resumed = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    resumed.load_weights(resumed.find_last())
    assert resumed.epoch == 3
    resumed.train(data, data, learning_rate=0.001, epochs=4, layers="heads", workers=1, verbose=0)
    assert names() == ["mask_rcnn_tinymodel_0003.h5", "mask_rcnn_tinymodel_0004.h5"]
    with open(os.path.join(model.log_dir, "training_log.csv")) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2", "3"]  # the log keeps every epoch


@pytest.mark.parametrize("keep", [0, -1, 2.5, "2", True])
def test_checkpoints_to_keep_must_be_none_or_a_positive_count(keep):
    with pytest.raises(ConfigError, match="CHECKPOINTS_TO_KEEP"):
        TinyModelConfig(CHECKPOINTS_TO_KEEP=keep)
    assert TinyModelConfig().CHECKPOINTS_TO_KEEP is None  # Matterport's: every checkpoint kept


def _csv_rates(log_dir):
    with open(os.path.join(log_dir, "training_log.csv")) as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


def test_a_float_learning_rate_warms_up_over_the_runs_steps_across_train_calls(tmp_path):
    """LEARNING_RATE_WARMUP_STEPS counts the run's steps, not each train() call's: 2 steps per epoch, 4 of
    warm-up, the second call (next stage) continues it. The CSV shows the rate the optimizer has then."""
    data = shapes_data(2, seed=4)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1, LEARNING_RATE_WARMUP_STEPS=4)
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    model.train(data, data, learning_rate=0.01, epochs=1, layers="heads", workers=1, verbose=0)
    model.train(data, data, learning_rate=0.01, epochs=3, layers="heads", workers=1, verbose=0)
    factor = lambda step: 0.001 + 0.999 * min(step / 4, 1.0)  # noqa: E731
    np.testing.assert_allclose(_csv_rates(model.log_dir), [0.01 * factor(2), 0.01 * factor(4), 0.01], rtol=1e-5)


def test_a_keras_schedule_runs_on_the_global_step_across_a_resume(tmp_path):
    import keras

    data = shapes_data(2, seed=4)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.02, 0.002])  # a step decay at step 3
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    model.train(data, data, learning_rate=schedule, epochs=1, layers="heads", workers=1, verbose=0)
    resumed = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    resumed.load_weights(resumed.find_last())
    resumed.train(data, data, learning_rate=schedule, epochs=2, layers="heads", workers=1, verbose=0)
    np.testing.assert_allclose(_csv_rates(resumed.log_dir), [0.02, 0.002], rtol=1e-6)  # global steps 2 and 4
    with pytest.raises(ConfigError, match="LEARNING_RATE_WARMUP_STEPS"):
        TinyModelConfig(LEARNING_RATE_WARMUP_STEPS=-5)


def test_tensorboard_gets_the_losses_every_n_steps(tmp_path):
    """Every TENSORBOARD_EVERY_STEPS steps, each loss's mean over those steps at the run's global step: the two
    windows of an epoch average to the epoch's mean loss in the CSV."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = shapes_data(2, seed=4)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=4, VALIDATION_STEPS=1, TENSORBOARD_EVERY_STEPS=2)
    model = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    model.train(data, data, learning_rate=0.001, epochs=2, layers="heads", workers=1, verbose=0)
    events = EventAccumulator(os.path.join(model.log_dir, "train"), size_guidance={"tensors": 0})
    events.Reload()
    tags = {tag for tag in events.Tags()["tensors"] if tag.startswith("step/")}
    assert tags == {f"step/{name}" for name in ("loss",) + tuple(LOSS_NAMES)}
    points = {}
    for tag in tags:
        points[tag] = {e.step: float(np.asarray(_tensor_value(e))) for e in events.Tensors(tag)}
        assert sorted(points[tag]) == [2, 4, 6, 8]  # global steps, across epochs
    with open(os.path.join(model.log_dir, "training_log.csv")) as f:
        rows = list(csv.DictReader(f))
    for epoch, row in enumerate(rows):
        for name in ("loss",) + tuple(LOSS_NAMES):
            windows = [points[f"step/{name}"][epoch * 4 + s] for s in (2, 4)]
            np.testing.assert_allclose(np.mean(windows), float(row[name]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="TENSORBOARD_EVERY_STEPS"):
        TinyModelConfig(TENSORBOARD_EVERY_STEPS=-1)


def _tensor_value(event):
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def test_a_schedule_resumed_within_its_train_call_continues_on_the_same_steps(tmp_path):
    """A run stopped after epoch 1 of a 2-epoch call and resumed from that checkpoint (the same call: its
    optimizer state, step count included, is restored) ends on the global step the uninterrupted run ends on."""
    import keras

    data = shapes_data(2, seed=4)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=2, VALIDATION_STEPS=1)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.02, 0.002])
    whole = modellib.MaskRCNN("training", config, str(tmp_path / "whole"), seed=0)
    whole.train(data, data, learning_rate=schedule, epochs=2, layers="heads", workers=1, verbose=0)
    resumed = modellib.MaskRCNN("training", config, str(tmp_path / "whole"), seed=0)
    resumed.load_weights(modellib.checkpoints_of(whole.log_dir)[0])  # epoch 1 of the 2-epoch call
    resumed.train(data, data, learning_rate=schedule, epochs=2, layers="heads", workers=1, verbose=0)
    optimizer = resumed.keras_model.optimizer
    assert int(optimizer.iterations) == 4  # the call's steps: 2 restored, 2 taken
    np.testing.assert_allclose(_csv_rates(resumed.log_dir), _csv_rates(whole.log_dir), rtol=1e-6)
    np.testing.assert_allclose(_csv_rates(whole.log_dir), [0.02, 0.002], rtol=1e-6)
