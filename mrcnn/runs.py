"""Run folders: where a training run writes its checkpoints and logs, and how the last checkpoint is found.

A run of a config named ``NAME`` writes into ``<model_dir>/<name><YYYYmmddTHHMM>/`` (Matterport's layout):
``mask_rcnn_<name>_<epoch:04d>.h5`` after each epoch (see mrcnn.checkpoints), ``training_log.csv`` and the
TensorBoard events. A checkpoint's path names its run and epoch, which is how loading it resumes the run.
"""

from __future__ import annotations

import datetime
import os
import re

CHECKPOINT_RE = re.compile(
    r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")


def run_name(name):
    """The lower-case prefix of a config NAME's run folders (``mask_rcnn`` when NAME is empty)."""
    return (name or "mask_rcnn").lower()


def run_paths(model_dir, name, model_path=None):
    """``(log_dir, checkpoint_path_template, epoch)`` of a new run started now, or, given the path of one of
    this project's checkpoints, of the run it belongs to and the epoch it ends (training resumes there)."""
    epoch = 0
    started = datetime.datetime.now()
    if model_path:
        match = CHECKPOINT_RE.match(os.path.abspath(model_path).replace("\\", "/"))
        if match:
            started = datetime.datetime(*(int(match.group(i)) for i in range(1, 6)))
            epoch = int(match.group(6))  # the file of epoch N was written after N epochs
    name = run_name(name)
    log_dir = os.path.join(model_dir, f"{name}{started:%Y%m%dT%H%M}")
    return log_dir, os.path.join(log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5"), epoch


def run_dirs(model_dir, name):
    """The run folders ``<name><YYYYmmddTHHMM>`` of a config NAME under ``model_dir``, oldest first (not
    those of ``<name>_other`` configs)."""
    name = run_name(name)
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
    name = run_name(name)
    raise FileNotFoundError(
        f"Could not find a checkpoint of {name!r} in {os.path.abspath(model_dir)} "
        f"(looked for {name}*/mask_rcnn_*.h5)")
