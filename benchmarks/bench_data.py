"""Time the data side of training and print JSON.

* ``build_rpn_targets`` at 1024x1024 (Matterport's default config: 261,888 anchors) with 50 GT boxes;
* the training generator's images/s on 1024x2048 frames (Cityscapes size) resized to Matterport's
  default 1024x1024 square input, with imgaug and with albumentations augmentation, serially and with
  two worker threads (how ``keras.utils.PyDataset`` runs ``workers=2``);
* the Cityscapes training setting (random 1024x1024 crops of 1024x2048 frames, flips, RPN targets): images/s
  with 1 and 2 worker threads and 1 and 2 worker processes (forked, as ``train(use_multiprocessing=True)``
  runs them), a worker process's private memory, and the worker processes that would feed a GPU training at
  25 images/s.

Usage: ``python benchmarks/bench_data.py [--repeats 20] [--images 48]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from mrcnn.anchors import generate_pyramid_anchors  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator  # noqa: E402
from mrcnn.data.targets import build_rpn_targets  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1


def bench_rpn_targets(repeats):
    config = BenchConfig()
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       config.feature_shapes(), config.BACKBONE_STRIDES,
                                       config.RPN_ANCHOR_STRIDE)
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 900, (50, 2))
    gt_boxes = np.concatenate([corner, corner + rng.uniform(16, 300, (50, 2))], axis=1).clip(0, 1024)
    gt_class_ids = rng.integers(1, 4, 50)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_class_ids, gt_boxes, config, rng=rng)
        times.append(time.perf_counter() - start)
    first, times = times[0], times[1:]  # the first call also indexes the anchors (mrcnn.data.anchor_index)
    return {
        "anchors": int(anchors.shape[0]),
        "gt_boxes": 50,
        "repeats": repeats,
        "first_call_ms": round(1000 * first, 1),
        "median_ms": round(1000 * statistics.median(times), 1),
        "min_ms": round(1000 * min(times), 1),
    }


def _augmentations():
    import albumentations as A

    from mrcnn.data.augmentation import imgaug_augmenters

    iaa = imgaug_augmenters()  # imgaug 0.4 on NumPy 2

    return {
        "imgaug": iaa.Sequential([
            iaa.Fliplr(0.5),
            iaa.Affine(rotate=(-10, 10), scale=(0.9, 1.1)),
            iaa.Multiply((0.8, 1.2)),
        ]),
        "albumentations": A.Compose([
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-10, 10), scale=(0.9, 1.1), p=1.0),
            A.RandomBrightnessContrast(p=1.0),
        ]),
    }


def bench_generator(images):
    config = BenchConfig()
    dataset = ShapesDataset()
    dataset.load_shapes(images, 1024, 2048, seed=0, min_shapes=8, max_shapes=20)
    dataset.prepare()
    results = {"input_size": [1024, 2048], "molded_size": [1024, 1024], "images": images}
    for name, augmentation in [("none", None), *_augmentations().items()]:
        for workers in (1, 2):
            generator = DataGenerator(dataset, config, seed=0, augmentation=augmentation)
            generator[0]  # warm-up
            start = time.perf_counter()
            if workers == 1:
                for i in range(len(generator)):
                    generator[i]
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(generator.__getitem__, range(len(generator))))
            elapsed = time.perf_counter() - start
            results[f"{name}_workers{workers}_images_per_s"] = round(len(generator) / elapsed, 2)
    return results


_GENERATOR = None  # the generator a worker process inherits (fork), as keras.utils.PyDataset's pool does


def _init_worker(generator):
    global _GENERATOR
    _GENERATOR = generator


def _timed_batch(index):
    """Batch ``index`` of the generator (a worker process's, or this process's), and when it started and ended
    (``time.perf_counter``: one clock for all processes on Linux)."""
    start = time.perf_counter()
    batch = _GENERATOR[index]
    return batch, start, time.perf_counter()


def _private_memory(_):
    """This process's private memory, MiB: the pages only it maps (/proc/self/smaps_rollup's Private_Clean +
    Private_Dirty); pages a forked worker still shares with its parent are not counted. The pause spreads the
    calls over a pool's workers."""
    time.sleep(0.2)
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:"))) / 1024


def _images_per_s(generator, workers, processes):
    """Batches of one image per second, from the first batch's start to the last one's end (the workers' steady
    rate: a training run starts its pool once): serially (1 thread), on a pool of threads, or on a pool of forked
    worker processes (what they return crosses back as keras's PyDataset's pool sends it: pickled, its large
    arrays through shared memory, see mrcnn.data.generator.from_worker); and the largest private memory of a
    worker process after its batches."""
    import multiprocessing
    from multiprocessing.pool import ThreadPool

    _init_worker(generator)
    generator[0]  # warm-up (the anchor index, imports)
    indices = range(len(generator))
    memory = None
    if not processes and workers == 1:
        results = [_timed_batch(i) for i in indices]
    elif not processes:
        with ThreadPool(workers) as pool:
            results = pool.map(_timed_batch, indices, chunksize=1)
    else:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker,
                                                      initargs=(generator,)) as pool:
            results = pool.map(_timed_batch, indices, chunksize=1)
            memory = max(pool.map(_private_memory, range(2 * workers), chunksize=1))
    span = max(r[2] for r in results) - min(r[1] for r in results)
    return len(results) / span, memory


def bench_cityscapes_crops(images, repeats=3, target=25.0):
    """The Cityscapes training setting: 1024x2048 frames, random 1024x1024 crops at full resolution
    (CityscapesConfig), horizontal flips (cityscapes.py train), RPN targets; images/s with 1 and 2 worker threads
    and 1 and 2 worker processes (each the median of ``repeats`` runs, the four settings taking turns), and the
    worker processes that would feed a GPU training at ``target`` images/s."""
    from mrcnn.data.augmentation import imgaug_augmenters

    iaa = imgaug_augmenters()  # imgaug 0.4 on NumPy 2

    config = BenchConfig(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=1024, IMAGE_MAX_DIM=1024,
                         IMAGE_MIN_SCALE=0, MAX_GT_INSTANCES=100)
    dataset = ShapesDataset()
    dataset.load_shapes(images, 1024, 2048, seed=1, min_shapes=8, max_shapes=20)
    dataset.prepare()
    generator = DataGenerator(dataset, config, seed=0, augmentation=iaa.Fliplr(0.5), batch_size=1)
    report = {"input_size": [1024, 2048], "crop": [1024, 1024], "augmentation": "Fliplr(0.5)", "images": images,
              "repeats": repeats}
    settings = [(kind, workers) for kind in ("threads", "processes") for workers in (1, 2)]
    rates = {setting: [] for setting in settings}
    memory = {}
    for _ in range(repeats):
        for kind, workers in settings:
            rate, private = _images_per_s(generator, workers, kind == "processes")
            rates[kind, workers].append(rate)
            if private is not None:
                memory[kind, workers] = max(memory.get((kind, workers), 0), private)
    for (kind, workers), values in rates.items():
        report[f"{kind}{workers}_images_per_s"] = round(statistics.median(values), 2)
        if (kind, workers) in memory:
            report[f"{kind}{workers}_worker_private_mib"] = round(memory[kind, workers], 1)
    one = report["processes1_images_per_s"]
    report["processes2_over_processes1"] = round(report["processes2_images_per_s"] / one, 2)
    report["threads2_over_threads1"] = round(report["threads2_images_per_s"] / report["threads1_images_per_s"], 2)
    report[f"worker_processes_for_{target:g}_images_per_s"] = int(np.ceil(target / one))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--images", type=int, default=48)
    args = parser.parse_args(argv)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__},
        "cityscapes_crops_1024x2048_to_1024x1024": bench_cityscapes_crops(args.images),
        "build_rpn_targets_1024": bench_rpn_targets(args.repeats),
        "generator_1024x2048": bench_generator(args.images),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
