"""Detections of a weights file on another Keras backend, for tests/test_other_backends.py.

    KERAS_BACKEND=tensorflow python tests/backend_peer.py OUT.npz [--weights IN.h5] [--save OUT.h5] [--seed S]

Builds the tests' tiny inference model (:data:`PEER_SETTINGS`), with random weights from ``--seed`` or loaded
from ``--weights``; ``--save`` writes its weights (Matterport's ``.h5`` layout); then detects on the shapes
images :func:`peer_images` draws and writes their detections to OUT.npz (``rois_i``, ``class_ids_i``,
``scores_i``, ``masks_i`` per image).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from tests.conftest import TinyModelConfig, shapes_data  # noqa: E402

# every detection slot filled (no confidence cut), so that random weights detect something to compare
PEER_SETTINGS = {"IMAGES_PER_GPU": 1, "DETECTION_MIN_CONFIDENCE": 0.0}


def peer_images():
    """Two shapes images of different sizes (detect() molds them to one square input)."""
    return [shapes_data(1, seed=11, height=96, width=160).load_image(0),
            shapes_data(1, seed=12, height=120, width=90).load_image(0)]


def detections_to_arrays(results):
    return {f"{key}_{i}": np.asarray(result[key]) for i, result in enumerate(results) for key in result}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--weights")
    parser.add_argument("--save")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import keras

    from mrcnn import model as modellib

    keras.utils.set_random_seed(args.seed)
    model = modellib.MaskRCNN("inference", TinyModelConfig(**PEER_SETTINGS), os.path.dirname(args.out))
    if args.weights:
        model.load_weights(args.weights)
    if args.save:
        model.save_weights(args.save)
    np.savez(args.out, backend=keras.backend.backend(), **detections_to_arrays(model.detect(peer_images())))


if __name__ == "__main__":
    main()
