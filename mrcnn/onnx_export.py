"""ONNX export of the serving model, through tf2onnx (TensorFlow backend).

The graph converts whole: NMS is TensorFlow's ``NonMaxSuppressionV4`` per image (ONNX ``NonMaxSuppression``),
the detection layer's class choice avoids Keras's TensorFlow ``argmax`` (its bit operations have no ONNX
form), and the molding and unmolding layers use only gathers, arithmetic and ``map`` (an ONNX ``Loop``).
"""

from __future__ import annotations

import os

ONNX_OPSET = 17
INSTALL_HINT = "python -m pip install tf2onnx==1.17.0 onnx onnxruntime"


def export_onnx(serving, path, opset=ONNX_OPSET):
    """Write the serving model (``mrcnn.export.serving_model``) as ONNX: input ``images`` uint8
    ``[B, H, W, 3]`` (one size per call), outputs ``boxes``, ``class_ids``, ``scores``, ``masks`` and
    ``count`` as the SavedModel's ``serve_batch``. Returns ``path``."""
    from mrcnn.export import ExportError

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
