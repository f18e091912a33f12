"""Checkpoints that resume the same run: weights, optimizer state and the run's log, written atomically.

Each ``mask_rcnn_<name>_<epoch>.h5`` holds, beside the weights in Matterport's layout, a group
``mrcnn_training_state`` that Matterport's loaders and :func:`mrcnn.weights.load_weights` ignore::

    attrs   format, epoch, seed, train_call (JSON: layers, learning_rate, epochs of the train() call),
            history (JSON: the rows of training_log.csv up to this epoch)
    optimizer/        iteration count, momentum per trainable weight (by its path), loss scale
    seed_generators/  the state of the graph's random generators (ROI sampling)

One file holds one epoch's weights and state, so they can never disagree; the file appears under its
final name only once complete. ``training_log.csv`` is rewritten from the checkpoint's history after
each checkpoint, so a run killed between the two never duplicates or loses a row once resumed.
Temporary files start with ``.tmp-`` and are removed when a run (re)starts in its folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field

import h5py
import keras
import numpy as np

from mrcnn.weights import save_weights

STATE_GROUP = "mrcnn_training_state"
STATE_FORMAT = 1
TMP_PREFIX = ".tmp-"
CSV_NAME = "training_log.csv"


class TrainingDiverged(RuntimeError):
    """A loss or the weights became NaN or infinite; the message says where and what to try."""


@dataclass
class TrainingState:
    """What a checkpoint holds beside the weights (see the module docstring)."""

    epoch: int
    seed: int | None = None
    train_call: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    optimizer: dict = field(default_factory=dict)
    seed_generators: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- files
def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".txt", dir=directory)
    try:
        with os.fdopen(handle, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def clean_debris(directory):
    """Remove the temporary files an interrupted run left in ``directory``; returns their names."""
    if not os.path.isdir(directory):
        return []
    debris = sorted(f for f in os.listdir(directory) if f.startswith(TMP_PREFIX))
    for name in debris:
        os.remove(os.path.join(directory, name))
    return debris


def write_csv(path, history):
    """``training_log.csv`` from the history rows (``epoch`` first, then the columns sorted), atomically."""
    keys = sorted({k for row in history for k in row if k != "epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["epoch"] + keys, restval="", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write_text(path, out.getvalue())


# ---------------------------------------------------------------------------------------------- state
def inner_optimizer(optimizer):
    """The optimizer under a ``LossScaleOptimizer`` (mixed_float16), else ``optimizer`` itself."""
    return getattr(optimizer, "inner_optimizer", None) or optimizer


def optimizer_state(optimizer, trainable_variables):
    """``{key: array}``: iteration count, momentum per trainable weight (by the weight's path), and the
    loss scale of a LossScaleOptimizer. Empty for an optimizer that has not been built. ``trainable_variables``:
    those the optimizer was built for, in that order (its momenta follow it)."""
    if optimizer is None or not optimizer.built:
        return {}
    inner = inner_optimizer(optimizer)
    state = {"iterations": np.asarray(inner.iterations.numpy())}
    for variable, momentum in zip(trainable_variables, getattr(inner, "momentums", None) or []):
        state["momentum:" + variable.path] = np.asarray(momentum.numpy())
    if inner is not optimizer:  # LossScaleOptimizer: its dynamic scale and step counter
        for variable in optimizer.variables:
            if variable.name in ("dynamic_scale", "step_counter"):
                state["loss_scale:" + variable.name] = np.asarray(variable.numpy())
    return state


def restore_optimizer(optimizer, trainable_variables, state):
    """Build ``optimizer`` for ``trainable_variables`` and assign the saved values; returns how many
    momentum slots were restored (weights trained in this call but not in the saved one start at 0)."""
    if not optimizer.built:
        optimizer.build(trainable_variables)
    inner = inner_optimizer(optimizer)
    if "iterations" in state:
        inner.iterations.assign(state["iterations"])
    restored = 0
    for variable, momentum in zip(trainable_variables, getattr(inner, "momentums", None) or []):
        value = state.get("momentum:" + variable.path)
        if value is not None and tuple(value.shape) == tuple(momentum.shape):
            momentum.assign(value)
            restored += 1
    for variable in optimizer.variables if inner is not optimizer else []:
        value = state.get("loss_scale:" + variable.name)
        if value is not None:
            variable.assign(value)
    return restored


def _seed_generator_variables(model):
    # In graph order: their paths carry process-wide counters (seed_generator_3/...), not stable names.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def seed_generator_states(model):
    """``{index: state}`` of every random generator in the graph (the ROI sampling's), in graph order."""
    return {str(i): np.asarray(v.numpy()) for i, v in enumerate(_seed_generator_variables(model))}


def restore_seed_generators(model, states):
    for i, variable in enumerate(_seed_generator_variables(model)):
        if str(i) in states and tuple(states[str(i)].shape) == tuple(variable.shape):
            variable.assign(states[str(i)])


def _write_arrays(group, arrays):
    group.attrs["keys"] = json.dumps(list(arrays))
    for i, value in enumerate(arrays.values()):
        group.create_dataset(str(i), data=value)


def _read_arrays(group):
    return {key: np.asarray(group[str(i)]) for i, key in enumerate(json.loads(group.attrs["keys"]))}


def write_state(f, state):
    """Write ``state`` into an open HDF5 file (the checkpoint being written)."""
    group = f.create_group(STATE_GROUP)
    group.attrs["format"] = STATE_FORMAT
    group.attrs["epoch"] = int(state.epoch)
    group.attrs["seed"] = -1 if state.seed is None else int(state.seed)
    group.attrs["train_call"] = json.dumps(state.train_call)
    group.attrs["history"] = json.dumps(state.history)
    _write_arrays(group.create_group("optimizer"), state.optimizer)
    _write_arrays(group.create_group("seed_generators"), state.seed_generators)


def read_state(filepath):
    """The :class:`TrainingState` of a checkpoint, or None for weights without one (Matterport's files)."""
    try:
        with h5py.File(filepath, "r") as f:
            if STATE_GROUP not in f:
                return None
            group = f[STATE_GROUP]
            seed = int(group.attrs["seed"])
            return TrainingState(
                epoch=int(group.attrs["epoch"]), seed=None if seed < 0 else seed,
                train_call=json.loads(group.attrs["train_call"]), history=json.loads(group.attrs["history"]),
                optimizer=_read_arrays(group["optimizer"]), seed_generators=_read_arrays(group["seed_generators"]))
    except (OSError, KeyError, ValueError):
        return None  # not ours, or not readable: the weights loader reports real problems


def non_finite_weights(model):
    """Paths of the model's weights that hold NaN or infinite values."""
    return [w.path for w in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(w)))]


# ---------------------------------------------------------------------------------------------- callback
class AtomicCheckpoint(keras.callbacks.Callback):
    """After every epoch: ``path_template.format(epoch=epoch + 1)`` with the weights and, when ``run`` is
    given (the :class:`mrcnn.model.MaskRCNN`), its training state; then ``training_log.csv``.

    The checkpoint appears only once complete (temporary file, then rename), so ``find_last`` never
    picks a truncated file. Non-finite weights or losses are never written: :class:`TrainingDiverged`.
    """

    def __init__(self, path_template, run=None, weights_model=None, keep=None):
        super().__init__()
        self.path_template = path_template
        self.run = run
        self.weights_model = weights_model
        self.keep = keep  # the number of checkpoints to keep in the folder (None: all)
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        model = self.weights_model or self.model
        row = {"epoch": int(epoch)}
        row.update({k: float(np.asarray(v)) for k, v in (logs or {}).items()})
        if "learning_rate" not in row and getattr(self.model, "optimizer", None) is not None:
            row["learning_rate"] = float(np.asarray(inner_optimizer(self.model.optimizer).learning_rate))
        bad_losses = [k for k, v in row.items() if k != "epoch" and not np.isfinite(v)]
        bad_weights = non_finite_weights(model)
        if bad_losses or bad_weights:
            what = (f"{bad_losses[0]} is {row[bad_losses[0]]}" if bad_losses
                    else f"{len(bad_weights)} weights are not finite (first: {bad_weights[0]})")
            raise TrainingDiverged(f"{what} at the end of epoch {epoch + 1}; its checkpoint was not written")
        path = self.path_template.format(epoch=epoch + 1)
        state = None
        if self.run is not None:
            self.run.history = [r for r in self.run.history if r["epoch"] < epoch] + [row]
            state = self.run.training_state(epoch + 1)
        save_weights(model, path, extra=(lambda f: write_state(f, state)) if state else None)
        self.last_path = os.path.abspath(path)
        if self.run is not None:
            write_csv(os.path.join(os.path.dirname(self.last_path), CSV_NAME), self.run.history)
        if self.keep is not None:
            for old in self._older_checkpoints()[:-self.keep]:
                os.remove(old)

    def _older_checkpoints(self):
        """This run's checkpoints, by epoch: the files the path template names, up to the last one written."""
        folder = os.path.dirname(self.last_path)
        prefix, _, suffix = os.path.basename(self.path_template).partition("{epoch:04d}")
        found = []
        for name in os.listdir(folder):
            epoch = name[len(prefix):len(name) - len(suffix)] if name.startswith(prefix) and name.endswith(
                suffix) else ""
            if len(epoch) == 4 and epoch.isdigit():
                found.append((int(epoch), os.path.join(folder, name)))
        last = int(os.path.basename(self.last_path)[len(prefix):len(prefix) + 4])
        return [path for epoch, path in sorted(found) if epoch <= last]
