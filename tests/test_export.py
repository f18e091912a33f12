"""The exported form of the inference path (mrcnn.layers.molding / unmolding, mrcnn.export) and the exports.

References: Matterport's molding procedure written here with scikit-image (``skimage.transform.resize`` with
Matterport's arguments), the NumPy helpers (``mold_inputs``, ``get_anchors``, ``postprocess.unmold_detections``),
and for exports ``detect()`` itself, run in another process that never imports mrcnn.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import skimage.transform
from PIL import Image

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.data.image_meta import compose_image_meta
from mrcnn.export import ExportError, serving_model
from mrcnn.layers.anchors import AnchorsLayer
from mrcnn.layers.molding import MoldImages
from mrcnn.layers.unmolding import UnmoldDetections
from mrcnn.postprocess import unmold_detections
from tests.conftest import TinyModelConfig

MEAN = np.array([123.7, 116.8, 103.9])


def matterport_mold(image, min_dim, max_dim, mode):
    """Matterport's resize_image + mold_image, with scikit-image, for one uint8 image (reference)."""
    h, w = image.shape[:2]
    scale = 1
    if mode != "none":
        scale = max(1, min_dim / min(h, w)) if min_dim else 1
        if mode == "square" and round(max(h, w) * scale) > max_dim:
            scale = max_dim / max(h, w)
    if scale != 1:
        image = skimage.transform.resize(image, (round(h * scale), round(w * scale)), order=1, mode="constant",
                                         cval=0, clip=True, preserve_range=True,
                                         anti_aliasing=False).astype(np.uint8)
    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        ph, pw = (-h) % 64, (-w) % 64
        padding = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)]
    else:
        padding = [(0, 0), (0, 0), (0, 0)]
    image = np.pad(image, padding)
    window = (padding[0][0], padding[1][0], h + padding[0][0], w + padding[1][0])
    return image.astype(np.float32) - MEAN.astype(np.float32), window, scale


@pytest.mark.parametrize("mode,min_dim,max_dim", [("square", 128, 128), ("square", 100, 160), ("pad64", 128, 0),
                                                  ("pad64", 0, 0), ("none", 0, 0)])
def test_mold_images_is_matterports_molding(mode, min_dim, max_dim):
    rng = np.random.default_rng(0)
    layer = MoldImages(mode, min_dim, max_dim, 0, MEAN, 4)
    differing = []
    for h, w in [(96, 160), (128, 128), (50, 300), (200, 90), (64, 64), (257, 31)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image[rng.random((h, w)) < 0.3] = rng.integers(20, 60)  # flat patches, where truncation is decided
        molded, meta = (np.asarray(v)[0] for v in layer(image[None]))
        reference, window, scale = matterport_mold(image, min_dim, max_dim, mode)
        assert molded.shape == reference.shape, (h, w)
        difference = np.abs(molded - reference)
        assert difference.max() <= 1.0, (h, w, difference.max())
        differing.append(np.mean(difference > 0))
        expected = compose_image_meta(0, image.shape, reference.shape, window, scale, np.zeros(4))
        np.testing.assert_array_equal(meta, expected.astype(np.float32))
    assert np.mean(differing) < 0.01  # one grey level on a few truncation ties, not a shift


@pytest.mark.parametrize("shape", [(128, 128), (192, 320), (64, 1024)])
def test_anchors_of_a_size_known_when_the_graph_runs_equal_get_anchors(shape):
    """The keras.ops anchors (pad64 and none modes on TensorFlow, where the size is only known when the graph
    runs) against MaskRCNN.get_anchors' NumPy ones, and the layer's constant for a size known when traced."""
    import tensorflow as tf

    config = TinyModelConfig(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64)
    layer = AnchorsLayer(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                         config.RPN_ANCHOR_STRIDE)
    expected = utils.norm_boxes(utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, modellib.compute_backbone_shapes(config, shape),
        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE), shape)
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3))])
    graph = traced.get_concrete_function().graph
    assert not any(op.type == "Const" and op.outputs[0].shape.num_elements() > 1000 for op in graph.get_operations())
    dynamic = traced(np.zeros((2,) + shape + (3,), np.float32)).numpy()  # computed from the shape
    assert dynamic.shape == (2,) + expected.shape
    np.testing.assert_array_equal(dynamic[1], expected.astype(np.float32))
    static = np.asarray(layer(np.zeros((1,) + shape + (3,), np.float32)))  # a constant from the NumPy anchors
    np.testing.assert_array_equal(static[0], expected.astype(np.float32))


def test_anchors_of_a_custom_backbones_feature_maps_equal_generate_pyramid_anchors():
    """COMPUTE_BACKBONE_SHAPE's feature maps (not ceil(size / stride)): the layer's constant for that size."""
    config = TinyModelConfig()
    shapes = [[7, 5]] * len(config.BACKBONE_STRIDES)
    layer = AnchorsLayer(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                         config.RPN_ANCHOR_STRIDE, feature_shapes=shapes)
    expected = utils.norm_boxes(utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes, config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE), (128, 128))
    got = np.asarray(layer(np.zeros((1, 128, 128, 3), np.float32)))[0]
    assert got.shape == (7 * 5 * 3 * len(shapes), 4)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def _random_detections(rng, count, slots=20, classes=4):
    detections = np.zeros((1, slots, 6), np.float32)
    y1, x1 = rng.uniform(-0.1, 0.9, count), rng.uniform(-0.1, 0.9, count)
    detections[0, :count, :4] = np.stack([y1, x1, y1 + rng.uniform(0, 0.4, count),
                                          x1 + rng.uniform(0, 0.4, count)], axis=1)
    detections[0, :count, 4] = rng.integers(1, classes, count)
    detections[0, :count, 5] = np.sort(rng.uniform(0.5, 1, count))[::-1]
    return detections, rng.uniform(0, 1, (1, slots, 28, 28, classes)).astype(np.float32)


@pytest.mark.parametrize("mode", ["square", "pad64"])
def test_unmold_detections_layer_equals_the_numpy_helper(mode):
    config = TinyModelConfig(IMAGE_RESIZE_MODE=mode, IMAGE_MIN_DIM=128 if mode == "square" else 64,
                             DETECTION_MAX_INSTANCES=20)
    unmold = UnmoldDetections()
    rng = np.random.default_rng(1)
    for count in (0, 1, 7, 20):
        h, w = int(rng.integers(30, 220)), int(rng.integers(30, 220))
        image = np.zeros((h, w, 3), np.uint8)
        molded, window, scale, _, _ = utils.resize_image(image, min_dim=config.IMAGE_MIN_DIM,
                                                         max_dim=config.IMAGE_MAX_DIM, mode=mode)
        meta = compose_image_meta(0, image.shape, molded.shape, window, scale, np.zeros(4))[None]
        detections, masks = _random_detections(rng, count)
        rois, ref_ids, ref_scores, ref_masks = unmold_detections(detections[0], masks[0], image.shape, molded.shape,
                                                                 window)
        got = [keras.ops.convert_to_numpy(v) for v in unmold(detections, masks, meta.astype(np.float32))]
        k = int(got[4][0])
        assert k == len(ref_ids) and got[0].shape[1] == k and got[3].shape == (1, h, w, k)
        np.testing.assert_array_equal(got[0][0], rois)
        np.testing.assert_array_equal(got[1][0], ref_ids)
        np.testing.assert_array_equal(got[2][0], ref_scores)
        np.testing.assert_array_equal(got[3][0], ref_masks)  # the same float64 formula: the same pixels


def test_molding_refuses_crop_mode():
    with pytest.raises(ValueError, match="crop is for training"):
        MoldImages.from_model_config(TinyModelConfig(IMAGE_RESIZE_MODE="crop"))


# ---------------------------------------------------------------------------------------------- whole model
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Seeded random weights that detect (the classifier's bias set to foreground) and four images."""
    from tests.conftest import shapes_data

    tmp = tmp_path_factory.mktemp("export")
    dataset = shapes_data(6, seed=5)
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("training", TinyModelConfig(), str(tmp), seed=0)
    # Random weights made to detect: every ROI leans to a foreground class, boxes refined only a little.
    logits = model.keras_model.get_layer("mrcnn_class_logits")
    logits.bias.assign(np.array([0.0, 3.0, 2.5, 2.0], np.float32))
    bbox = model.keras_model.get_layer("mrcnn_bbox_fc")
    bbox.kernel.assign(bbox.kernel * 0.1)
    path = str(tmp / "weights.h5")
    model.save_weights(path)
    images = [dataset.load_image(i) for i in range(3)] + [np.full((75, 140, 3), 90, np.uint8)]
    return tmp, path, images


def _inference(tmp, path, **overrides):
    config = TinyModelConfig(IMAGES_PER_GPU=overrides.pop("IMAGES_PER_GPU", 1), DETECTION_MIN_CONFIDENCE=0.0,
                             **overrides)
    model = modellib.MaskRCNN("inference", config, str(tmp))
    model.load_weights(path, by_name=True)
    return model


def _assert_same_detections(got, expected, scores_atol=1e-4):
    np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=scores_atol)
    assert got["rois"].shape == expected["rois"].shape
    if len(got["rois"]):
        assert np.abs(got["rois"].astype(int) - expected["rois"]).max() <= 1
    assert got["masks"].shape == expected["masks"].shape and got["masks"].dtype == bool
    for i in range(expected["masks"].shape[-1]):
        a, b = got["masks"][..., i], expected["masks"][..., i]
        union = np.logical_or(a, b).sum()
        assert union == 0 or np.logical_and(a, b).sum() / union >= 0.99


def test_the_serving_model_equals_detect(trained):
    """The exported form (molding and unmolding as Keras layers) against detect() (NumPy molding and unmolding
    around the network, batched by molded size)."""
    tmp, path, images = trained
    for mode, per_call in (("square", 1), ("pad64", 2)):  # pad64: two same-size images per network call
        model = _inference(tmp, path, IMAGE_RESIZE_MODE=mode, IMAGE_MIN_DIM=128 if mode == "square" else 64,
                           IMAGES_PER_GPU=per_call)
        serving = serving_model(model.keras_model, model.config)
        for image, want in zip(images, model.detect(images)):
            assert len(want["class_ids"]) > 0
            out = serving.predict_on_batch(image[None])
            n = int(out["count"][0])
            got = {"rois": out["boxes"][0, :n], "class_ids": out["class_ids"][0, :n],
                   "scores": out["scores"][0, :n], "masks": out["masks"][0, :, :, :n]}
            _assert_same_detections(got, want, scores_atol=1e-5)


SERVE_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2], allow_pickle=True)
out = {}
for i, image in enumerate(images):
    r = loaded.signatures["serving_default"](image=tf.constant(image))
    out[i] = {k: v.numpy().tolist() for k, v in r.items()}
batch = loaded.serve_batch(tf.constant(np.stack([images[0], images[1]])))
out["batch"] = {k: v.numpy().tolist() for k, v in batch.items()}
errors = {}
for name, bad in [("float", np.zeros((8, 8, 3), np.float32)), ("rank", np.zeros((8, 8), np.uint8)),
                  ("empty", np.zeros((0, 5, 3), np.uint8))]:
    try:
        loaded.signatures["serving_default"](image=tf.constant(bad))
        errors[name] = "no error"
    except Exception as error:
        errors[name] = type(error).__name__ + ": " + str(error)[:300]
out["errors"] = errors
out["mrcnn_imported"] = any(m == "mrcnn" or m.startswith("mrcnn.") for m in sys.modules)
print(json.dumps(out))
"""


def _as_result(raw):
    return {"rois": np.asarray(raw["boxes"], np.int32).reshape(-1, 4), "class_ids": np.asarray(raw["class_ids"]),
            "scores": np.asarray(raw["scores"], np.float32), "masks": np.asarray(raw["masks"], bool)}


def test_saved_model_serves_detect_without_mrcnn(trained, tmp_path):
    tmp, path, images = trained
    model = _inference(tmp, path)
    expected = model.detect(images)
    exported = model.export(str(tmp_path / "served"), format="saved_model")
    np.save(tmp_path / "images.npy", np.array(images, dtype=object), allow_pickle=True)
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, str(script), exported, str(tmp_path / "images.npy")], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mrcnn_imported"] is False
    for i, image in enumerate(images):
        got = _as_result(out[str(i)])
        assert got["masks"].shape[:2] == image.shape[:2] and out[str(i)]["count"] == len(expected[i]["class_ids"])
        _assert_same_detections(got, expected[i])
    batch = out["batch"]
    assert len(batch["count"]) == 2
    for b in range(2):
        n = batch["count"][b]
        got = {"rois": np.asarray(batch["boxes"][b][:n], np.int32).reshape(-1, 4),
               "class_ids": np.asarray(batch["class_ids"][b][:n]),
               "scores": np.asarray(batch["scores"][b][:n], np.float32),
               "masks": np.asarray(batch["masks"][b], bool)[:, :, :n]}
        _assert_same_detections(got, expected[b])
    # the README's serving script, as written
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    serve = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if b.startswith("# serve.py"))
    (tmp_path / "readme_serve.py").write_text(serve)
    Image.fromarray(images[0]).save(tmp_path / "frame.png")
    done = subprocess.run([sys.executable, "readme_serve.py", exported, "frame.png", "drawn.png"], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"{len(expected[0]['class_ids'])} instances")
    drawn = np.asarray(Image.open(tmp_path / "drawn.png"))
    assert drawn.shape == images[0].shape and not np.array_equal(drawn, images[0])
    errors = out["errors"]
    assert "no error" not in errors.values(), errors
    assert "image is empty" in errors["empty"]
    assert "uint8" in errors["float"] or "dtype" in errors["float"].lower(), errors["float"]


def test_keras_file_reloads_without_custom_objects(trained, tmp_path):
    tmp, path, images = trained
    model = _inference(tmp, path, IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64)
    file = model.export(str(tmp_path / "model.keras"), format="keras")
    reloaded = keras.saving.load_model(file)
    expected = model.detect(images[:2])
    for image, want in zip(images[:2], expected):
        out = reloaded.predict_on_batch(image[None])
        n = int(out["count"][0])
        got = {"rois": out["boxes"][0, :n], "class_ids": out["class_ids"][0, :n], "scores": out["scores"][0, :n],
               "masks": out["masks"][0, :, :, :n]}
        _assert_same_detections(got, want, scores_atol=1e-6)
    # in a fresh process, after `import mrcnn` alone (no mrcnn module named)
    code = ("import sys, numpy as np, mrcnn, keras; model = keras.saving.load_model(sys.argv[1]); "
            "out = model.predict_on_batch(np.load(sys.argv[2])[None]); "
            "print(type(model).__name__, int(out['count'][0]))")
    np.save(tmp_path / "image.npy", images[0])
    done = subprocess.run([sys.executable, "-c", code, file, str(tmp_path / "image.npy")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["MaskRCNNModel", str(len(expected[0]["class_ids"]))]


def test_import_mrcnn_registers_every_serializable_class():
    """Every class the code registers for .keras files is registered by `import mrcnn` alone (a fresh process)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    declared = set()
    for folder in ("mrcnn", "attention"):
        for directory, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith(".py"):
                    text = open(os.path.join(directory, name)).read()
                    declared |= {f"{package}>{cls}" for package, cls in re.findall(
                        r'register_keras_serializable\(package="(\w+)"\)\s*\nclass (\w+)', text)}
    assert len(declared) >= 19
    code = "import json, mrcnn, keras; print(json.dumps(sorted(keras.saving.get_custom_objects())))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    registered = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert declared <= registered, declared - registered


def test_export_refuses_what_it_cannot_do(trained, tmp_path):
    tmp, path, _ = trained
    training = modellib.MaskRCNN("training", TinyModelConfig(), str(tmp))
    with pytest.raises(ExportError, match="inference-mode model"):
        training.export(str(tmp_path / "x"))
    model = _inference(tmp, path)
    with pytest.raises(ExportError, match="unknown format 'tflite'.*saved_model, keras, onnx"):
        model.export(str(tmp_path / "x"), format="tflite")
    with pytest.raises(ExportError, match=r"\.keras file name"):
        model.export(str(tmp_path / "x"), format="keras")


def test_onnx_export_runs_in_onnxruntime_like_detect(trained, tmp_path):
    import onnxruntime

    tmp, path, images = trained
    model = _inference(tmp, path, IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64)  # dynamic sizes, the hard case
    expected = model.detect(images[:3])
    file = model.export(str(tmp_path / "model.onnx"), format="onnx")
    assert not os.path.exists(file + ".part")
    session = onnxruntime.InferenceSession(file, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    names = [o.name for o in session.get_outputs()]
    for image, want in zip(images[:3], expected):
        out = dict(zip(names, session.run(None, {"images": image[None]})))
        n = int(out["count"][0])
        got = {"rois": out["boxes"][0, :n], "class_ids": out["class_ids"][0, :n], "scores": out["scores"][0, :n],
               "masks": out["masks"][0, :, :, :n]}
        _assert_same_detections(got, want)


def test_onnx_export_without_the_converter_says_what_to_install(trained, tmp_path, monkeypatch):
    tmp, path, _ = trained
    model = _inference(tmp, path)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(ExportError, match="pip install tf2onnx"):
        model.export(str(tmp_path / "model.onnx"), format="onnx")
    assert not os.path.exists(tmp_path / "model.onnx")
