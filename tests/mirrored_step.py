"""Run by tests/test_distribute.py in a fresh process (logical devices must be set before TensorFlow starts).

One training step (MaskRCNN.train, one epoch of one step) on one device with IMAGES_PER_GPU=2, and on two
logical CPU devices with GPU_COUNT=2, IMAGES_PER_GPU=1, from the same weights on the same global batch.
Writes losses and weights of both to the .npz given as the only argument.
"""

import os
import sys

os.environ["MRCNN_REPLICA_DEVICE"] = "CPU"

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mrcnn import model as modellib  # noqa: E402
from mrcnn.losses import LOSS_NAMES  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402
from tests.conftest import TinyModelConfig  # noqa: E402
from tests.test_xla import DETERMINISTIC_SAMPLING  # noqa: E402


def main(out, logs):
    dataset = ShapesDataset()
    dataset.load_shapes(6, 96, 160, seed=5)
    dataset.prepare()
    keras.utils.set_random_seed(1)
    settings = dict(DETERMINISTIC_SAMPLING, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)
    weights = None
    result = {}
    for name, overrides in (("single", dict(IMAGES_PER_GPU=2)), ("mirrored", dict(IMAGES_PER_GPU=1, GPU_COUNT=2))):
        config = TinyModelConfig(**settings, **overrides)
        assert config.BATCH_SIZE == 2
        model = modellib.MaskRCNN("training", config, os.path.join(logs, name), seed=0)
        assert (model.strategy is None) == (name == "single")
        if name == "mirrored":
            assert model.strategy.num_replicas_in_sync == 2
        if weights is None:
            weights = model.keras_model.get_weights()
        else:
            model.keras_model.set_weights(weights)
        history = model.train(dataset, dataset, learning_rate=0.01, epochs=1, layers="all", workers=1,
                              verbose=0).history
        result.update({f"{name}/{loss}": history[loss][0] for loss in LOSS_NAMES + ("loss",)})
        result.update({f"{name}/val_{loss}": history["val_" + loss][0] for loss in LOSS_NAMES})
        result.update({f"{name}/weight{i}": w for i, w in enumerate(model.keras_model.get_weights())})
        result[f"{name}/files"] = np.array(sorted(os.listdir(model.log_dir)))
    result.update({f"initial/weight{i}": w for i, w in enumerate(weights)})
    np.savez(out, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
