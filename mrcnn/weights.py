"""Weights in Keras 2's HDF5 layout: Matterport's ``mask_rcnn_coco.h5`` and this project's checkpoints.

The layout (what Keras 2 ``save_weights`` wrote, and what we write)::

    /                     attrs: layer_names = [b"conv1", b"bn_conv1", ..., b"rpn_model", ...]
    /conv1                attrs: weight_names = [b"conv1/kernel:0", b"conv1/bias:0"]
    /conv1/conv1/kernel:0 dataset
    /rpn_model            attrs: weight_names = [b"rpn_conv_shared/kernel:0", ...]  (nested model:
                          all its weights in one group, in layer order)

Weights are matched to layers by name (``by_name=True``) or by the order of the weight-bearing layers,
and within a layer by order, with shapes checked. Writing goes to a temporary file renamed into place,
so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass, field

import h5py
import keras
import numpy as np


class WeightsFileError(OSError):
    """A weights file that is missing, not HDF5, truncated, or not in the expected layout."""


class WeightsMismatchError(ValueError):
    """A layer's stored weights do not fit the model's layer (count or shapes)."""


@dataclass
class LoadReport:
    """What a load did: layers loaded, model layers the file lacks, file layers the model lacks."""

    loaded: list = field(default_factory=list)
    not_in_file: list = field(default_factory=list)
    not_in_model: list = field(default_factory=list)
    excluded: list = field(default_factory=list)


def weight_layers(model):
    """Top-level layers of ``model`` that hold weights (nested models count as one layer)."""
    return [layer for layer in model.layers if layer.weights]


def _weight_names(layer):
    return [f"{w.path}:0" for w in layer.weights]


def save_weights(model, filepath, extra=None):
    """Write the model's weights in Keras 2's HDF5 layout, atomically.

    extra: a function called with the open ``h5py.File`` before it is closed and renamed into place (the
    training state of a checkpoint, see mrcnn.checkpoints)."""
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=directory)
    os.close(handle)
    try:
        with h5py.File(tmp, "w") as f:
            layers = weight_layers(model)
            # Fixed-length byte strings, as Keras 2 stored them
            f.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in layers], dtype="S")
            f.attrs["backend"] = keras.backend.backend().encode("utf8")
            f.attrs["keras_version"] = keras.__version__.encode("utf8")
            for layer in layers:
                group = f.create_group(layer.name)
                names = _weight_names(layer)
                group.attrs["weight_names"] = np.array([name.encode("utf8") for name in names], dtype="S")
                for name, variable in zip(names, layer.weights):
                    group.create_dataset(name, data=np.asarray(variable.numpy()))
            if extra is not None:
                extra(f)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _decode(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _open(filepath):
    if not os.path.isfile(filepath):
        raise WeightsFileError(f"weights file not found: {filepath}")
    try:
        f = h5py.File(filepath, "r")
    except OSError as error:
        raise WeightsFileError(f"cannot read weights file {filepath}: not a complete HDF5 file "
                               f"({error})") from error
    root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
    if "layer_names" not in root.attrs:
        f.close()
        raise WeightsFileError(f"{filepath} is HDF5 but not in Keras's weights layout "
                               f"(no 'layer_names' attribute)")
    return f, root


def _read_layer(root, name, filepath):
    group = root[name]
    try:
        return [np.asarray(group[weight_name]) for weight_name in _decode(group.attrs["weight_names"])]
    except (KeyError, OSError) as error:
        raise WeightsFileError(f"{filepath}: cannot read the weights of layer {name!r} ({error}); "
                               f"the file may be truncated") from error


def _assign(layer, values, filepath):
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(v.shape) for v in values]
    if expected != got:
        raise WeightsMismatchError(
            f"layer {layer.name!r}: the model expects weights of shapes {expected} but {filepath} holds "
            f"{got}. If the number of classes differs, load with "
            f"exclude=[{layer.name!r}, ...] (usually mrcnn_class_logits, mrcnn_bbox_fc, mrcnn_bbox, "
            f"mrcnn_mask) and train those layers.")
    layer.set_weights(values)


def load_weights(model, filepath, by_name=False, exclude=None):
    """Load weights in Keras 2's HDF5 layout into ``model``; returns a :class:`LoadReport`.

    by_name: match layers by name and load those present (what loading Matterport's COCO weights into
    a different model needs). Otherwise every weight-bearing layer must be loaded: by name when file
    and model hold the same layer names, else in order (Keras 2's rule), with the counts equal.
    exclude: layer names to skip (implies by_name, as Matterport).
    """
    filepath = os.fspath(filepath)
    exclude = list(exclude or [])
    by_name = by_name or bool(exclude)
    names = [layer.name for layer in model.layers]  # (Matterport's list names weightless "mrcnn_bbox" too)
    unknown = sorted(set(exclude) - set(names))
    if unknown:  # a typo would load the very layer it meant to keep out
        hints = {n: difflib.get_close_matches(n, names, n=1) for n in unknown}
        raise ValueError(
            "load_weights: exclude names no layer of this model: "
            + ", ".join(f"{n!r}" + (f" (did you mean {hints[n][0]!r}?)" if hints[n] else "") for n in unknown)
            + "; nothing was loaded")
    report = LoadReport(excluded=exclude)
    f, root = _open(filepath)
    with f:
        file_layers = [name for name in _decode(root.attrs["layer_names"])
                       if len(root[name].attrs.get("weight_names", [])) > 0]
        model_layers = [layer for layer in weight_layers(model) if layer.name not in exclude]
        if by_name:
            available = set(file_layers)
            for layer in model_layers:
                if layer.name in available:
                    _assign(layer, _read_layer(root, layer.name, filepath), filepath)
                    report.loaded.append(layer.name)
                else:
                    report.not_in_file.append(layer.name)
            model_names = {layer.name for layer in weight_layers(model)}
            report.not_in_model = [n for n in file_layers if n not in model_names and n not in exclude]
        elif sorted(file_layers) == sorted(layer.name for layer in model_layers):
            # The same layers on both sides (e.g. a training checkpoint into the inference model,
            # whose graph orders them differently): pair them by name, all of them.
            for layer in model_layers:
                _assign(layer, _read_layer(root, layer.name, filepath), filepath)
                report.loaded.append(layer.name)
        else:
            if len(file_layers) != len(model_layers):
                raise WeightsMismatchError(
                    f"{filepath} holds weights for {len(file_layers)} layers but the model has "
                    f"{len(model_layers)}; load with by_name=True to match layers by name")
            for name, layer in zip(file_layers, model_layers):
                _assign(layer, _read_layer(root, name, filepath), filepath)
                report.loaded.append(layer.name)
    return report
