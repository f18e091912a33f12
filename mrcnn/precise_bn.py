"""Batch-norm statistics recomputed for the current weights ("precise BN").

With ``TRAIN_BN = True`` a batch-norm layer normalizes each training batch by that batch's mean and
variance, and keeps exponential moving averages (momentum 0.99, about the last 100 steps) for inference.
While the weights still move fast, those averages describe weights of many steps ago; inference then
normalizes with the wrong statistics, and the error compounds through a deep network. Detectron2's
``PreciseBN`` hook and Wu & Johnson ("Rethinking 'Batch' in BatchNorm", 2021) replace the averages by
statistics computed with the current weights: run N training batches forward in training mode (each
batch-norm layer normalizing with its batch statistics, as in a training step) and set each layer's
moving mean and variance to the mean over the N batches of its batch means and variances.

This matters most after local self-attention: its output is a softmax-weighted average of values, so its
spread is small against its mean, and a stale moving mean is off by several standard deviations (measured
on the synthetic main job; the note of the attention issue has the numbers). ``Config.PRECISE_BN_BATCHES``
turns it on in ``MaskRCNN.train``: after every epoch's training steps, before validation and the checkpoint.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from mrcnn.backbone import BatchNorm
from mrcnn.checkpoints import restore_seed_generators, seed_generator_states

logger = logging.getLogger(__name__)


def batch_stat_layers(model):
    """The batch-norm layers of ``model`` that normalize by batch statistics in training: trainable, and
    not built with ``train_bn=False`` (those, and frozen ones, always use their moving statistics)."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)   # TimeDistributed(BatchNorm) as well
        if not isinstance(inner, keras.layers.BatchNormalization) or not (layer.trainable and inner.trainable):
            continue
        if isinstance(inner, BatchNorm) and inner.train_bn is False:
            continue
        found.append((layer, inner))
    return found


class BatchNormRecalibrator:
    """Recomputes the moving statistics of a model's batch-statistics layers from training batches.

    model: the Keras training model; calling the recalibrator with an iterable of input tuples (what the
    model takes, e.g. the first N batches of a data generator) sets the statistics.
    """

    def __init__(self, model):
        self.model = model
        self.layers = batch_stat_layers(model)
        self._probe = None
        if self.layers:
            # Each layer's input, computed as in a training step (earlier layers normalizing by batch
            # statistics), reduced in the graph to its per-channel batch mean and variance and its row count.
            probe = keras.Model(model.inputs, [outer.input for outer, _ in self.layers])

            def moments(inputs):
                out = []
                for x in probe(inputs, training=True):
                    x = keras.ops.reshape(keras.ops.cast(x, "float32"), (-1, x.shape[-1]))
                    rows = keras.ops.shape(x)[0]
                    mean = keras.ops.mean(x, axis=0)
                    var = keras.ops.mean(keras.ops.square(x - mean), axis=0)   # biased, as the layer's own
                    out.append((mean, var, rows))
                return out

            self._probe = _compiled(moments)

    def __call__(self, batches):
        """Set the statistics from ``batches``; returns how many layers have batch statistics (0: nothing
        to do). A layer that no batch gives an input (a mask head on the positive ROIs of batches without
        any) keeps its averages."""
        if not self.layers:
            return 0
        moving = [(inner.moving_mean.numpy(), inner.moving_variance.numpy()) for _, inner in self.layers]
        seeds = seed_generator_states(self.model)  # the ROI sampling of training continues as without this
        means = [[] for _ in self.layers]
        variances = [[] for _ in self.layers]
        for inputs in batches:
            for i, (mean, var, rows) in enumerate(self._probe(tuple(inputs))):
                if not int(keras.ops.convert_to_numpy(rows)):   # e.g. a mask head on no positive ROI
                    continue
                means[i].append(keras.ops.convert_to_numpy(mean).astype(np.float64))
                variances[i].append(keras.ops.convert_to_numpy(var).astype(np.float64))
        # The probe ran the layers in training mode, which moved their averages: every layer gets either
        # the new statistics or, if no batch gave it an input (or there were no batches), its old ones back.
        restore_seed_generators(self.model, seeds)
        for (_, inner), m, v, (old_mean, old_var) in zip(self.layers, means, variances, moving):
            if m:
                old_mean, old_var = np.mean(m, axis=0), np.mean(v, axis=0)
            elif any(means):
                logger.info("Precise BN: %s saw no input in these batches; its moving averages stay", inner.name)
            inner.moving_mean.assign(np.asarray(old_mean).astype(inner.moving_mean.dtype))
            inner.moving_variance.assign(np.asarray(old_var).astype(inner.moving_variance.dtype))
        if not any(means):
            raise ValueError("BatchNormRecalibrator: no batches were given")
        return len(self.layers)


def _compiled(fn):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recalibrates batch-norm statistics after each epoch's training steps (before validation, or at the
    epoch's end without validation), from ``batches`` training batches of ``data`` (indexable: ``data[i]``
    is ``(inputs, targets)``, as mrcnn's DataGenerator). Put it before the checkpoint callback."""

    def __init__(self, data, batches):
        super().__init__()
        self.data = data
        self.batches = int(batches)
        self._recalibrator = None
        self._done_epoch = None
        self._epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_test_begin(self, logs=None):  # inside fit: validation of the epoch just trained
        self._recalibrate()

    def on_epoch_end(self, epoch, logs=None):
        self._recalibrate()

    def _recalibrate(self):
        if self._epoch is None or self._done_epoch == self._epoch:
            return
        if self._recalibrator is None:
            self._recalibrator = BatchNormRecalibrator(self.model)
        count = min(self.batches, len(self.data))
        changed = self._recalibrator(self.data[i][0] for i in range(count))
        self._done_epoch = self._epoch
        logger.info("Precise BN: recomputed the statistics of %d batch-norm layers from %d batches", changed, count)
