"""The training loop behind ``MaskRCNN.train``: data, callbacks, compiling, resuming, ``fit``.

Functions of the run (a training-mode :class:`mrcnn.model.MaskRCNN`): its Keras model, Config, seed, epoch
counter, run folder and the training state its last loaded checkpoint carried.
"""

from __future__ import annotations

import logging
import os

import keras

from mrcnn import checkpoints, distribute
from mrcnn.checkpoints import AtomicCheckpoint, TrainingDiverged
from mrcnn.data.generator import DataGenerator, from_worker, model_inputs
from mrcnn.precise_bn import PreciseBatchNorm
from mrcnn.training import (
    SGD,
    RunSchedule,
    StopOnNonFinite,
    check_layers,
    run_learning_rate,
    step_losses_callback,
    tensorboard_callback,
)

logger = logging.getLogger(__name__)


def jit_setting(config):
    """``Config.JIT_COMPILE`` as Keras's ``jit_compile`` argument (None is Keras's "auto")."""
    return "auto" if config.JIT_COMPILE is None else bool(config.JIT_COMPILE)


def compile_model(run, learning_rate, momentum):
    """SGD with momentum, clipped by the global gradient norm (Matterport's Keras 2 ``clipnorm``);
    losses and decay come from the model. XLA as ``Config.JIT_COMPILE`` says."""
    with run.scope():
        optimizer = SGD(learning_rate=learning_rate, momentum=momentum,
                        global_clipnorm=run.config.GRADIENT_CLIP_NORM)
        if run.config.MIXED_PRECISION == "mixed_float16":  # float16 gradients underflow without it
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        run.keras_model.compile(optimizer=optimizer, jit_compile=jit_setting(run.config))
        # Keras builds an optimizer inside the first traced step when no tf.distribute strategy is set; its
        # variables created there make TensorFlow trace the whole step twice (half of the first step's time)
        optimizer.build(run.keras_model.trainable_variables)
    run._compiled_trainable = None


def _compile_for_training(run, learning_rate):
    """``compile``, unless train() compiled the model for these same trainable variables before: then its
    traced training step is kept and only the optimizer is reset as a new one would start (this learning
    rate, no momentum, step count 0), which spares a second ``train()`` with the same layers the tracing."""
    trainable = tuple(v.path for v in run.keras_model.trainable_variables)
    optimizer = getattr(run.keras_model, "optimizer", None)
    if (trainable == run._compiled_trainable and type(optimizer) is SGD and not isinstance(learning_rate, RunSchedule)
            and getattr(run.keras_model, "train_function", None) is not None):
        for variable in optimizer.variables:
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        optimizer.learning_rate = learning_rate
        return
    run.compile(learning_rate, run.config.LEARNING_MOMENTUM)
    # a traced step with a float learning rate can take the next call's (a schedule's offset is traced in)
    run._compiled_trainable = None if isinstance(learning_rate, RunSchedule) else trainable


def training_state(run, epoch):
    """The :class:`mrcnn.checkpoints.TrainingState` to store with the checkpoint of ``epoch``."""
    return checkpoints.TrainingState(
        epoch=epoch, seed=run.seed, train_call=dict(run._train_call), history=list(run.history),
        optimizer=checkpoints.optimizer_state(run.keras_model.optimizer, run.keras_model.trainable_variables),
        seed_generators=checkpoints.seed_generator_states(run.keras_model))


def data_workers(workers=None, use_multiprocessing=None, cores=None):
    """``(workers, use_multiprocessing)`` for loading training batches. Default: one worker per core, at most 4;
    in processes (forked by ``keras.utils.PyDataset``) where there are more than 2 cores, on threads otherwise.
    Threads share the GIL; processes scale with the cores (benchmarks/bench_data.py) and each holds its own copy
    of what it loads, but on 2 cores the training loop itself needs one of them. A worker count below 1 is a
    ``ValueError``."""
    cores = cores or os.cpu_count() or 1
    if workers is None:
        workers = max(1, min(4, cores))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"train: workers={workers!r}; expected an integer >= 1 (data-loading workers)")
    if use_multiprocessing is None:
        use_multiprocessing = cores > 2
    return workers, bool(use_multiprocessing)


def train(run, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
          custom_callbacks=None, no_augmentation_sources=None, workers=None, use_multiprocessing=None, verbose=1):
    """Train until epoch ``epochs`` (counted over all calls, as Matterport's ``initial_epoch``).

    layers: "heads", "3+", "4+", "5+", "all", or a regex of layer names to train.
    Writes ``<log_dir>/mask_rcnn_<name>_<epoch>.h5`` after each epoch (weights and training state,
    see mrcnn.checkpoints), TensorBoard events, and ``<log_dir>/training_log.csv`` with the five losses,
    their ``val_`` twins and the learning rate.

    Resuming (after ``load_weights(checkpoint)``) continues the run: data order and augmentation from
    the checkpoint's epoch, and, when this call is the one the checkpoint was written in (same
    ``layers``, ``learning_rate`` and ``epochs``), its optimizer state and random generators.
    The first NaN or infinite loss stops training with :class:`mrcnn.checkpoints.TrainingDiverged`.
    """
    if run.mode != "training":
        raise ValueError("Create model in training mode.")
    learning_rate = run_learning_rate(learning_rate, run.config.LEARNING_RATE_WARMUP_STEPS)
    check_layers(run.keras_model, layers)
    config = run.config
    workers, use_multiprocessing = data_workers(workers, use_multiprocessing)

    def generator(dataset, steps, seed_offset, batch_size=None, worker=0, **kwargs):
        seed = None if run.seed is None else run.seed + seed_offset + 1000 * worker
        kwargs.setdefault("workers", workers)
        kwargs.setdefault("use_multiprocessing", use_multiprocessing and kwargs["workers"] > 1)
        return DataGenerator(dataset, config, shuffle=True, steps=steps, seed=seed, batch_size=batch_size,
                             **kwargs)

    train_kwargs = dict(augmentation=augmentation, no_augmentation_sources=no_augmentation_sources)
    tf_config = distribute.parse_tf_config()
    validate = val_dataset is not None and config.VALIDATION_STEPS > 0
    val_data = None
    if tf_config is None:  # one machine: batches of BATCH_SIZE, split across GPU_COUNT replicas
        train_data = _Batches(generator(train_dataset, config.STEPS_PER_EPOCH, 0, **train_kwargs), run.epoch)
        if validate:
            val_data = _Batches(generator(val_dataset, config.VALIDATION_STEPS, 1), run.epoch)
    else:  # several machines: each loads IMAGES_PER_GPU images per replica, its own images
        train_data = distribute.worker_dataset(
            run.strategy, lambda worker: generator(train_dataset, config.STEPS_PER_EPOCH, 0,
                                                    config.IMAGES_PER_GPU, worker, **train_kwargs),
            config.STEPS_PER_EPOCH, initial_epoch=run.epoch)
        if validate:
            val_data = distribute.worker_dataset(
                run.strategy, lambda worker: generator(val_dataset, config.VALIDATION_STEPS, 1,
                                                        config.IMAGES_PER_GPU, worker),
                config.VALIDATION_STEPS)
    # Only the chief writes checkpoints and logs (every process when there is one).
    rate = learning_rate.get_config() if isinstance(learning_rate, RunSchedule) else float(learning_rate)
    run._train_call = {"layers": layers, "learning_rate": rate, "epochs": int(epochs)}
    if distribute.is_chief(tf_config):
        run.make_log_dir()  # a new run claims a folder of its own before the checkpoint path is taken
    checkpoint = AtomicCheckpoint(run.checkpoint_path, run=run, keep=config.CHECKPOINTS_TO_KEEP)
    checkpoint.last_path = run._last_checkpoint
    callbacks = [StopOnNonFinite(checkpoint)]
    if distribute.is_chief(tf_config):
        debris = checkpoints.clean_debris(run.log_dir)
        if debris:
            logger.info("Removed %d temporary files of an interrupted run from %s", len(debris), run.log_dir)
        # The log as of the checkpoint (a run killed after its checkpoint, before the CSV, lost a row).
        run.history = [row for row in run.history if row["epoch"] < run.epoch]
        if run.history:
            checkpoints.write_csv(os.path.join(run.log_dir, checkpoints.CSV_NAME), run.history)
        board = tensorboard_callback(run.log_dir)
        steps = step_losses_callback(run.log_dir, config.TENSORBOARD_EVERY_STEPS, config.STEPS_PER_EPOCH)
        callbacks += [c for c in (board, steps) if c is not None] + [checkpoint]
    if config.PRECISE_BN_BATCHES:
        if tf_config is None and getattr(run.strategy, "num_replicas_in_sync", 1) == 1:  # before the checkpoint
            callbacks.insert(1, PreciseBatchNorm(
                generator(train_dataset, config.PRECISE_BN_BATCHES, 2, workers=1, **train_kwargs),
                config.PRECISE_BN_BATCHES))
        else:
            logger.warning("PRECISE_BN_BATCHES is applied on one device only, not across several GPUs or "
                           "workers; the moving averages are kept")
    callbacks += list(custom_callbacks or [])

    if verbose:
        shown = learning_rate.get_config() if isinstance(learning_rate, RunSchedule) else learning_rate
        print(f"\nStarting at epoch {run.epoch}. LR={shown}\n")
        print(f"Checkpoint Path: {run.checkpoint_path}")
    run.set_trainable(layers, verbose=0)
    _compile_for_training(run, learning_rate)
    _resume(run, run._resume_state)
    run._resume_state = None
    if isinstance(learning_rate, RunSchedule):  # the run's steps before this call (a resumed call: before it began)
        steps_done = int(checkpoints.inner_optimizer(run.keras_model.optimizer).iterations)
        learning_rate.offset = run.epoch * config.STEPS_PER_EPOCH - steps_done
    try:
        history = run.keras_model.fit(
            train_data, initial_epoch=run.epoch, epochs=epochs,
            steps_per_epoch=config.STEPS_PER_EPOCH, callbacks=callbacks,
            validation_data=val_data, validation_steps=config.VALIDATION_STEPS if validate else None,
            shuffle=False, verbose=verbose)  # the batches come shuffled (reproducibly)
    except Exception as error:
        # NaN weights fail inside the graph (e.g. non-finite boxes) before any loss is seen.
        if isinstance(error, TrainingDiverged) or "finite" not in str(error):
            raise
        raise TrainingDiverged(callbacks[0].describe(
            f"the graph stopped on non-finite values ({str(error).strip().splitlines()[0][:200]})")) from None
    finally:
        run._last_checkpoint = checkpoint.last_path
    run.epoch = max(run.epoch, epochs)
    return history


def _resume(run, state):
    """Continue the train() call a checkpoint was written in: its optimizer state and random generators
    (a later call of the same run, e.g. the next stage, starts them afresh, as it did the first time)."""
    if state is None:
        return
    if state.train_call != run._train_call:
        logger.info("Resuming at epoch %d with a new train() call %s (the checkpoint's was %s): fresh "
                    "optimizer state", run.epoch, run._train_call, state.train_call)
        return
    with run.scope():
        restored = checkpoints.restore_optimizer(
            run.keras_model.optimizer, run.keras_model.trainable_variables, state.optimizer)
        checkpoints.restore_seed_generators(run.keras_model, state.seed_generators)
    logger.info("Resumed the optimizer state of epoch %d (%d momentum slots)", run.epoch, restored)


class _Batches(keras.utils.PyDataset):
    """Adapts a DataGenerator to ``fit``: batches as ``(inputs,)`` (the losses need no ``y``).

    An endless stream: with ``steps_per_epoch`` given, Keras keeps one iterator across epochs, so batch
    ``k`` of the stream is batch ``k % steps`` of epoch ``first_epoch + k // steps``, whatever the workers
    prefetch and however often Keras calls ``on_epoch_end`` (twice per epoch for validation data). A
    resumed run (``first_epoch`` = the checkpoint's epoch) sees exactly the batches the first run would.
    """

    def __init__(self, generator, first_epoch=0):
        super().__init__(workers=generator.workers, use_multiprocessing=generator.use_multiprocessing,
                         max_queue_size=generator.max_queue_size)
        self.generator = generator
        self.first_epoch = int(first_epoch)
        self.steps = len(generator)

    @property
    def num_batches(self):
        return None  # endless

    def __getitem__(self, index):
        inputs, _ = self.generator.batch_at(self.first_epoch + index // self.steps, index % self.steps)
        return from_worker((tuple(model_inputs(inputs)),))
