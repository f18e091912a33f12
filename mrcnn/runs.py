"""Run folders: where a training run writes its checkpoints and logs, and how the last checkpoint is found.

A run of a config named ``NAME`` writes into ``<model_dir>/<name><YYYYmmddTHHMMSS>/`` (Matterport's layout,
to the second; ``_2``, ``_3``, ... appended when another run took the name first): ``mask_rcnn_<name>_<epoch:04d>.h5``
after each epoch (see mrcnn.checkpoints), ``training_log.csv`` and the TensorBoard events. Matterport's folders,
named to the minute, are read too. A checkpoint's path names its run and epoch, which is how loading it resumes
the run.
"""

from __future__ import annotations

import datetime
import os
import re

STAMP = r"\d{8}T\d{4}(?:\d{2})?(?:_\d+)?"  # YYYYmmddTHHMM[SS][_k]
CHECKPOINT_RE = re.compile(r".*[/\\][\w-]+?(" + STAMP + r")[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")


def _now():
    return datetime.datetime.now()


def run_name(name):
    """The lower-case prefix of a config NAME's run folders (``mask_rcnn`` when NAME is empty)."""
    return (name or "mask_rcnn").lower()


def run_paths(model_dir, name, model_path=None):
    """``(log_dir, checkpoint_path_template, epoch, resumed)`` of a new run started now, or, given the path of
    one of this project's checkpoints (``resumed`` True), of the run it belongs to and the epoch it ends
    (training resumes there)."""
    epoch, resumed = 0, False
    stamp = f"{_now():%Y%m%dT%H%M%S}"
    if model_path:
        match = CHECKPOINT_RE.match(os.path.abspath(model_path).replace("\\", "/"))
        if match:  # the file of epoch N was written after N epochs
            stamp, epoch, resumed = match.group(1), int(match.group(2)), True
    name = run_name(name)
    log_dir = os.path.join(model_dir, f"{name}{stamp}")
    return log_dir, os.path.join(log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5"), epoch, resumed


def claim_run_dir(log_dir):
    """Create the folder of a new run and return it: ``log_dir``, or ``log_dir_2``, ``log_dir_3``, ... when
    another run (started in the same second) created it first."""
    candidate, k = log_dir, 1
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            k += 1
            candidate = f"{log_dir}_{k}"


def _order(folder):
    """Sort key of a run folder: its start time (minutes, then seconds), then its ``_k`` suffix."""
    stamp = re.search(STAMP + "$", folder).group(0)
    time, _, suffix = stamp.partition("_")
    return time.ljust(15, "0"), int(suffix or 1)


def run_dirs(model_dir, name):
    """The run folders of a config NAME under ``model_dir``, oldest first (not those of ``<name>_other``
    configs)."""
    name = run_name(name)
    run_re = re.compile(re.escape(name) + STAMP + "$")
    if not os.path.isdir(model_dir):
        return []
    found = [d for d in os.listdir(model_dir) if run_re.match(d)]
    return [os.path.join(model_dir, d) for d in sorted(found, key=_order)]


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
