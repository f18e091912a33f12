"""Matterport's ``mrcnn.model``: the :class:`MaskRCNN` facade, and what Matterport code imports from here.

``MaskRCNN`` only wires parts together: the graph (mrcnn.graph), run folders (mrcnn.runs), weights and
checkpoints (mrcnn.weights, mrcnn.checkpoints), the training loop (mrcnn.trainer), inference
(mrcnn.inference) and the notebooks' introspection (mrcnn.introspection).

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
import logging
import os

from mrcnn import checkpoints, distribute, export, inference, introspection, runs, trainer
from mrcnn.anchors import generate_pyramid_anchors
from mrcnn.boxes import norm_boxes
from mrcnn.data.generator import DataGenerator, data_generator
from mrcnn.data.image_meta import compose_image_meta, mold_image, parse_image_meta, unmold_image
from mrcnn.data.loading import load_image_gt
from mrcnn.data.targets import build_rpn_targets
from mrcnn.download import download_file
from mrcnn.graph import build_inference_model, build_training_model
from mrcnn.introspection import log
from mrcnn.postprocess import unmold_detections
from mrcnn.runs import checkpoints_of, find_last, run_dirs
from mrcnn.training import TrainingModel, layers_regex, set_trainable
from mrcnn.weights import load_weights, save_weights

logger = logging.getLogger(__name__)

__all__ = [
    "MaskRCNN", "DataGenerator", "data_generator", "load_image_gt", "build_rpn_targets",
    "compose_image_meta", "parse_image_meta", "mold_image", "unmold_image", "log", "compute_backbone_shapes",
    "checkpoints_of", "find_last", "run_dirs",
]

IMAGENET_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def compute_backbone_shapes(config, image_shape):
    """Matterport's ``[[height, width], ...]`` of the feature maps per ``BACKBONE_STRIDES`` entry."""
    return config.feature_shapes(image_shape)


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
        self._train_call = {}
        self._compiled_trainable = None  # the trainable variables train() last compiled the model for
        self.set_log_dir()
        # GPU_COUNT > 1 or TF_CONFIG: the training model lives in a tf.distribute strategy's scope.
        self.strategy = distribute.strategy_for(config) if mode == "training" else None
        with self.scope():
            self.keras_model = self.build(mode, config)
        self._anchor_cache = {}

    def scope(self):
        """The tf.distribute strategy's scope when training on several devices, else a no-op context."""
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
        """Matterport's TF1 graph walk; see mrcnn.introspection.ancestor (``tensor`` is not used)."""
        return introspection.ancestor(self.keras_model, name)

    # ------------------------------------------------------------------ weights and run folders
    def set_log_dir(self, model_path=None):
        """Set the run's log dir and the epoch counter; a checkpoint path resumes its run and epoch."""
        self.log_dir, self.checkpoint_path, self.epoch, resumed = runs.run_paths(
            self.model_dir, self.config.NAME, model_path)
        self._run_dir_claimed = resumed  # a checkpoint's run continues in its folder; a new run claims its own
        if self.epoch and self.mode == "training":
            logger.info("Re-starting from epoch %d", self.epoch)

    def make_log_dir(self):
        """Create the run's folder and return it. A new run claims a folder no other run has: its name, or the
        name with ``_2``, ``_3``, ... when another run of this config started in the same second took it
        (``log_dir`` and ``checkpoint_path`` follow). ``train`` calls it; call it first to write into the folder
        before training."""
        if self._run_dir_claimed:
            os.makedirs(self.log_dir, exist_ok=True)
        else:
            self.log_dir = runs.claim_run_dir(self.log_dir)
            self.checkpoint_path = os.path.join(self.log_dir, os.path.basename(self.checkpoint_path))
            self._run_dir_claimed = True
        return self.log_dir

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
        trainer.compile_model(self, learning_rate, momentum)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None, workers=None, use_multiprocessing=None,
              verbose=1):
        """Train until epoch ``epochs`` (counted over all calls, as Matterport's ``initial_epoch``); see
        mrcnn.trainer.train for checkpoints, logs, resuming and the stop on a non-finite loss.
        ``val_dataset=None`` (or ``Config.VALIDATION_STEPS = 0``) trains without validation. ``workers`` load
        the batches: by default in processes where there are more than 2 cores, on threads otherwise;
        ``use_multiprocessing`` chooses (see mrcnn.trainer.data_workers)."""
        if self.mode != "training":
            raise ValueError("Create model in training mode.")
        return trainer.train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
                             augmentation=augmentation, custom_callbacks=custom_callbacks,
                             no_augmentation_sources=no_augmentation_sources, workers=workers,
                             use_multiprocessing=use_multiprocessing, verbose=verbose)

    def training_state(self, epoch):
        """The :class:`mrcnn.checkpoints.TrainingState` to store with the checkpoint of ``epoch``."""
        return trainer.training_state(self, epoch)

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        """Matterport's molding: ``molded_images``, ``image_metas``, ``windows`` (mrcnn.inference)."""
        return inference.mold_inputs(self.config, images)

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

        One path on every backend, Matterport's (mrcnn.inference): NumPy molding, the network on up to
        BATCH_SIZE images of one molded size at a time, NumPy unmolding. The exported model does the same in
        Keras layers (mrcnn.export), tested equal to this.
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        molded_shapes = []
        results = inference.detect(self.keras_model, self.config, images, verbose=verbose,
                                   molded_shapes=molded_shapes)
        if molded_shapes:  # as Matterport's detect(): the pixel anchors of the molded size in self.anchors
            self.get_anchors(molded_shapes[0])
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (as load_image_gt + mold_image give them).

        Returns Matterport's dicts with coordinates in the molded image's original size (from the meta).
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        return inference.detect_molded(self.keras_model, molded_images, image_metas)

    def _predict(self, molded_images, image_metas):
        return inference.predict(self.keras_model, molded_images, image_metas)

    def export(self, path, format="saved_model"):  # noqa: A002
        """Export the whole inference path (molding, network, unmolding) as ``format``: "saved_model" (serving
        signature: uint8 image ``[H, W, 3]`` -> boxes, class_ids, scores, masks, count), "keras" (a ``.keras``
        file) or "onnx". See mrcnn.export.export."""
        return export.export(self, path, format=format)

    def run_graph(self, images, outputs, image_metas=None):
        """Run the graph on ``images`` and return the named intermediate tensors (for notebooks).

        outputs: ``[(name, layer_name_or_tensor), ...]``; a layer name gives that top-level layer's
        output, a list of arrays for a layer with several outputs (``proposal_targets``).
        In inference mode ``images`` are images (molded here as detect() molds them); in training mode, the
        generator's seven input arrays. Returns an ordered dict ``{name: numpy array (or list of them)}``;
        per-ROI head layers come back as Matterport's ``[batch, rois, ...]`` (``mrcnn_mask``
        ``[1, 100, 28, 28, 81]``).
        """
        molded_shapes = []
        result = introspection.run_graph(self.keras_model, self.config, self.mode, images, outputs, image_metas,
                                         molded_shapes=molded_shapes)
        if molded_shapes:  # as Matterport's run_graph(): self.anchors of the molded size
            self.get_anchors(molded_shapes[0])
        return result
