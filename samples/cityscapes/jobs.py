"""What ``cityscapes.py train | evaluate | detect`` does, as functions (the CLI only parses arguments).

* :func:`synthetic_root`: the synthetic set, generated once into a cache folder.
* :func:`initial_weights` (``coco | imagenet | last | none | <path>``), :func:`parse_schedule` /
  :func:`train_stages` (Matterport coco.py's staged schedule) and the run record: mrcnn.cli's, shared with the
  other samples.
* :func:`evaluate`: official Cityscapes AP (cityscapesscripts, in-process) and COCO AP, JSON in the log dir.
* :func:`detect_images`: one overlay PNG per image.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image
from tqdm import tqdm

from mrcnn.checkpoints import atomic_write_json
from mrcnn.cli import (  # noqa: F401  (the sample's names for them)
    COCO_WEIGHTS_PATH,
    DEFAULT_SCHEDULE,
    HEAD_LAYERS,
    RUN_FILE,
    ScheduleError,
    WeightsChoiceError,
    cache_dir,
    coco_weights_path,
    initial_weights,
    parse_schedule,
    read_run,
    record_run,
    train_stages,
    warmup_steps,
)
from mrcnn.dataset import read_image_rgb
from mrcnn.evaluation.coco import coco_ap
from mrcnn.visualize import draw_instances

from .dataset import CityscapesDataset
from .evaluation import run_official_evaluation, summarize, write_predictions
from .synthetic import generate

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The layers whose shapes depend on the number of classes: never taken from COCO weights.
# Matterport coco.py: heads for 40 epochs, ResNet stage 4 and up until 120, everything at LR/10 until 160.
SYNTHETIC_COUNTS = {"train": 96, "val": 16}
SYNTHETIC_SIZE = (128, 256)  # frame height, width: Cityscapes' 1:2 aspect at 1/8 of its side
SYNTHETIC_VERSION = 2  # bump when synthetic.py changes what it draws or the counts and size change


def synthetic_root(cache=None, progress=True):
    """The synthetic Cityscapes tree, generated on first use into ``<cache>/cityscapes_synthetic_v<N>``.

    Written into a temporary folder and renamed, so an interrupted generation is never taken as done.
    """
    root = os.path.join(cache or cache_dir(), f"cityscapes_synthetic_v{SYNTHETIC_VERSION}")
    if not os.path.isdir(root):
        os.makedirs(os.path.dirname(root), exist_ok=True)
        partial = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(root))
        try:
            print(f"Generating the synthetic Cityscapes set into {root} (once)")
            generate(partial, dict(SYNTHETIC_COUNTS), height=SYNTHETIC_SIZE[0], width=SYNTHETIC_SIZE[1], seed=0,
                     progress=progress)
            os.replace(partial, root)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return root


def load_subset(dataset_dir, subset, classes, skip_bad=False, limit=None):
    """A prepared CityscapesDataset of ``subset``, the first ``limit`` images only if given."""
    dataset = CityscapesDataset(classes=classes, skip_bad=skip_bad)
    dataset.load_cityscapes(dataset_dir, subset)
    if limit:
        dataset.image_info = dataset.image_info[:limit]
    dataset.prepare()
    return dataset


def write_run_summary(model, timer, path):
    """Cost of the run, for comparisons: parameters, backbone FLOPs, seconds per step, peak memory."""
    from mrcnn.costs import backbone_flops, backbone_params, peak_rss_mb

    config = model.config
    summary = {
        "name": config.NAME, "attention_stages": list(config.ATTENTION_STAGES),
        "attention_kernel": config.ATTENTION_KERNEL, "attention_heads": config.ATTENTION_HEADS,
        "attention_projection": config.ATTENTION_PROJECTION,
        "backbone": config.BACKBONE if isinstance(config.BACKBONE, str) else "callable",
        "resnet_width": config.RESNET_WIDTH, "input_shape": [int(v) for v in config.IMAGE_SHAPE],
        "params": int(model.keras_model.count_params()), "backbone_params": backbone_params(model.keras_model),
        "backbone_gflops_per_image": backbone_flops(model.keras_model) / 1e9,
        "seconds_per_step": timer.seconds_per_step(), "images_per_step": config.BATCH_SIZE,
        "steps_timed": len(timer.times), "epochs": model.epoch, "peak_rss_mb": peak_rss_mb(),
    }
    atomic_write_json(path, summary)
    return summary


def notebook_weights(config, logs, steps=20):
    """The last checkpoint of ``config.NAME`` under ``logs``; without one, a short run makes it first.

    For the notebooks: they run top to bottom on a fresh machine, with the main job's weights when it
    has run (``cityscapes.py train``), else with those of a one-epoch run of ``steps`` steps.
    """
    from mrcnn import model as modellib

    from .config import with_settings

    model = modellib.MaskRCNN("training", with_settings(config, STEPS_PER_EPOCH=steps, VALIDATION_STEPS=1),
                              logs, seed=0)
    try:
        return model.find_last()
    except FileNotFoundError:
        pass
    root = synthetic_root()
    train_set = load_subset(root, "train", config.CLASSES)
    val_set = load_subset(root, "val", config.CLASSES)
    print(f"No checkpoint of {config.NAME!r} in {logs}: training {steps} steps to make one")
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=1, layers="all", verbose=0)
    return model.find_last()


# ---------------------------------------------------------------------------------------------- evaluation
def gt_instance_path(dataset, image_id):
    return dataset.image_info[image_id]["annotation"].replace("_gtFine_polygons.json", "_gtFine_instanceIds.png")


def evaluate(model, dataset, out_dir, progress=True):
    """Detect on every image of ``dataset`` and score with the official evaluator and pycocotools.

    Writes ``<out_dir>/predictions/`` (official format) and ``<out_dir>/evaluation.json``; returns
    ``{"AP", "AP50", "classes": {...}, "coco": {"bbox", "segm"}, "images": n, "skipped": [...]}``.
    """
    pred_dir = os.path.join(out_dir, "predictions")
    shutil.rmtree(pred_dir, ignore_errors=True)
    os.makedirs(pred_dir)
    gt_files, gt_entries, predictions = [], [], []
    class_ids = [info["id"] for info in dataset.class_info[1:]]
    for image_id in tqdm(dataset.image_ids, desc="evaluate", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        masks, gt_class_ids = dataset.load_mask(image_id)
        if dataset.image_info[image_id].get("bad"):
            continue
        gt_path = gt_instance_path(dataset, image_id)
        if not os.path.isfile(gt_path):
            raise FileNotFoundError(f"{gt_path}: the official evaluation needs the gtFine instanceIds PNGs "
                                    f"(part of gtFine_trainvaltest.zip)")
        r = model.detect([image])[0]
        label_ids = [dataset.class_info[c]["id"] for c in r["class_ids"]]
        write_predictions(pred_dir, dataset.image_info[image_id]["id"], r["masks"], label_ids, r["scores"])
        gt_files.append(gt_path)
        height, width = image.shape[:2]
        gt_entries.append((int(image_id), height, width, masks, np.abs(gt_class_ids), gt_class_ids < 0))
        predictions.append((int(image_id), r["masks"], r["class_ids"], r["scores"]))
    if not gt_files:
        raise ValueError("evaluate: no image left to evaluate")
    official = summarize(run_official_evaluation(pred_dir, gt_files, out_dir))
    summary = {**official, "coco": coco_ap(gt_entries, predictions, range(1, len(class_ids) + 1)),
               "images": len(gt_files), "skipped": [path for path, _ in getattr(dataset, "skipped", [])]}
    atomic_write_json(os.path.join(out_dir, "evaluation.json"), summary)
    return summary


def format_summary(summary):
    """The per-class table as printed by ``cityscapes.py evaluate``."""
    lines = [f"{'class':<12} {'AP':>7} {'AP50':>7}", "-" * 28]
    for name, values in summary["classes"].items():
        lines.append(f"{name:<12} {values['AP']:7.3f} {values['AP50']:7.3f}")
    lines += ["-" * 28, f"{'average':<12} {summary['AP']:7.3f} {summary['AP50']:7.3f}",
              f"COCO-style (pycocotools): bbox AP {summary['coco']['bbox']['AP']:.3f} "
              f"AP50 {summary['coco']['bbox']['AP50']:.3f}; segm AP {summary['coco']['segm']['AP']:.3f} "
              f"AP50 {summary['coco']['segm']['AP50']:.3f}  ({summary['images']} images)"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- pictures
def detect_images(model, images, out_dir, class_names, min_score=0.5, progress=True):
    """One ``<name>_detections.png`` per ``(name, image)`` pair in ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, image in tqdm(images, desc="detect", unit="image", disable=not progress):
        r = model.detect([image])[0]
        keep = r["scores"] >= min_score
        picture = draw_instances(image, r["rois"][keep], r["masks"][:, :, keep], r["class_ids"][keep],
                                 class_names, r["scores"][keep])
        path = os.path.join(out_dir, f"{name}_detections.png")
        Image.fromarray(picture).save(path)
        paths.append(path)
    return paths


def read_images(path):
    """``[(name, uint8 RGB image)]`` for ``--image`` (a file or a folder); errors name the file."""
    return [(os.path.splitext(os.path.basename(p))[0], read_image_rgb(p)) for p in image_files(path)]


def image_files(path):
    """Image files of a path: the file itself, or the PNG/JPEG files of a folder (recursively, sorted)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--image: {path} is neither an image file nor a folder")
    found = sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if not found:
        raise FileNotFoundError(f"--image: no .png/.jpg files under {path}")
    return found

