"""Training batches: a ``keras.utils.PyDataset`` yielding Matterport's training inputs.

Each batch is ``(inputs, outputs)`` with ``outputs == []`` (the losses are computed inside the model)
and ``inputs`` in Matterport's order::

    images         float32 [batch, H, W, C]             molded (mean pixel subtracted)
    image_meta     float64 [batch, IMAGE_META_SIZE]
    rpn_match      int32   [batch, num_anchors, 1]      1 / -1 / 0, see mrcnn.data.targets
    rpn_bbox       float32 [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
    gt_class_ids   int32   [batch, MAX_GT_INSTANCES]    zero-padded; negative = crowd
    gt_boxes       int32   [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)]  pixels, zero-padded
    gt_masks       bool    [batch, h, w, MAX_GT_INSTANCES]  MINI_MASK_SHAPE or image size

Images without any positive instance (no objects, or crowds only) are skipped: the batch takes the
next image in the epoch's order instead, and the skip is counted and logged once per image.
Batches are reproducible: each one draws from an RNG seeded by the seed, the epoch and the batch index
(augmentations included: each image gets a private, seeded copy of the imgaug or albumentations
pipeline), so parallel workers (``workers=N``) give the same batches as one.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import itertools
import logging
import math
import mmap
import os
import random
import threading

import keras
import numpy as np

from mrcnn.anchors import generate_pyramid_anchors
from mrcnn.data.augmentation import check_augmentation
from mrcnn.data.image_meta import mold_image
from mrcnn.data.loading import load_image_gt
from mrcnn.data.targets import build_rpn_targets

logger = logging.getLogger(__name__)


class DataGenerator(keras.utils.PyDataset):
    """Batches of Matterport's training inputs from a prepared Dataset.

    dataset: a prepared :class:`mrcnn.utils.Dataset`; config: a :class:`mrcnn.config.Config`.
    shuffle: a new image order every epoch.
    augmentation: imgaug augmenter or albumentations transform (see :mod:`mrcnn.data.augmentation`).
    no_augmentation_sources: dataset sources whose images are never augmented.
    batch_size: default ``config.BATCH_SIZE``.
    steps: batches per epoch; default one pass over the images.
    seed: base seed for shuffling, sub-sampling and augmentation draws.
    workers, use_multiprocessing, max_queue_size: passed to ``keras.utils.PyDataset``.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, no_augmentation_sources=None,
                 batch_size=None, steps=None, seed=None, workers=1, use_multiprocessing=False,
                 max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        check_augmentation(augmentation)
        if len(dataset.image_ids) == 0:
            raise ValueError("DataGenerator: the dataset has no images (did you call prepare()?)")
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.no_augmentation_sources = set(no_augmentation_sources or ())
        self.batch_size = batch_size or config.BATCH_SIZE
        self.steps = steps
        self.seed = random.randrange(2**31) if seed is None else seed
        self.epoch = 0
        self.anchors = generate_pyramid_anchors(
            config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.feature_shapes(),
            config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
        self.skipped_image_ids = set()
        self.empty_crops = 0  # random crops without any object, replaced by the next image's
        self._objects = {}
        self._lock = threading.Lock()
        self._order = self._epoch_order()

    # ---------------------------------------------------------------- PyDataset API
    def __len__(self):
        return self.steps or math.ceil(len(self.dataset.image_ids) / self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._epoch_order()

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        return from_worker(self.batch_at(self.epoch, index, self._order))

    def batch_at(self, epoch, index, order=None):
        """Batch ``index`` of epoch ``epoch`` (the same batch ``self[index]`` gives in that epoch), without
        moving the generator's epoch: any batch of any epoch, from any thread or worker process."""
        _one_thread_in_worker_processes()
        order = self._epoch_order(epoch) if order is None else order
        rng = np.random.default_rng((self.seed, 1, epoch, index))
        py_rng = random.Random(int(rng.integers(2**31)))
        samples = []
        orders = {0: order}  # the image order of each pass over the data this batch reaches
        position = index * self.batch_size
        tried = 0
        # A random crop can miss every object of an image: such draws are retried with other images (and
        # the image keeps its turn in later epochs); an image without any object is skipped for good.
        limit = len(order) * (4 if self.config.IMAGE_RESIZE_MODE == "crop" else 1)
        while len(samples) < self.batch_size:
            if tried >= limit:
                raise ValueError(
                    f"DataGenerator: none of the {len(order)} images has a positive instance "
                    f"(class id > 0) in {tried} draws; check load_mask")
            data_pass = position // len(order)
            if data_pass not in orders:
                orders[data_pass] = self._epoch_order(epoch, data_pass)
            image_id = int(orders[data_pass][position % len(order)])
            position += 1
            tried += 1
            sample = self._load(image_id, rng, py_rng)
            if sample is not None:
                samples.append(sample)
        return self._collate(samples), []

    # ---------------------------------------------------------------- helpers
    def _epoch_order(self, epoch=None, data_pass=0):
        """The image order of pass ``data_pass`` over the data within ``epoch`` (later passes: an epoch longer
        than the data set): a shuffle of (seed, epoch) for the first pass and of (seed, epoch, pass) for each
        later one, as Matterport's generator reshuffled after each pass."""
        ids = np.array(self.dataset.image_ids)
        if self.shuffle:
            epoch = self.epoch if epoch is None else epoch
            key = (self.seed, 0, epoch) if data_pass == 0 else (self.seed, 0, epoch, data_pass)
            np.random.default_rng(key).shuffle(ids)
        return ids

    def _load(self, image_id, rng, py_rng):
        """One image's training inputs, or None (counted, logged) when it has no positive instance."""
        if image_id in self.skipped_image_ids:
            return None
        source = self.dataset.image_info[image_id]["source"]
        augmentation = None if source in self.no_augmentation_sources else self.augmentation
        if augmentation is not None:
            augmentation = _seeded_copy(augmentation, int(rng.integers(2**31)))
        image, image_meta, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
            self.dataset, self.config, image_id, augmentation=augmentation,
            use_mini_mask=self.config.USE_MINI_MASK, rng=py_rng)
        if not np.any(gt_class_ids > 0):
            if self.config.IMAGE_RESIZE_MODE == "crop" and self._has_objects(image_id):
                with self._lock:
                    self.empty_crops += 1
                return None  # this crop missed the objects; another draw will not
            with self._lock:
                first = image_id not in self.skipped_image_ids
                self.skipped_image_ids.add(image_id)
            if first:
                logger.info("skipping image %s: no positive instance (%d skipped so far)",
                            image_id, len(self.skipped_image_ids))
            return None
        rpn_match, rpn_bbox = build_rpn_targets(
            image.shape, self.anchors, gt_class_ids, gt_boxes, self.config, rng=rng)
        if gt_boxes.shape[0] > self.config.MAX_GT_INSTANCES:
            keep = np.sort(rng.choice(gt_boxes.shape[0], self.config.MAX_GT_INSTANCES, replace=False))
            gt_class_ids, gt_boxes, gt_masks = gt_class_ids[keep], gt_boxes[keep], gt_masks[:, :, keep]
        return image, image_meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks

    def _has_objects(self, image_id):
        if image_id not in self._objects:
            _, class_ids = self.dataset.load_mask(image_id)
            self._objects[image_id] = bool(np.any(np.asarray(class_ids) > 0))
        return self._objects[image_id]

    def _collate(self, samples):
        config = self.config
        count = len(samples)
        max_gt = config.MAX_GT_INSTANCES
        images = np.stack([mold_image(s[0], config) for s in samples]).astype(np.float32)
        image_meta = np.stack([s[1] for s in samples])
        rpn_match = np.stack([s[2] for s in samples])[:, :, None]
        rpn_bbox = np.stack([s[3] for s in samples]).astype(np.float32)
        gt_class_ids = np.zeros((count, max_gt), dtype=np.int32)
        gt_boxes = np.zeros((count, max_gt, 4), dtype=np.int32)
        gt_masks = np.zeros((count,) + samples[0][6].shape[:2] + (max_gt,), dtype=bool)
        for i, sample in enumerate(samples):
            n = len(sample[4])
            gt_class_ids[i, :n] = sample[4]
            gt_boxes[i, :n] = sample[5]
            gt_masks[i, :, :, :n] = sample[6]
        return [images, image_meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks]


_PARENT_PID = os.getpid()
_BOUNDED_PID = None
_SHARED_MEMORY = "/dev/shm"
_SHARED_MIN_BYTES = 1 << 20  # smaller arrays go through the pool's pipe


def _one_thread_in_worker_processes():
    """In a data worker process (forked by keras.utils.PyDataset with use_multiprocessing), OpenCV and BLAS run
    on one thread: the workers are the parallelism, and each one's own thread pool would oversubscribe the
    cores (NumPy's OpenBLAS threads doubled a worker's CPU time for the same batches).
    ``setNumThreads(0)`` (no pool), not ``setNumThreads(1)``: in a process forked after OpenCV's pool ran in
    the parent, resizing the inherited pool waits forever for threads the fork did not copy."""
    global _BOUNDED_PID
    pid = os.getpid()
    if pid != _PARENT_PID and pid != _BOUNDED_PID:
        import cv2
        import threadpoolctl

        cv2.setNumThreads(0)
        threadpoolctl.threadpool_limits(1)
        _BOUNDED_PID = pid


class SharedMemoryArray(np.ndarray):
    """An array that, pickled, travels through a file in shared memory (``/dev/shm``): keras.utils.PyDataset's
    pool pickles what a worker process returns, and a batch at 1024x1024 is 14 MB. Pickling writes the array to
    the file and sends only its name. Unpickling in the training process maps the file (no copy) and removes its
    name. Unpickled, it is a plain ndarray. Until pickled it is an ndarray like any other, so a batch that never
    leaves its process costs nothing. When /dev/shm has no room (a container's 64 MB default), it pickles as a
    plain ndarray through the pipe."""

    def __reduce__(self):
        path = os.path.join(_SHARED_MEMORY, f"mrcnn-batch-{_PARENT_PID}-{os.getpid()}-{next(_SHARED_NAMES)}")
        try:
            np.ascontiguousarray(self).tofile(path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return np.asarray(self).__reduce__()
        return _read_shared, (path, self.shape, self.dtype.str)

    def __reduce_ex__(self, protocol):
        return self.__reduce__()


def _read_shared(path, shape, dtype):
    """The array in the file at ``path``, mapped rather than read (no copy; a write to it stays private), and
    the file's name removed: its memory goes back when the array is freed."""
    try:
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    finally:
        os.unlink(path)
    return np.frombuffer(mapped, dtype=dtype).reshape(shape)


_SHARED_NAMES = itertools.count()


def from_worker(batch):
    """``batch`` (nested tuples and lists of arrays) as a worker process returns it: arrays of 1 MiB or more as
    :class:`SharedMemoryArray` views, which pickle through shared memory. In the process that imported this
    module, and where there is no ``/dev/shm``, ``batch`` itself."""
    if os.getpid() == _PARENT_PID or not os.path.isdir(_SHARED_MEMORY):
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(from_worker(item) for item in batch)
    if not isinstance(batch, np.ndarray) or batch.nbytes < max(_SHARED_MIN_BYTES, 1) or batch.dtype.hasobject:
        return batch
    return batch.view(SharedMemoryArray)


def _remove_unread_batches():
    """At the parent's exit: batches workers wrote that were never read (prefetched when training ended)."""
    prefix = f"mrcnn-batch-{_PARENT_PID}-"
    if os.getpid() != _PARENT_PID or not os.path.isdir(_SHARED_MEMORY):
        return
    for name in os.listdir(_SHARED_MEMORY):
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(_SHARED_MEMORY, name))


atexit.register(_remove_unread_batches)


def model_inputs(inputs):
    """The generator's arrays as ``fit`` feeds them: ``gt_masks`` as uint8 instead of bool (Keras reduces
    the first batch across tf.distribute replicas, which bool tensors cannot be)."""
    return [np.asarray(a, np.uint8) if a.dtype == bool else a for a in inputs]


def _seeded_copy(augmentation, seed):
    """A private copy of the augmentation with its own seeded RNG: reproducible, safe across threads."""
    if hasattr(augmentation, "seed_"):  # imgaug
        augmentation = augmentation.deepcopy()
        augmentation.seed_(seed)
    elif hasattr(augmentation, "set_random_seed"):  # albumentations 2
        augmentation = copy.deepcopy(augmentation)
        augmentation.set_random_seed(seed)
    return augmentation


def data_generator(dataset, config, shuffle=True, augmentation=None, random_rois=0, batch_size=1,
                   detection_targets=False, no_augmentation_sources=None, seed=None):
    """Matterport's endless Python generator of ``(inputs, outputs)`` batches (see :class:`DataGenerator`).

    random_rois: also yield ``rpn_rois`` ``[batch, random_rois, 4]`` pixel ROIs, 90% around the ground
    truth; detection_targets: also yield their ``rois`` and, as ``outputs``, the class ids
    ``[batch, TRAIN_ROIS_PER_IMAGE, 1]``, box deltas and masks the heads would train on
    (Matterport's debugging outputs; see :mod:`mrcnn.data.debug_targets`).
    """
    from mrcnn.data.debug_targets import add_debug_targets

    if detection_targets and not random_rois:
        raise ValueError("data_generator: detection_targets needs random_rois > 0 (the ROIs they are built for)")
    generator = DataGenerator(dataset, config, shuffle=shuffle, augmentation=augmentation,
                              no_augmentation_sources=no_augmentation_sources, batch_size=batch_size,
                              seed=seed)
    rng = np.random.default_rng((generator.seed, 2))
    while True:
        for index in range(len(generator)):
            inputs, outputs = generator[index]
            if random_rois:
                inputs, outputs = add_debug_targets(inputs, config, random_rois, detection_targets, rng)
            yield inputs, outputs
        generator.on_epoch_end()
