"""What the samples' command lines share: the starting weights, staged schedules, ``--set`` overrides and the
record of a run's settings. Each sample (samples/cityscapes, samples/coco, ...) imports these from here, never
from another sample.
"""

from __future__ import annotations

import ast
import json
import os
import re

from mrcnn.checkpoints import atomic_write_json
from mrcnn.download import COCO_MODEL_URL, WeightsDownloadError, download_trained_weights
from mrcnn.weights import WeightsFileError, WeightsMismatchError

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")  # where Matterport's samples look
HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
DEFAULT_SCHEDULE = "heads:40,4+:120,all:160:0.1"  # Matterport's COCO stages: layers:end_epoch[:lr_factor]
RUN_FILE = "run.json"  # a run's settings, recorded when it starts; train --weights=last reads them back


class UsageError(RuntimeError):
    """A problem with the command line or the environment that a paragraph explains (no traceback)."""


def parse_setting(text):
    """``"KEY=VALUE"`` -> ``(KEY, value)``, the value read as a Python literal (else kept as a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. --set VALIDATION_STEPS=10")
    try:
        value = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        value = value.strip()
    return key.strip(), value


class WeightsChoiceError(RuntimeError):
    """The requested starting weights are not available; the message says what to do."""


class ScheduleError(ValueError):
    """A ``--schedule`` that cannot be parsed; the message shows the expected form."""


# ---------------------------------------------------------------------------------------------- data
def cache_dir():
    """Where the samples keep what they generate or extract once: $MRCNN_CACHE, else ~/.cache/mrcnn."""
    return os.environ.get("MRCNN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mrcnn")


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
def warmup_steps(text):
    """The ``warmup:<steps>`` entry of a ``--schedule`` (0 without one): the run's first steps, over which the
    learning rate rises linearly (``Config.LEARNING_RATE_WARMUP_STEPS``)."""
    found = [p.strip() for p in text.split(",") if p.strip().startswith("warmup:")]
    if not found:
        return 0
    value = found[-1].partition(":")[2]
    if len(found) > 1 or not value.isdigit():
        raise ScheduleError(f"--schedule: {', '.join(found)}: expected one warmup:<steps> with a whole number of "
                            f"steps, e.g. warmup:1000,{DEFAULT_SCHEDULE}")
    return int(value)


def parse_schedule(text, epochs=None, learning_rate=1.0):
    """``"heads:40,4+:120,all:160:0.1"`` -> ``[(layers, end_epoch, learning_rate), ...]``.

    Each stage trains ``layers`` (a preset or regex) until its end epoch at ``learning_rate`` times its
    optional factor: a later stage's smaller factor is a step decay. ``epochs`` rescales the stage ends so the
    last one ends there (Matterport's ratios kept; every stage at least one epoch past the previous). A
    ``warmup:<steps>`` entry (:func:`warmup_steps`) is not a stage.
    """
    warmup_steps(text)  # a malformed warm-up entry is an error here too
    stages = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part.startswith("warmup:"):
            continue
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
