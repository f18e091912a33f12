"""Matterport's ``mrcnn.model``: the :class:`MaskRCNN` facade, and what Matterport code imports from here.

``MaskRCNN`` only wires parts together: the graph (mrcnn.graph), the data pipeline (mrcnn.data),
training (mrcnn.training), weights (mrcnn.weights) and post-processing (mrcnn.postprocess).

    model = modellib.MaskRCNN(mode="training", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_coco.h5", by_name=True,
                       exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"])
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=30, layers="heads")

    model = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir="logs")
    model.load_weights(model.find_last())
    results = model.detect([image])   # [{"rois", "class_ids", "scores", "masks"}]
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
from collections import OrderedDict

import keras
import numpy as np

from mrcnn import checkpoints, distribute, export, utils
from mrcnn.anchors import generate_pyramid_anchors
from mrcnn.boxes import norm_boxes
from mrcnn.checkpoints import AtomicCheckpoint, TrainingDiverged
from mrcnn.data.generator import DataGenerator, data_generator, model_inputs
from mrcnn.data.image_meta import compose_image_meta, mold_image, parse_image_meta, unmold_image
from mrcnn.data.loading import load_image_gt
from mrcnn.data.targets import build_rpn_targets
from mrcnn.download import download_file
from mrcnn.graph import MaskRCNNModel, build_inference_model, build_training_model
from mrcnn.imaging import resize_scale
from mrcnn.inputs import as_images
from mrcnn.postprocess import unmold_detections
from mrcnn.precise_bn import PreciseBatchNorm
from mrcnn.training import SGD, StopOnNonFinite, TrainingModel, layers_regex, set_trainable, tensorboard_callback
from mrcnn.weights import load_weights, save_weights

logger = logging.getLogger(__name__)

__all__ = [
    "MaskRCNN", "DataGenerator", "data_generator", "load_image_gt", "build_rpn_targets",
    "compose_image_meta", "parse_image_meta", "mold_image", "unmold_image", "log", "compute_backbone_shapes",
]

IMAGENET_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
MAX_MOLDED_PIXELS = 1 << 26  # detect(): a larger molded image is refused (its float32 input alone is 768 MiB)
CHECKPOINT_RE = re.compile(
    r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")


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


def compute_backbone_shapes(config, image_shape):
    """Matterport's ``[[height, width], ...]`` of the feature maps per ``BACKBONE_STRIDES`` entry."""
    return config.feature_shapes(image_shape)


def run_dirs(model_dir, name):
    """The run folders ``<name><YYYYmmddTHHMM>`` of a config NAME under ``model_dir``, oldest first (not
    those of ``<name>_other`` configs)."""
    name = (name or "mask_rcnn").lower()
    run_re = re.compile(re.escape(name) + r"\d{8}T\d{4}$")
    if not os.path.isdir(model_dir):
        return []
    return [os.path.join(model_dir, d) for d in sorted(os.listdir(model_dir)) if run_re.match(d)]


def checkpoints_of(run_dir):
    """The complete checkpoints of a run folder, by epoch (temporary files never count)."""
    return [os.path.join(run_dir, f) for f in sorted(os.listdir(run_dir))
            if f.startswith("mask_rcnn") and f.endswith(".h5")]


def find_last(model_dir, name):
    """Path of the last checkpoint of the most recent run of config NAME ``name`` that has one."""
    for run_dir in reversed(run_dirs(model_dir, name)):
        found = checkpoints_of(run_dir)
        if found:
            return found[-1]
    name = (name or "mask_rcnn").lower()
    raise FileNotFoundError(
        f"Could not find a checkpoint of {name!r} in {os.path.abspath(model_dir)} "
        f"(looked for {name}*/mask_rcnn_*.h5)")


def _jit_setting(config):
    """``Config.JIT_COMPILE`` as Keras's ``jit_compile`` argument (None is Keras's "auto")."""
    return "auto" if config.JIT_COMPILE is None else bool(config.JIT_COMPILE)


class MaskRCNN:
    """Mask R-CNN in training or inference mode; ``keras_model`` is the underlying Keras model."""

    def __init__(self, mode, config, model_dir, seed=None):
        if mode not in ("training", "inference"):
            raise ValueError(f"MaskRCNN: mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.seed = seed
        self.epoch = 0
        self.history = []  # rows of training_log.csv, restored with a checkpoint's training state
        self._resume_state = None  # the training state of the checkpoint loaded last, until train() uses it
        self._last_checkpoint = None
        self.set_log_dir()
        # GPU_COUNT > 1 or TF_CONFIG: the training model lives in a tf.distribute strategy's scope.
        self.strategy = distribute.strategy_for(config) if mode == "training" else None
        with self._scope():
            self.keras_model = self.build(mode, config)
        self._anchor_cache = {}
        self._compiled_trainable = None  # the trainable variables train() last compiled the model for

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the Keras model for ``mode``."""
        if mode == "training":
            return build_training_model(
                config, model_class=lambda inputs, outputs, name: TrainingModel(
                    inputs, outputs, name=name, loss_weights=config.LOSS_WEIGHTS,
                    weight_decay=config.WEIGHT_DECAY),
                seed=self.seed)
        model = build_inference_model(config)
        if config.JIT_COMPILE is not None:  # predict_on_batch (detect) reads it; None keeps Keras's auto
            model.jit_compile = bool(config.JIT_COMPILE)
        return model

    def get_anchors(self, image_shape):
        """Normalized anchors ``[num_anchors, 4]`` for a molded image shape (cached).

        As Matterport, keeps the pixel anchors of the last call in ``self.anchors`` (inspect_model uses them).
        """
        key = tuple(int(v) for v in image_shape[:2])
        if key not in self._anchor_cache:
            anchors = generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS,
                self.config.feature_shapes(key), self.config.BACKBONE_STRIDES,
                self.config.RPN_ANCHOR_STRIDE)
            self._anchor_cache[key] = (anchors, norm_boxes(anchors, key))
        self.anchors, normalized = self._anchor_cache[key]
        return normalized

    def get_trainable_layers(self):
        """Matterport's list of the layers that have weights (nested models count as one layer)."""
        return [layer for layer in self.keras_model.layers if layer.weights]

    def ancestor(self, tensor, name, checked=None):
        """Matterport's TF1 graph walk, as far as Keras 3 can answer it: the output of the layer ``name`` names.

        TF1 tensor names (``"ROI/rpn_non_max_suppression:0"``) have no Keras 3 counterpart; the layer part
        (``ROI``) is looked up and its output returned (``tensor`` is accepted and not used). Unknown layers
        raise ``ValueError`` listing what exists; for values, use ``run_graph([image], [(name, layer)])``.
        """
        layer_name = name.split("/")[0].split(":")[0]
        try:
            return self.keras_model.get_layer(layer_name).output
        except ValueError:
            names = ", ".join(layer.name for layer in self.keras_model.layers if not layer.name.startswith("input"))
            raise ValueError(
                f"ancestor: no layer {layer_name!r} (from {name!r}); Keras 3 has no TF1 graph to walk. The model's "
                f"layers: {names}. Use run_graph([image], [(label, layer_name)]) for their values") from None

    # ------------------------------------------------------------------ weights and logs
    def set_log_dir(self, model_path=None):
        """Set the run's log dir and the epoch counter; a checkpoint path resumes its run and epoch."""
        self.epoch = 0
        now = datetime.datetime.now()
        if model_path:
            match = CHECKPOINT_RE.match(os.path.abspath(model_path).replace("\\", "/"))
            if match:
                now = datetime.datetime(*(int(match.group(i)) for i in range(1, 6)))
                # The file of epoch N was written after N epochs: training resumes at epoch N.
                self.epoch = int(match.group(6))
                if self.mode == "training":
                    logger.info("Re-starting from epoch %d", self.epoch)
        name = (self.config.NAME or "mask_rcnn").lower()
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M}")
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5")

    def find_last(self):
        """Path of the last checkpoint of the most recent run of this config's NAME."""
        return find_last(self.model_dir, self.config.NAME)

    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load Matterport-layout ``.h5`` weights (Matterport's files or this project's checkpoints).

        exclude: layer names to skip (implies by_name). Logs which model layers stayed as they were.
        A checkpoint of this project also restores the log dir and epoch counter and, in training mode, its
        training state (optimizer state, random generators, the CSV's rows: see mrcnn.checkpoints), which
        the next ``train`` call resumes from. Returns a :class:`mrcnn.weights.LoadReport`.
        """
        report = load_weights(self.keras_model, filepath, by_name=by_name, exclude=exclude)
        if report.not_in_file:
            logger.info("Layers not in %s, left as initialised: %s", filepath, ", ".join(report.not_in_file))
        self.set_log_dir(filepath)
        state = checkpoints.read_state(filepath) if self.mode == "training" else None
        self._resume_state = state if state is not None and state.epoch == self.epoch else None
        self.history = list(state.history) if self._resume_state else []
        self._last_checkpoint = os.path.abspath(filepath) if self._resume_state else None
        if self._resume_state and self._resume_state.seed is not None and self.seed != self._resume_state.seed:
            logger.warning("%s was trained with seed %s, this model has seed %s: batches will differ from the "
                           "run's", filepath, self._resume_state.seed, self.seed)
        return report

    def training_state(self, epoch):
        """The :class:`mrcnn.checkpoints.TrainingState` to store with the checkpoint of ``epoch``."""
        return checkpoints.TrainingState(
            epoch=epoch, seed=self.seed, train_call=dict(self._train_call), history=list(self.history),
            optimizer=checkpoints.optimizer_state(self.keras_model.optimizer),
            seed_generators=checkpoints.seed_generator_states(self.keras_model))

    def save_weights(self, filepath):
        """Write the weights in the same layout load_weights reads (atomically)."""
        save_weights(self.keras_model, filepath)

    def get_imagenet_weights(self):
        """Download the ImageNet-trained ResNet-50 weights (Keras 2 layer names) and return the path."""
        path = os.path.join(os.path.expanduser("~"), ".keras", "models",
                            os.path.basename(IMAGENET_WEIGHTS_URL))
        if not os.path.isfile(path):
            download_file(IMAGENET_WEIGHTS_URL, path, what="the ImageNet ResNet-50 weights",
                          hint="or pass --weights=none to start from random weights")
        return path

    # ------------------------------------------------------------------ training
    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Train only the layers whose name matches ``layer_regex`` (a preset name or a regex)."""
        return set_trainable(keras_model or self.keras_model, layers_regex(layer_regex),
                             verbose=verbose, indent=indent)

    def compile(self, learning_rate, momentum):
        """SGD with momentum, clipped by the global gradient norm (Matterport's Keras 2 ``clipnorm``);
        losses and decay come from the model. XLA as ``Config.JIT_COMPILE`` says."""
        with self._scope():
            optimizer = SGD(learning_rate=learning_rate, momentum=momentum,
                            global_clipnorm=self.config.GRADIENT_CLIP_NORM)
            if self.config.MIXED_PRECISION == "mixed_float16":  # float16 gradients underflow without it
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.keras_model.compile(optimizer=optimizer, jit_compile=_jit_setting(self.config))
            # Keras builds an optimizer inside the first traced step when no tf.distribute strategy is set; its
            # variables created there make TensorFlow trace the whole step twice (half of the first step's time)
            optimizer.build(self.keras_model.trainable_variables)
        self._compiled_trainable = None

    def _compile_for_training(self, learning_rate):
        """``compile``, unless train() compiled the model for these same trainable variables before: then its
        traced training step is kept and only the optimizer is reset as a new one would start (this learning
        rate, no momentum, step count 0), which spares a second ``train()`` with the same layers the tracing."""
        trainable = tuple(v.path for v in self.keras_model.trainable_variables)
        optimizer = getattr(self.keras_model, "optimizer", None)
        if (trainable == self._compiled_trainable and type(optimizer) is SGD
                and getattr(self.keras_model, "train_function", None) is not None):
            for variable in optimizer.variables:
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
            optimizer.learning_rate = learning_rate
            return
        self.compile(learning_rate, self.config.LEARNING_MOMENTUM)
        self._compiled_trainable = trainable

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None, workers=None, verbose=1):
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
        if self.mode != "training":
            raise ValueError("Create model in training mode.")
        config = self.config
        workers = workers or max(1, min(4, os.cpu_count() or 1))

        def generator(dataset, steps, seed_offset, batch_size=None, worker=0, **kwargs):
            seed = None if self.seed is None else self.seed + seed_offset + 1000 * worker
            kwargs.setdefault("workers", workers)
            return DataGenerator(dataset, config, shuffle=True, steps=steps, seed=seed, batch_size=batch_size,
                                 **kwargs)

        train_kwargs = dict(augmentation=augmentation, no_augmentation_sources=no_augmentation_sources)
        tf_config = distribute.parse_tf_config()
        if tf_config is None:  # one machine: batches of BATCH_SIZE, split across GPU_COUNT replicas
            train_data = _Batches(generator(train_dataset, config.STEPS_PER_EPOCH, 0, **train_kwargs), self.epoch)
            val_data = _Batches(generator(val_dataset, config.VALIDATION_STEPS, 1), self.epoch)
        else:  # several machines: each loads IMAGES_PER_GPU images per replica, its own images
            train_data = distribute.worker_dataset(
                self.strategy, lambda worker: generator(train_dataset, config.STEPS_PER_EPOCH, 0,
                                                        config.IMAGES_PER_GPU, worker, **train_kwargs),
                config.STEPS_PER_EPOCH, initial_epoch=self.epoch)
            val_data = distribute.worker_dataset(
                self.strategy, lambda worker: generator(val_dataset, config.VALIDATION_STEPS, 1,
                                                        config.IMAGES_PER_GPU, worker),
                config.VALIDATION_STEPS)
        # Only the chief writes checkpoints and logs (every process when there is one).
        self._train_call = {"layers": layers, "learning_rate": float(learning_rate), "epochs": int(epochs)}
        checkpoint = AtomicCheckpoint(self.checkpoint_path, run=self)
        checkpoint.last_path = self._last_checkpoint
        callbacks = [StopOnNonFinite(checkpoint)]
        if distribute.is_chief(tf_config):
            os.makedirs(self.log_dir, exist_ok=True)
            debris = checkpoints.clean_debris(self.log_dir)
            if debris:
                logger.info("Removed %d temporary files of an interrupted run from %s", len(debris), self.log_dir)
            # The log as of the checkpoint (a run killed after its checkpoint, before the CSV, lost a row).
            self.history = [row for row in self.history if row["epoch"] < self.epoch]
            if self.history:
                checkpoints.write_csv(os.path.join(self.log_dir, checkpoints.CSV_NAME), self.history)
            board = tensorboard_callback(self.log_dir)
            callbacks += ([board] if board is not None else []) + [checkpoint]
        if config.PRECISE_BN_BATCHES:
            if tf_config is None and getattr(self.strategy, "num_replicas_in_sync", 1) == 1:  # before the checkpoint
                callbacks.insert(1, PreciseBatchNorm(
                    generator(train_dataset, config.PRECISE_BN_BATCHES, 2, workers=1, **train_kwargs),
                    config.PRECISE_BN_BATCHES))
            else:
                logger.warning("PRECISE_BN_BATCHES is applied on one device only, not across several GPUs or "
                               "workers; the moving averages are kept")
        callbacks += list(custom_callbacks or [])

        if verbose:
            print(f"\nStarting at epoch {self.epoch}. LR={learning_rate}\n")
            print(f"Checkpoint Path: {self.checkpoint_path}")
        self.set_trainable(layers, verbose=0)
        self._compile_for_training(learning_rate)
        self._resume(self._resume_state)
        self._resume_state = None
        try:
            history = self.keras_model.fit(
                train_data, initial_epoch=self.epoch, epochs=epochs,
                steps_per_epoch=config.STEPS_PER_EPOCH, callbacks=callbacks,
                validation_data=val_data, validation_steps=config.VALIDATION_STEPS,
                shuffle=False, verbose=verbose)  # the batches come shuffled (reproducibly)
        except Exception as error:
            # NaN weights fail inside the graph (e.g. non-finite boxes) before any loss is seen.
            if isinstance(error, TrainingDiverged) or "finite" not in str(error):
                raise
            raise TrainingDiverged(callbacks[0].describe(
                f"the graph stopped on non-finite values ({str(error).strip().splitlines()[0][:200]})")) from None
        finally:
            self._last_checkpoint = checkpoint.last_path
        self.epoch = max(self.epoch, epochs)
        return history

    def _resume(self, state):
        """Continue the train() call a checkpoint was written in: its optimizer state and random generators
        (a later call of the same run, e.g. the next stage, starts them afresh, as it did the first time)."""
        if state is None:
            return
        if state.train_call != self._train_call:
            logger.info("Resuming at epoch %d with a new train() call %s (the checkpoint's was %s): fresh "
                        "optimizer state", self.epoch, self._train_call, state.train_call)
            return
        with self._scope():
            restored = checkpoints.restore_optimizer(
                self.keras_model.optimizer, self.keras_model.trainable_variables, state.optimizer)
            checkpoints.restore_seed_generators(self.keras_model, state.seed_generators)
        logger.info("Resumed the optimizer state of epoch %d (%d momentum slots)", self.epoch, restored)

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        """Resize and normalize images for the model.

        Returns ``molded_images`` ``[N, H, W, C]``, ``image_metas`` ``[N, IMAGE_META_SIZE]`` and
        ``windows`` ``[N, (y1, x1, y2, x2)]``. All images must mold to the same size (true in "square"
        mode; detect() groups images by molded size otherwise).
        """
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded_image, window, scale, _, _ = utils.resize_image(
                image, min_dim=self.config.IMAGE_MIN_DIM, min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM, mode=self.config.IMAGE_RESIZE_MODE)
            molded_images.append(mold_image(molded_image, self.config))
            image_metas.append(compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                                  np.zeros([self.config.NUM_CLASSES], dtype=np.int32)))
            windows.append(window)
        return np.stack(molded_images), np.stack(image_metas), np.array(windows)

    def _check_molded_size(self, image, index):
        """Refuse, naming the image, one that would mold to nothing or to more than MAX_MOLDED_PIXELS."""
        config = self.config
        height, width = image.shape[:2]
        scale = resize_scale(height, width, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE,
                             config.IMAGE_RESIZE_MODE)
        if config.IMAGE_RESIZE_MODE != "none":
            size = (round(height * scale), round(width * scale))
            if min(size) < 1:
                raise ValueError(
                    f"detect: images[{index}] of shape {image.shape} would shrink to {size[0]}x{size[1]} pixels "
                    f"({config.IMAGE_RESIZE_MODE} mode, IMAGE_MAX_DIM={config.IMAGE_MAX_DIM}): its aspect ratio "
                    f"is too extreme; split or pad it first")
            if size[0] * size[1] > MAX_MOLDED_PIXELS:
                raise ValueError(
                    f"detect: images[{index}] of shape {image.shape} would grow to {size[0]}x{size[1]} pixels "
                    f"({config.IMAGE_RESIZE_MODE} mode scales the short side up to IMAGE_MIN_DIM="
                    f"{config.IMAGE_MIN_DIM}), more than {MAX_MOLDED_PIXELS} pixels; split or pad it first")

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's detections in original-image pixels; see mrcnn.postprocess.unmold_detections."""
        return unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window)

    def detect(self, images, verbose=0):
        """Detect instances in any number of images of any size and channel layout.

        images: a list of images, a single ``[H, W, C]`` (or ``[H, W]``) array as one image, or a
        ``[N, H, W, C]`` array as N images; uint8, bool, 16-bit or float (0..1 or 0..255) pixels, 1, 3 or 4
        channels (see mrcnn.inputs). Paths, empty images, NaN pixels and images that would mold to an empty
        or oversized input raise ``ValueError``/``TypeError`` naming the image's index.
        Returns one dict per image: ``rois`` ``[N, (y1, x1, y2, x2)]`` int32 image pixels, ``class_ids``
        ``[N]`` int32, ``scores`` ``[N]`` float32, ``masks`` ``[H, W, N]`` bool.

        One path on every backend, Matterport's: each image molded in NumPy (``mold_inputs``), the network on up
        to BATCH_SIZE images of one molded size at a time, then each image's detections unmolded in NumPy
        (mrcnn.postprocess: boxes to image pixels, masks pasted at the image size). The exported model does the
        same in Keras layers (mrcnn.export), tested equal to this.
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        images = as_images(images)
        if verbose:
            print(f"Processing {len(images)} images")
        for i, image in enumerate(images):
            self._check_molded_size(image, i)
        results = [None] * len(images)
        molded = [self.mold_inputs([image]) for image in images]  # (molded [1, H, W, 3], meta, window) each
        for chunk in self._network_batches([m[0].shape for m in molded]):
            outputs = self._predict(np.concatenate([molded[i][0] for i in chunk]),
                                    np.concatenate([molded[i][1] for i in chunk]))
            for j, i in enumerate(chunk):
                rois, class_ids, scores, masks = unmold_detections(
                    outputs[0][j], outputs[3][j], images[i].shape, molded[i][0].shape[1:], molded[i][2][0])
                results[i] = {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
        return results

    def _network_batches(self, molded_shapes):
        """Indices of the images the network runs on together: the same molded size, at most BATCH_SIZE."""
        groups = {}
        for i, shape in enumerate(molded_shapes):
            groups.setdefault(tuple(shape[1:]), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.config.BATCH_SIZE):
                yield indices[start:start + self.config.BATCH_SIZE]

    def export(self, path, format="saved_model"):  # noqa: A002
        """Export the whole inference path (molding, network, unmolding) as ``format``: "saved_model" (serving
        signature: uint8 image ``[H, W, 3]`` -> boxes, class_ids, scores, masks, count), "keras" (a ``.keras``
        file) or "onnx". See mrcnn.export.export."""
        return export.export(self, path, format=format)

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (as load_image_gt + mold_image give them).

        Returns Matterport's dicts with coordinates in the molded image's original size (from the meta).
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        outputs = self._predict(np.asarray(molded_images, np.float32), np.asarray(image_metas))
        results = []
        for j, meta in enumerate(image_metas):
            parsed = parse_image_meta(meta)
            rois, class_ids, scores, masks = unmold_detections(
                outputs[0][j], outputs[3][j], parsed["original_image_shape"], molded_images[j].shape,
                parsed["window"])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
        return results

    def _inference_inputs(self, molded_images, image_metas):
        """The inference model's inputs: molded images and their metas (the anchors are computed inside)."""
        return [np.asarray(molded_images, np.float32), np.asarray(image_metas).astype(np.float32)]

    def _predict(self, molded_images, image_metas):
        outputs = self.keras_model.predict_on_batch(self._inference_inputs(molded_images, image_metas))
        return [keras.ops.convert_to_numpy(o) for o in outputs]

    def run_graph(self, images, outputs, image_metas=None):
        """Run the graph on ``images`` and return the named intermediate tensors (for notebooks).

        outputs: ``[(name, layer_name_or_tensor), ...]``; a layer name gives that top-level layer's
        output, a list of arrays for a layer with several outputs (``proposal_targets``).
        In inference mode ``images`` are images (molded here); in training mode, the generator's
        seven input arrays. Returns an ordered dict ``{name: numpy array (or list of them)}``; per-ROI head
        layers come back as Matterport's ``[batch, rois, ...]`` (``mrcnn_mask`` ``[1, 100, 28, 28, 81]``).
        """
        model = self.keras_model
        tensors = [model.get_layer(t).output if isinstance(t, str) else t for _, t in outputs]
        flat = [t for tensor in tensors for t in (tensor if isinstance(tensor, (list, tuple)) else [tensor])]
        probe = MaskRCNNModel(model.inputs, flat)  # traced as the model is (XLA or not)
        probe.jit_compile = model.jit_compile
        if self.mode == "inference":
            images = as_images(images, caller="run_graph")
            molded_images, metas, _ = self.mold_inputs(images)  # as detect() molds them
            if image_metas is not None:
                metas = image_metas
            values = probe.predict_on_batch(self._inference_inputs(molded_images, metas))
            batch = len(molded_images)
        else:
            values = probe.predict_on_batch(list(images))
            batch = len(images[0])
        values = [keras.ops.convert_to_numpy(v) for v in (values if len(flat) > 1 else [values])]
        result = OrderedDict()
        for (name, target), tensor in zip(outputs, tensors):
            if isinstance(tensor, (list, tuple)):
                result[name], values = values[:len(tensor)], values[len(tensor):]
            else:
                result[name], values = _with_batch_axis(values[0], target, batch), values[1:]
        return result


def _stacked(arrays):
    """Arrays with a leading batch axis, concatenated along it (the array itself when there is one)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _with_batch_axis(value, layer_name, batch):
    """A per-ROI head output computed on ``[batch * rois, ...]`` (``mrcnn_mask``, ``mrcnn_class_logits``, the
    head's inner layers), asked for by layer name or by that layer's output tensor, as Matterport's
    ``[batch, rois, ...]``; anything else unchanged."""
    if not isinstance(layer_name, str):  # a layer's output tensor, as Matterport's notebooks pass them
        history = getattr(layer_name, "_keras_history", None)
        layer_name = history.operation.name if history is not None else ""
    per_roi = layer_name.startswith(("mrcnn_", "roi_align_"))
    if per_roi and value.ndim >= 1 and batch and value.shape[0] != batch and value.shape[0] % batch == 0:
        return value.reshape((batch, value.shape[0] // batch) + value.shape[1:])
    return value


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
        return (tuple(model_inputs(inputs)),)
