"""Training machinery: the Keras model that sums the named losses, layer presets, checkpoints.

The training graph computes its five losses as outputs (see mrcnn.graph). :class:`TrainingModel` adds
them up with ``LOSS_WEIGHTS`` plus Matterport's L2 weight decay, and reports each one under its own name
(progress bar, ``val_`` twins, TensorBoard, CSV) through Keras metrics, so ``fit`` and ``evaluate`` work
as usual.
"""

from __future__ import annotations

import logging
import os
import re

import keras
import numpy as np
from keras import ops

from mrcnn import ops as mops
from mrcnn.checkpoints import AtomicCheckpoint, TrainingDiverged, inner_optimizer  # noqa: F401  (re-exported)
from mrcnn.graph import MaskRCNNModel
from mrcnn.losses import LOSS_NAMES

logger = logging.getLogger(__name__)

# Matterport's presets for MaskRCNN.train(layers=...)
LAYER_PRESETS = {
    # all layers but the backbone
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # from a specific ResNet stage and up
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # all layers
    "all": ".*",
}


class TrainingModel(MaskRCNNModel):
    """Functional Mask R-CNN training model whose last five outputs are the named losses.

    ``loss_weights``: ``{loss_name: weight}``; ``weight_decay``: L2 factor, applied as Matterport
    does (``weight_decay * sum(w**2) / size(w)`` per trainable weight, gamma and beta excluded).
    """

    def __init__(self, *args, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights = dict(loss_weights or {name: 1.0 for name in LOSS_NAMES})
        self.weight_decay = float(weight_decay)
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]

    def _named_losses(self, y_pred):
        return list(y_pred[-len(LOSS_NAMES):])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = 0.0
        for name, value in zip(LOSS_NAMES, self._named_losses(y_pred)):
            total = total + self.loss_weights.get(name, 1.0) * ops.mean(value)
        if self.weight_decay:
            decay = [
                ops.sum(ops.square(w)) / float(max(1, int(np.prod(w.shape))))
                for w in self.trainable_weights
                if w.name not in ("gamma", "beta")
            ]
            if decay:
                total = total + self.weight_decay * ops.sum(ops.stack(decay))
        # tf.distribute sums the replicas' gradients: each contributes its share (weight decay once).
        return total / float(mops.replicas_in_sync())

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for tracker, value in zip(self.loss_trackers, self._named_losses(y_pred)):
            tracker.update_state(ops.mean(value))
        return self.get_metrics_result()


class SGD(keras.optimizers.SGD):
    """Keras's SGD, whose ``global_clipnorm`` sees the whole batch's gradient under tf.distribute.

    Keras clips each replica's share of the gradient before summing the shares: with GPU_COUNT > 1
    that is neither Matterport's clipping nor one device's. Here the shares are summed first, clipped
    by their global norm, and handed on divided by the number of replicas (Keras sums them again), so
    any number of GPUs takes the step one device would.
    """

    def apply(self, grads, trainable_variables=None):
        replicas = mops.replicas_in_sync()
        if replicas > 1 and self.global_clipnorm:
            import tensorflow as tf  # replicas exist only under tf.distribute

            context = tf.distribute.get_replica_context()
            grads = list(grads)
            present = [i for i, g in enumerate(grads) if g is not None]
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
            clipped, _ = tf.clip_by_global_norm(summed, self.global_clipnorm)
            for i, g in zip(present, clipped):
                grads[i] = g / float(replicas)
        return super().apply(grads, trainable_variables)


def layers_regex(layers):
    """A preset name ("heads", "3+", "4+", "5+", "all") or a regular expression, as a regex."""
    return LAYER_PRESETS.get(layers, layers)


def check_layers(model, layers):
    """``layers`` as a regex that selects at least one layer with weights of ``model`` (nested models entered),
    else a ``ValueError`` naming it: a typo ("6+") would otherwise train nothing."""
    regex = layers_regex(layers)
    try:
        pattern = re.compile(regex)
    except (re.error, TypeError) as error:
        raise ValueError(f"train: layers={layers!r} is neither a preset ({', '.join(LAYER_PRESETS)}) nor a "
                         f"regular expression ({error})") from None

    def names(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                yield from names(layer)
            elif layer.weights:
                yield layer.name

    if not any(pattern.fullmatch(name) for name in names(model)):
        raise ValueError(f"train: layers={layers!r} selects no layer with weights; use a preset "
                         f"({', '.join(LAYER_PRESETS)}) or a regex of layer names, e.g. r\"mrcnn_.*\"")
    return regex


class RunSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate evaluated at the run's global step: the optimizer's step count in this ``train()`` call
    plus ``offset``, the run's steps before it (set by the training loop). ``schedule``: a
    ``LearningRateSchedule`` of the global step, or a float; ``warmup_steps``: linear warm-up from
    ``warmup_factor`` of it over the first global steps."""

    def __init__(self, schedule, warmup_steps=0, warmup_factor=0.001):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.offset = 0

    def __call__(self, step):
        step = ops.cast(step, "float32") + float(self.offset)
        if isinstance(self.schedule, keras.optimizers.schedules.LearningRateSchedule):
            rate = ops.cast(self.schedule(step), "float32")
        else:
            rate = ops.convert_to_tensor(float(self.schedule), "float32")
        if self.warmup_steps:
            progress = ops.minimum(step / float(self.warmup_steps), 1.0)
            rate = rate * (self.warmup_factor + (1.0 - self.warmup_factor) * progress)
        return rate

    def get_config(self):
        inner = self.schedule
        if isinstance(inner, keras.optimizers.schedules.LearningRateSchedule):
            inner = {"class_name": type(inner).__name__, "config": inner.get_config()}
        return {"schedule": inner, "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor}


def run_learning_rate(learning_rate, warmup_steps):
    """What the optimizer takes for ``train(learning_rate=...)``: a float as it is (Matterport: constant in each
    call), else a :class:`RunSchedule` (a schedule, or a float with warm-up), after checking the value."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return RunSchedule(learning_rate)
    learning_rate = check_learning_rate(learning_rate)
    return RunSchedule(learning_rate, warmup_steps) if warmup_steps else learning_rate


def check_learning_rate(learning_rate):
    """A positive, finite learning rate as a float, else a ``ValueError`` naming the value."""
    try:
        value = float(learning_rate)
    except (TypeError, ValueError):
        value = None
    if isinstance(learning_rate, bool) or value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"train: learning_rate={learning_rate!r}; expected a positive number (Matterport's default: "
                         f"Config.LEARNING_RATE = 0.001) or a keras.optimizers.schedules.LearningRateSchedule")
    return value


def set_trainable(model, layer_regex, verbose=0, indent=0):
    """Make layers whose name fully matches ``layer_regex`` trainable and freeze the others.

    Nested models (``rpn_model``) are entered, as Matterport. Returns the names of trainable layers.
    """
    trainable_names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if verbose > 0:
                print(" " * indent + f"In model: {layer.name}")
            inner = set_trainable(layer, layer_regex, verbose=verbose, indent=indent + 4)
            layer.trainable = bool(inner) or not layer.weights
            if inner:  # keras re-enables inner layers when the model is made trainable
                set_trainable(layer, layer_regex, verbose=0)
            trainable_names.extend(inner)
            continue
        if not layer.weights:
            continue
        trainable = bool(re.fullmatch(layer_regex, layer.name))
        layer.trainable = trainable
        if trainable:
            trainable_names.append(layer.name)
            if verbose > 0:
                print(" " * indent + f"{layer.name:20}   ({layer.__class__.__name__})")
    return trainable_names


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first training step whose loss is NaN or infinite, with one clear message.

    Raises :class:`mrcnn.checkpoints.TrainingDiverged` naming the loss, the epoch and step, and the
    learning rate; the epoch's checkpoint is not written, so the last good one stays the last.
    """

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint = checkpoint  # the AtomicCheckpoint, for the last good file in the message
        self.epoch = 0
        self.step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = batch
        self._check(logs, list(LOSS_NAMES) + ["loss"], f"step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):  # before the checkpoint: validation losses too
        self._check(logs, sorted(logs or {}), "the end of the epoch")

    def _check(self, logs, names, where):
        for name in names:
            value = (logs or {}).get(name)
            if value is not None and not np.isfinite(float(np.asarray(value))):
                raise TrainingDiverged(self.describe(f"{name} is {float(np.asarray(value))}", where))

    def describe(self, what, where=None):
        """``what`` at this epoch and step, with the learning rate and the last good checkpoint."""
        where = where or f"step {self.step + 1}"
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = inner_optimizer(optimizer)
        lr = float(np.asarray(optimizer.learning_rate)) if optimizer is not None else float("nan")
        last = getattr(self.checkpoint, "last_path", None)
        return (f"training diverged: {what} at epoch {self.epoch + 1}, {where} (learning rate "
                f"{lr:g}). Training stopped; the last good checkpoint is "
                f"{last or 'the one training started from (none written in this call)'}. Try a lower learning "
                f"rate (e.g. a 0.1 factor in --schedule), GRADIENT_CLIP_NORM, or look for bad boxes or masks "
                f"in the data (mrcnn.visualize.display_instances on a few training images).")


def tensorboard_callback(log_dir):
    """Keras's TensorBoard callback where its summary writer can be imported (TensorFlow installed, whatever the
    Keras backend), else None and a one-line notice: training logs to the progress bar and the CSV anyway."""
    if not _has_tensorflow():
        logger.warning("TensorBoard logging is off: its summary writer needs TensorFlow, which is not installed "
                       "(the losses still go to the progress bar and %s/training_log.csv)", log_dir)
        return None
    return keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False)


def _has_tensorflow():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


class StepLosses(keras.callbacks.Callback):
    """The loss and the five named losses to TensorBoard every ``every`` training steps, under ``step/<name>`` at
    the run's global step (``epoch * steps_per_epoch + step``): each the mean over those steps, from Keras's
    running means over the epoch (``(k * m_k - j * m_j) / (k - j)`` for the steps after ``j`` up to ``k``).
    Written with TensorFlow's summary writer into ``<log_dir>/train`` beside the per-epoch curves."""

    def __init__(self, log_dir, every, steps_per_epoch):
        super().__init__()
        import tensorflow as tf

        self._tf = tf
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.every = int(every)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch, self.last_step, self.last_means = 0, 0, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.last_step, self.last_means = epoch, 0, {}

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every or not logs:
            return
        means = {name: float(np.asarray(logs[name])) for name in ("loss",) + tuple(LOSS_NAMES) if name in logs}
        with self.writer.as_default():
            for name, mean in means.items():
                window = (step * mean - self.last_step * self.last_means.get(name, 0.0)) / (step - self.last_step)
                self._tf.summary.scalar(f"step/{name}", window, step=self.epoch * self.steps_per_epoch + step)
        self.writer.flush()
        self.last_step, self.last_means = step, means

    def on_train_end(self, logs=None):
        self.writer.close()


def step_losses_callback(log_dir, every, steps_per_epoch):
    """:class:`StepLosses` where TensorFlow's summary writer is there and ``every`` > 0, else None."""
    return StepLosses(log_dir, every, steps_per_epoch) if every and _has_tensorflow() else None

