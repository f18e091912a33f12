"""Exporting the whole inference path as one model: molding, the network, unmolding.

``detect()`` molds and unmolds in NumPy around the network (Matterport's way, the same on every backend). An
exported model cannot call NumPy, so :func:`serving_model` does the same inside Keras layers, tested equal to
``detect()``:

* :class:`MoldImages`: uint8 images ``[B, H, W, 3]`` -> molded images and image meta;
* the network (``MaskRCNN.keras_model``): detections and 28x28 masks;
* :class:`UnmoldDetections`: boxes in image pixels, class ids, scores, masks pasted at the image size and the
  count, whose output size (the largest count) is only known when it runs.

:func:`export` writes it as a TensorFlow SavedModel, a ``.keras`` file or ONNX (:func:`export_onnx`, through
tf2onnx: NMS is TensorFlow's ``NonMaxSuppressionV4`` per image, ONNX's ``NonMaxSuppression``; the detection
layer's class choice avoids Keras's TensorFlow ``argmax``, whose bit operations have no ONNX form; molding and
unmolding use only gathers, arithmetic and ``map``, an ONNX ``Loop``).
"""

from __future__ import annotations

import os
import shutil

import keras

from mrcnn.graph import MaskRCNNModel
from mrcnn.layers.molding import MoldImages
from mrcnn.layers.unmolding import UnmoldDetections

ONNX_OPSET = 17
INSTALL_HINT = "python -m pip install tf2onnx==1.17.0 onnx onnxruntime"
FORMATS = ("saved_model", "keras", "onnx")
OUTPUTS = ("boxes", "class_ids", "scores", "masks", "count")


class ExportError(RuntimeError):
    """The model cannot be exported as asked; the message says what to do."""


def _image_input(name="image"):
    return keras.Input(shape=(None, None, 3), dtype="uint8", name=name)


def serving_model(network, config):
    """The whole path as one Keras model: ``image`` uint8 ``[B, H, W, 3]`` (one size per call) -> a dict of
    ``boxes`` int32 ``[B, K, 4]`` (image pixels), ``class_ids`` int32 ``[B, K]``, ``scores`` float32 ``[B, K]``,
    ``masks`` bool ``[B, H, W, K]`` and ``count`` int32 ``[B]`` (K: the largest count in the batch)."""
    images = _image_input()
    molded, meta = MoldImages.from_model_config(config, name="mold_images")(images)
    outputs = network([molded, meta])
    detections, mrcnn_mask = outputs[0], outputs[3]
    results = UnmoldDetections(name="unmold_detections")(detections, mrcnn_mask, meta)
    return MaskRCNNModel(images, dict(zip(OUTPUTS, results)), name="mask_rcnn_serving")


def export(model, path, format="saved_model"):  # noqa: A002  (Keras's own argument name)
    """Write ``model`` (an inference-mode ``MaskRCNN``) to ``path`` in ``format``; returns ``path``.

    saved_model: a TensorFlow SavedModel whose ``serving_default`` signature takes ``image`` uint8
    ``[H, W, 3]`` of any size and returns ``boxes`` ``[N, 4]`` int32 (y1, x1, y2, x2 image pixels),
    ``class_ids`` ``[N]``, ``scores`` ``[N]``, ``masks`` ``[H, W, N]`` bool and ``count``; its ``serve_batch``
    signature takes ``images`` ``[B, H, W, 3]`` of one size and returns them padded to the largest count
    (``masks`` ``[B, H, W, K]``, ``count`` ``[B]``). Needs the TensorFlow backend; the file needs no mrcnn code.
    keras: the serving model as a ``.keras`` file (``keras.saving.load_model`` without custom objects, once
    ``mrcnn`` is imported: its layers are registered there).
    onnx: see :func:`export_onnx`.
    """
    if getattr(model, "mode", "inference") != "inference":
        raise ExportError("export needs an inference-mode model: build MaskRCNN(mode='inference', ...), load the "
                          "weights (e.g. model.load_weights(model.find_last())), then export")
    if format not in FORMATS:
        raise ExportError(f"export: unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    serving = serving_model(model.keras_model, model.config)
    if format == "keras":
        if not str(path).endswith(".keras"):
            raise ExportError(f"export: a .keras file name is needed for format='keras', got {path!r}")
        partial = str(path)[:-len(".keras")] + ".part.keras"
        serving.save(partial)
        os.replace(partial, path)  # a reader never sees a half-written file
        return path
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"export format {format!r} needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                          f"this one is {keras.backend.backend()!r}. format='keras' works on every backend")
    if format == "saved_model":
        return _export_saved_model(serving, path)
    return export_onnx(serving, path)


def _export_saved_model(serving, path):
    import tensorflow as tf

    def run(images):
        tf.debugging.assert_rank(images, 4, message="image must be [height, width, 3] uint8")
        shape = tf.shape(images)
        tf.debugging.assert_positive(shape[1] * shape[2], message="image is empty (0 pixels)")
        return serving(images, training=False)

    def one_image(image):
        outputs = run(image[None])
        count = outputs["count"][0]
        return {"boxes": outputs["boxes"][0, :count], "class_ids": outputs["class_ids"][0, :count],
                "scores": outputs["scores"][0, :count], "masks": outputs["masks"][0, :, :, :count],
                "count": count}

    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serving_default", one_image,
                         input_signature=[tf.TensorSpec((None, None, 3), tf.uint8, name="image")])
    archive.add_endpoint("serve_batch", run,
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")])
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    partial = os.path.abspath(path).rstrip(os.sep) + ".part"
    shutil.rmtree(partial, ignore_errors=True)
    archive.write_out(partial, verbose=False)
    shutil.rmtree(path, ignore_errors=True)  # an export written before is replaced whole
    os.replace(partial, path)
    return path


def export_onnx(serving, path, opset=ONNX_OPSET):
    """Write the serving model (``mrcnn.export.serving_model``) as ONNX: input ``images`` uint8
    ``[B, H, W, 3]`` (one size per call), outputs ``boxes``, ``class_ids``, ``scores``, ``masks`` and
    ``count`` as the SavedModel's ``serve_batch``. Returns ``path``."""
    try:
        import tf2onnx
    except ImportError:
        raise ExportError(f"export format 'onnx' needs tf2onnx, which is not installed: {INSTALL_HINT}") from None
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")])
    def serve(images):
        return serving(images, training=False)

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    partial = path + ".part"
    try:
        tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset,
                                      output_path=partial)
        import onnx

        onnx.checker.check_model(partial)  # an op the converter could not express fails here, named
    except Exception as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise ExportError(f"ONNX conversion failed: {str(error).strip()[:500]}. The SavedModel export "
                          f"(format='saved_model') holds the same graph") from error
    os.replace(partial, path)
    return path
