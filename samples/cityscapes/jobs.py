"""What ``cityscapes.py train | evaluate | detect`` does, as functions (the CLI only parses arguments).

* :func:`synthetic_root`: the synthetic set, generated once into a cache folder.
* :func:`initial_weights`: ``coco | imagenet | last | none | <path>`` into a model, or a clear
  :class:`WeightsChoiceError`.
* :func:`parse_schedule` / :func:`train_stages`: Matterport coco.py's staged schedule.
* :func:`evaluate`: official Cityscapes AP (cityscapesscripts, in-process) and COCO AP, JSON in the log dir.
* :func:`detect_images`: one overlay PNG per image.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile

import numpy as np
from PIL import Image
from tqdm import tqdm

from mrcnn.checkpoints import atomic_write_json
from mrcnn.dataset import read_image_rgb
from mrcnn.download import COCO_MODEL_URL, WeightsDownloadError, download_trained_weights
from mrcnn.visualize import draw_instances
from mrcnn.weights import WeightsFileError, WeightsMismatchError

from .dataset import CityscapesDataset
from .evaluation import coco_ap, run_official_evaluation, summarize, write_predictions
from .synthetic import generate

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")  # where Matterport's samples look
# The layers whose shapes depend on the number of classes: never taken from COCO weights.
HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# Matterport coco.py: heads for 40 epochs, ResNet stage 4 and up until 120, everything at LR/10 until 160.
DEFAULT_SCHEDULE = "heads:40,4+:120,all:160:0.1"
SYNTHETIC_COUNTS = {"train": 96, "val": 16}
SYNTHETIC_SIZE = (128, 256)  # frame height, width: Cityscapes' 1:2 aspect at 1/8 of its side
SYNTHETIC_VERSION = 2  # bump when synthetic.py changes what it draws or the counts and size change
RUN_FILE = "run.json"  # a run's settings, recorded when it starts; train --weights=last reads them back


class WeightsChoiceError(RuntimeError):
    """The requested starting weights are not available; the message says what to do."""


class ScheduleError(ValueError):
    """A ``--schedule`` that cannot be parsed; the message shows the expected form."""


# ---------------------------------------------------------------------------------------------- data
def cache_dir():
    return os.environ.get("MRCNN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mrcnn")


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


# ---------------------------------------------------------------------------------------------- weights
def coco_weights_path(flag="--weights"):
    """Matterport's ``mask_rcnn_coco.h5`` beside the repository (or $MRCNN_COCO_WEIGHTS), downloaded if missing;
    ``flag`` is the command-line option the error message tells the user to set."""
    path = os.environ.get("MRCNN_COCO_WEIGHTS") or COCO_WEIGHTS_PATH
    if os.path.isfile(path):
        return path
    url = os.environ.get("MRCNN_COCO_WEIGHTS_URL") or COCO_MODEL_URL
    try:
        return download_trained_weights(path, verbose=1, url=url)
    except WeightsDownloadError as error:
        raise WeightsChoiceError(
            f"{flag}=coco needs Matterport's COCO weights, mask_rcnn_coco.h5 (246 MB), which are not at "
            f"{path} and could not be downloaded from {url} ({error.__cause__ or error}). Download the file "
            f"on a machine with network access from {COCO_MODEL_URL} and put it at {path}, or pass its "
            f"location with {flag}=/path/to/mask_rcnn_coco.h5. To train without it, use "
            f"{flag}=imagenet or {flag}=none.") from None


def initial_weights(model, weights):
    """Load the starting weights named by ``--weights`` into ``model``; returns the path used (or None).

    coco: Matterport's file, heads excluded (their shapes follow the class count); imagenet: the Keras
    ResNet-50 ImageNet file, by name; last: this config's last checkpoint (resumes its run and epoch);
    none: random initialisation; anything else: a path to a ``.h5`` file, heads excluded.
    """
    choice = (weights or "none").strip()
    if choice.lower() == "none":
        return None
    try:
        if choice.lower() == "coco":
            path = coco_weights_path()
            model.load_weights(path, by_name=True, exclude=HEAD_LAYERS)
        elif choice.lower() == "imagenet":
            try:
                path = model.get_imagenet_weights()
            except WeightsDownloadError as error:
                raise WeightsChoiceError(str(error)) from None
            model.load_weights(path, by_name=True)
        elif choice.lower() == "last":
            try:
                path = model.find_last()
            except FileNotFoundError as error:
                raise WeightsChoiceError(f"--weights=last: {error}. Train first, or pass --weights=none "
                                         f"or a path.") from None
            model.load_weights(path, by_name=True)
        else:
            path = os.path.abspath(os.path.expanduser(choice))
            if not os.path.isfile(path):
                raise WeightsChoiceError(f"--weights={choice}: no such file {path}; expected coco, imagenet, "
                                         f"last, none or the path of a .h5 weights file")
            # A checkpoint of this project's runs restores its run and epoch; other files lose the heads.
            own = re.search(r"mask_rcnn_[\w-]+_\d{4}\.h5$", path) is not None
            model.load_weights(path, by_name=True, exclude=None if own else HEAD_LAYERS)
    except (WeightsFileError, WeightsMismatchError) as error:
        raise WeightsChoiceError(f"--weights={choice}: {error}") from None
    return path


# ---------------------------------------------------------------------------------------------- training
def parse_schedule(text, epochs=None, learning_rate=1.0):
    """``"heads:40,4+:120,all:160:0.1"`` -> ``[(layers, end_epoch, learning_rate), ...]``.

    Each stage trains ``layers`` (a preset or regex) until its end epoch at ``learning_rate`` times its
    optional factor. ``epochs`` rescales the stage ends so the last one ends there (Matterport's ratios
    kept; every stage at least one epoch past the previous).
    """
    stages = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise ScheduleError(f"--schedule: {part!r} is not layers:end_epoch[:lr_factor] "
                             f"(e.g. {DEFAULT_SCHEDULE})")
        try:
            end = int(fields[1])
            factor = float(fields[2]) if len(fields) == 3 else 1.0
        except ValueError:
            raise ScheduleError(f"--schedule: {part!r}: end epoch must be an integer and the factor a number"
                             ) from None
        if end < 1 or factor <= 0 or (stages and end <= stages[-1][1]):
            raise ScheduleError(f"--schedule: {part!r}: end epochs must increase from 1 and factors be > 0")
        stages.append((fields[0], end, factor))
    if not stages:
        raise ScheduleError("--schedule is empty")
    if epochs:
        last, scaled, previous = stages[-1][1], [], 0
        for i, (layers, end, factor) in enumerate(stages):
            # Keep room for the stages still to come: each needs at least one epoch.
            end = min(max(previous + 1, round(end * epochs / last)), epochs - (len(stages) - 1 - i))
            if end <= previous:
                continue  # more stages than epochs: drop the early ones
            scaled.append((layers, end, factor))
            previous = end
        stages = scaled
    return [(layers, end, learning_rate * factor) for layers, end, factor in stages]


def train_stages(model, train_set, val_set, stages, augmentation=None, custom_callbacks=None, verbose=1):
    """Run the stages in order, skipping those a resumed model has already finished."""
    for layers, end, learning_rate in stages:
        if end <= model.epoch:
            print(f"Stage {layers!r} (until epoch {end}) already done in this run (epoch {model.epoch})")
            continue
        print(f"Training {layers!r} until epoch {end}, learning rate {learning_rate:g}")
        model.train(train_set, val_set, learning_rate=learning_rate, epochs=end, layers=layers,
                    augmentation=augmentation, custom_callbacks=custom_callbacks, verbose=verbose)


def record_run(run_dir, settings, weights, schedule, stages, argv):
    """Write ``<run_dir>/run.json``: the command line, its settings, the starting weights and the stages."""
    atomic_write_json(os.path.join(run_dir, RUN_FILE), {
        "command": list(argv), "settings": settings, "weights": weights, "schedule": schedule,
        "stages": [{"layers": layers, "end_epoch": end, "learning_rate": lr} for layers, end, lr in stages]})


def read_run(run_dir):
    """The record :func:`record_run` wrote, or None when the run has none."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_run_summary(model, timer, path):
    """Cost of the run, for comparisons: parameters, backbone FLOPs, seconds per step, peak memory."""
    from attention.cost import backbone_flops, backbone_params, peak_rss_mb

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

