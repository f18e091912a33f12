"""Looking inside the graph, for Matterport's notebooks: ``log``, ``run_graph`` and ``ancestor``."""

from __future__ import annotations

from collections import OrderedDict

import keras
import numpy as np

from mrcnn.graph import MaskRCNNModel
from mrcnn.inference import mold_inputs
from mrcnn.inputs import as_images


def log(text, array=None):
    """Matterport's notebook helper: print ``text`` and, given an array, its shape, min, max and dtype."""
    if array is not None:
        array = np.asarray(keras.ops.convert_to_numpy(array))
        text = text.ljust(25)
        text += f"shape: {str(array.shape):20}  "
        if array.size:
            text += f"min: {array.min():10.5f}  max: {array.max():10.5f}"
        else:
            text += f"min: {'':10}  max: {'':10}"
        text += f"  {array.dtype}"
    print(text)


def ancestor(model, name):
    """Matterport's TF1 graph walk, as far as Keras 3 can answer it: the output of the layer ``name`` names.

    ``"ROI"`` or ``"ROI:0"`` gives the ``ROI`` layer's output. TF1 names of ops inside a layer
    (``"ROI/rpn_non_max_suppression:0"``, ``"ROI/refined_anchors:0"``) have no Keras 3 counterpart and raise a
    ``ValueError`` saying so (rather than hand back the layer's output under that name); unknown layers raise
    one listing what exists. For values, use ``run_graph([image], [(name, layer_name)])``.
    """
    layer_name, _, inner = name.split(":")[0].partition("/")
    try:
        output = model.get_layer(layer_name).output
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers if not layer.name.startswith("input"))
        raise ValueError(
            f"ancestor: no layer {layer_name!r} (from {name!r}); Keras 3 has no TF1 graph to walk. The model's "
            f"layers: {names}. Use run_graph([image], [(label, layer_name)]) for their values") from None
    if inner:
        raise ValueError(
            f"ancestor: {name!r} is an op inside the layer {layer_name!r} in Matterport's TF1 graph; Keras 3 keeps "
            f"only the layer's output ({layer_name!r}), not its inner steps. Use run_graph([image], "
            f"[(label, {layer_name!r})]) for the layer's output, or compute the step from it (e.g. the proposal "
            f"layer's inputs 'rpn_class' and 'rpn_bbox' with utils.apply_box_deltas)")
    return output


def run_graph(model, config, mode, images, outputs, image_metas=None, molded_shapes=None):
    """``MaskRCNN.run_graph`` (see there): the named intermediate tensors of ``model`` on ``images``.
    ``molded_shapes``: a list that receives the molded ``(H, W, C)`` (inference mode)."""
    tensors = [model.get_layer(t).output if isinstance(t, str) else t for _, t in outputs]
    flat = [t for tensor in tensors for t in (tensor if isinstance(tensor, (list, tuple)) else [tensor])]
    probe = MaskRCNNModel(model.inputs, flat)  # traced as the model is (XLA or not)
    probe.jit_compile = model.jit_compile
    # the mask head's slots: where it ran on the detections (or positives) only, its outputs are padded back to
    # Matterport's [batch, slots, ...] as the model's own mrcnn_mask output is
    slots = config.DETECTION_MAX_INSTANCES if mode == "inference" else config.TRAIN_ROIS_PER_IMAGE
    if mode == "inference":
        images = as_images(images, caller="run_graph")
        molded_images, metas, _ = mold_inputs(config, images)  # as detect() molds them
        if molded_shapes is not None:
            molded_shapes.append(molded_images.shape[1:])
        if image_metas is not None:
            metas = image_metas
        values = probe.predict_on_batch([np.asarray(molded_images, np.float32), np.asarray(metas, np.float32)])
        batch = len(molded_images)
    else:
        values = probe.predict_on_batch(list(images))
        batch = len(images[0])
    values = [keras.ops.convert_to_numpy(v) for v in (values if len(flat) > 1 else [values])]
    result = OrderedDict()
    producers = {id(t): layer.name for layer in model.layers
                 for t in (layer.output if isinstance(layer.output, (list, tuple)) else [layer.output])}
    for (name, target), tensor in zip(outputs, tensors):
        if not isinstance(target, str):  # a layer's output tensor, as Matterport's notebooks pass them
            target = producers.get(id(tensor), "")
        if isinstance(tensor, (list, tuple)):
            result[name], values = values[:len(tensor)], values[len(tensor):]
        else:
            result[name], values = _with_batch_axis(values[0], target, len(tensor.shape), batch, slots), values[1:]
    return result


def _with_batch_axis(value, layer_name, rank, batch, mask_slots):
    """A per-ROI head output of the layer ``layer_name`` (of symbolic ``rank``) as Matterport's
    ``[batch, rois, ...]``: the heads' layers computed on ``[batch * rois, ...]``
    (``mrcnn_class_logits``, ``mrcnn_mask``, their inner layers) reshaped; the mask head's, which may run on the
    first slots only (the detections, or the sampled positives), padded with zeros to ``mask_slots`` as the
    model's own ``mrcnn_mask`` output is. Anything else unchanged."""
    if not layer_name.startswith(("mrcnn_", "roi_align_")) or value.ndim < 1 or not batch:
        return value
    if layer_name.startswith(("mrcnn_mask", "roi_align_mask")):
        if rank == 4:  # [batch * slots, h, w, c]: the convolutions between the ROI-axis merge and split
            value = value.reshape((batch, value.shape[0] // batch) + value.shape[1:])
        if value.ndim == 5 and value.shape[1] < mask_slots:
            padding = np.zeros((batch, mask_slots - value.shape[1]) + value.shape[2:], value.dtype)
            value = np.concatenate([value, padding], axis=1)
        return value
    if value.shape[0] != batch and value.shape[0] % batch == 0:
        return value.reshape((batch, value.shape[0] // batch) + value.shape[1:])
    return value
