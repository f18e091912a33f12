"""JAX and PyTorch against TensorFlow: weights saved under one backend load under the other, with the same
detections. Runs off TensorFlow only (tests/run_backends.py); TensorFlow runs in a subprocess
(tests/backend_peer.py), with TensorFlow visible to it.
"""

import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from tests.backend_peer import PEER_SETTINGS, detections_to_arrays, peer_images
from tests.conftest import TinyModelConfig, shapes_data

pytestmark = pytest.mark.off_tensorflow

PEER = os.path.join(os.path.dirname(__file__), "backend_peer.py")


def _on_tensorflow(out, *args):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    env.pop("MRCNN_TEST_HIDE_TENSORFLOW", None)
    done = subprocess.run([sys.executable, PEER, str(out), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    arrays = np.load(out)
    assert str(arrays["backend"]) == "tensorflow"
    return arrays


def _assert_same_detections(got, expected):
    """Equal detections, in any order among equal scores: classes and boxes exactly, scores to 1e-5, and masks
    differing in at most 0.1% of their pixels (mask probabilities at 0.5 within float rounding)."""
    count = 0
    for i in range(len(peer_images())):
        order_got = np.lexsort(np.c_[got[f"rois_{i}"], got[f"class_ids_{i}"]].T)
        order_expected = np.lexsort(np.c_[expected[f"rois_{i}"], expected[f"class_ids_{i}"]].T)
        for key in ("rois", "class_ids"):
            np.testing.assert_array_equal(got[f"{key}_{i}"][order_got], expected[f"{key}_{i}"][order_expected])
        np.testing.assert_allclose(got[f"scores_{i}"][order_got], expected[f"scores_{i}"][order_expected],
                                   atol=1e-5)
        masks_got = got[f"masks_{i}"][..., order_got]
        masks_expected = expected[f"masks_{i}"][..., order_expected]
        assert masks_got.shape == masks_expected.shape
        assert (masks_got != masks_expected).mean() <= 1e-3
        count += len(order_got)
    assert count > 0  # something was compared


def _layer_names(path):
    with h5py.File(path, "r") as f:
        return sorted(name for name in f.attrs["layer_names"])


def test_tensorflows_weights_detect_the_same_here(tmp_path):
    expected = _on_tensorflow(tmp_path / "tf.npz", "--save", str(tmp_path / "tf.h5"), "--seed", "3")
    model = modellib.MaskRCNN("inference", TinyModelConfig(**PEER_SETTINGS), tmp_path)
    report = model.load_weights(str(tmp_path / "tf.h5"))
    assert not report.not_in_file
    got = detections_to_arrays(model.detect(peer_images()))
    _assert_same_detections(got, expected)


def test_a_checkpoint_trained_here_detects_the_same_on_tensorflow(tmp_path):
    config = TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True)
    trainer = modellib.MaskRCNN("training", config, tmp_path, seed=1)
    trainer.train(shapes_data(4, seed=1), shapes_data(2, seed=2), learning_rate=0.01, epochs=1, layers="all",
                  workers=1, verbose=0)
    checkpoint = trainer.find_last()
    assert checkpoint.endswith("_0001.h5")
    # the same layout as TensorFlow's files: the layers a TensorFlow-saved inference model writes
    _on_tensorflow(tmp_path / "layout.npz", "--save", str(tmp_path / "tf.h5"))
    assert set(_layer_names(str(tmp_path / "tf.h5"))) <= set(_layer_names(checkpoint))
    model = modellib.MaskRCNN("inference", TinyModelConfig(**PEER_SETTINGS), tmp_path)
    model.load_weights(checkpoint)
    got = detections_to_arrays(model.detect(peer_images()))
    expected = _on_tensorflow(tmp_path / "tf.npz", "--weights", checkpoint)
    _assert_same_detections(got, expected)
    assert keras.backend.backend() in ("jax", "torch")


def test_tensorflow_is_hidden_in_these_runs():
    """tests/run_backends.py runs these tests as a user without TensorFlow: nothing imported it."""
    import importlib.util

    assert os.environ.get("MRCNN_TEST_HIDE_TENSORFLOW") == "1", "run through tests/run_backends.py"
    assert sys.modules.get("tensorflow", "absent") is None
    assert importlib.util.find_spec("tensorflow") is None
