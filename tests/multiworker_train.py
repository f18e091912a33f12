"""One worker of tests/test_distribute.py's loopback cluster: ``cityscapes.py train`` with TF_CONFIG set by
the test, then this worker's final trainable weights written to the .npz given as the first argument (the rest are
the command line of cityscapes.py)."""

import os
import sys

os.environ["MRCNN_REPLICA_DEVICE"] = "CPU"  # no GPU here: one CPU replica per worker

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from samples.cityscapes import cityscapes  # noqa: E402


def main(out, argv):
    keras.config.disable_traceback_filtering()  # a failing worker shows where
    model = cityscapes.run_train(cityscapes.parse_args(argv))
    # trainable weights: batch-norm moving statistics (TRAIN_BN) are each worker's own, as on several GPUs
    np.savez(out, *[keras.ops.convert_to_numpy(w) for w in model.keras_model.trainable_weights])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
