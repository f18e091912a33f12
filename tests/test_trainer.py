"""The training loop (mrcnn.trainer) without validation: val_dataset=None or VALIDATION_STEPS = 0."""

import csv
import os
import re

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


def test_data_workers_default_to_processes_above_two_cores_and_refuse_bad_counts():
    from mrcnn.trainer import data_workers

    assert data_workers(cores=1) == (1, False)
    assert data_workers(cores=2) == (2, False)  # threads: the training loop needs one of the two cores
    assert data_workers(cores=3) == (3, True)
    assert data_workers(cores=16) == (4, True)
    assert data_workers(3, False, cores=16) == (3, False)
    assert data_workers(3, True, cores=2) == (3, True)
    for bad in (0, -1, 2.5, "2", True):
        with pytest.raises(ValueError, match=re.escape(f"workers={bad!r}")):
            data_workers(bad)


from mrcnn.data.generator import _read_shared  # noqa: E402  (the original, before the test replaces it)

_SHARED_READS = []


def _recording_read_shared(path, shape, dtype):
    """mrcnn.data.generator._read_shared, counted: the training process reads a worker's array back with it."""
    _SHARED_READS.append(path)
    return _read_shared(path, shape, dtype)


def test_worker_processes_give_the_batches_one_worker_gives(tmp_path, monkeypatch):
    """Two forked worker processes (keras.utils.PyDataset's pool) train to the same weights as one thread: the
    batches are a pure function of (seed, epoch, index), whichever process loads them; every array of them
    crosses back through shared memory here, and no file of it is left behind."""
    from mrcnn.data import generator as generator_module

    monkeypatch.setattr(generator_module, "_SHARED_MIN_BYTES", 0)  # the workers fork with it
    monkeypatch.setattr(generator_module, "_read_shared", _recording_read_shared)
    _SHARED_READS.clear()
    shared = f"mrcnn-batch-{os.getpid()}-"
    data = shapes_data(4, seed=4)
    load_image = data.load_image
    loaders = tmp_path / "loaders"
    loaders.mkdir()

    def recording_load_image(image_id):  # which processes loaded images (a file each: seen across processes)
        (loaders / str(os.getpid())).touch()
        return load_image(image_id)

    data.load_image = recording_load_image
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=4, VALIDATION_STEPS=1)
    weights, initial = [], None
    for workers, processes in ((1, False), (2, True)):
        model = modellib.MaskRCNN("training", config, str(tmp_path / str(workers)), seed=0)
        if initial is None:
            initial = model.keras_model.get_weights()
        model.keras_model.set_weights(initial)
        model.train(data, data, learning_rate=0.01, epochs=1, layers="heads", workers=workers,
                    use_multiprocessing=processes, verbose=0)
        weights.append(model.keras_model.get_weights())
    assert {int(p.name) for p in loaders.iterdir()} - {os.getpid()}  # worker processes loaded images
    assert len(_SHARED_READS) >= 4 * 7  # 4 training batches of 7 arrays each, at least
    assert not [name for name in os.listdir("/dev/shm") if name.startswith(shared)]
    moved = [np.abs(a - b).max() for a, b in zip(weights[0], initial)]
    assert max(moved) > 0
    for one, two in zip(*weights):
        np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-7)
