"""Weights in Keras 2's HDF5 layout: a Matterport-style fixture, checkpoints, errors."""

import h5py
import numpy as np
import pytest

from mrcnn.graph import build_inference_model, build_training_model
from mrcnn.weights import WeightsFileError, WeightsMismatchError, load_weights, save_weights
from tests.conftest import TinyModelConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

HEADS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]


def write_matterport_layout(path, model, rng):
    """Write random weights for ``model`` exactly as Keras 2's save_weights laid them out.

    Root attribute layer_names lists every layer (weightless ones too, with empty weight_names);
    each layer's group lists weight_names and holds the datasets under those names; the nested
    rpn_model holds all its inner layers' weights. Returns {layer_name: [arrays]}.
    """
    stored = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers], dtype="S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.3"
        for layer in model.layers:
            group = f.create_group(layer.name)
            if hasattr(layer, "layers"):  # nested model: inner layer names
                names = [f"{inner.name}/{w.name}:0" for inner in layer.layers for w in inner.weights]
            else:
                names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            arrays = [rng.normal(size=tuple(w.shape)).astype(np.float32) for w in layer.weights]
            for name, array in zip(names, arrays):
                group.create_dataset(name, data=array)
            if arrays:
                stored[layer.name] = arrays
    return stored


@pytest.fixture(scope="module")
def models():
    coco_like = build_training_model(TinyModelConfig(NUM_CLASSES=81))
    ours = build_training_model(TinyModelConfig())
    inference = build_inference_model(TinyModelConfig())
    return coco_like, ours, inference


def _weights_of(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def test_matterport_layout_loads_by_name_with_heads_excluded(models, tmp_path):
    coco_like, ours, _ = models
    path = tmp_path / "mask_rcnn_coco_like.h5"
    stored = write_matterport_layout(path, coco_like, np.random.default_rng(0))
    before = _weights_of(ours, "mrcnn_mask")
    report = load_weights(ours, path, by_name=True, exclude=HEADS)
    assert set(report.not_in_file) == set() and report.excluded == HEADS
    for name in ("res1_tiny_a", "bn3_tiny_b", "fpn_c5p5", "fpn_p2", "rpn_model", "mrcnn_class_conv1",
                 "mrcnn_class_bn2", "mrcnn_mask_deconv"):
        for got, expected in zip(_weights_of(ours, name), stored[name]):
            np.testing.assert_array_equal(got, expected)
    # BN: gamma, beta, moving mean, moving variance in Keras 2's order
    assert [w.name for w in ours.get_layer("bn1_tiny_a").weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    for got, kept in zip(_weights_of(ours, "mrcnn_mask"), before):
        np.testing.assert_array_equal(got, kept)  # excluded: untouched


def test_class_count_mismatch_names_layer_shapes_and_exclude(models, tmp_path):
    coco_like, ours, _ = models
    path = tmp_path / "coco.h5"
    write_matterport_layout(path, coco_like, np.random.default_rng(1))
    with pytest.raises(WeightsMismatchError) as error:
        load_weights(ours, path, by_name=True)
    message = str(error.value)
    assert "mrcnn_class_logits" in message and "(32, 4)" in message and "(32, 81)" in message
    assert "exclude=" in message


def test_checkpoint_round_trip_into_the_inference_model(models, tmp_path):
    _, ours, inference = models
    path = tmp_path / "run" / "mask_rcnn_tiny_0001.h5"
    save_weights(ours, path)
    with h5py.File(path, "r") as f:  # the same layout as Matterport's files
        assert "rpn_model" in [n.decode() for n in f.attrs["layer_names"]]
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]][0] == "rpn_conv_shared/kernel:0"
        assert [n.decode() for n in f["res1_tiny_a"].attrs["weight_names"]] == [
            "res1_tiny_a/kernel:0", "res1_tiny_a/bias:0"]
    report = load_weights(inference, path)  # strict: every layer
    assert sorted(report.loaded) == sorted(layer.name for layer in inference.layers if layer.weights)
    for name in ("fpn_p3", "mrcnn_bbox_fc", "rpn_model"):
        for a, b in zip(_weights_of(inference, name), _weights_of(ours, name)):
            np.testing.assert_array_equal(a, b)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_bad_files_name_the_file(models, tmp_path):
    _, ours, _ = models
    missing = tmp_path / "missing.h5"
    with pytest.raises(WeightsFileError, match="missing.h5"):
        load_weights(ours, missing)
    text = tmp_path / "not_h5.h5"
    text.write_text("this is not hdf5")
    with pytest.raises(WeightsFileError, match="not_h5.h5"):
        load_weights(ours, text)
    good = tmp_path / "good.h5"
    save_weights(ours, good)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="truncated.h5"):
        load_weights(ours, truncated)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsFileError, match="layer_names"):
        load_weights(ours, other)
