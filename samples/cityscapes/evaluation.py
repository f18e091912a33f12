"""Official Cityscapes instance-level evaluation, driven in-process (COCO-style AP: mrcnn.evaluation.coco).

Predictions are written in the official format: one ``<city>_<seq>_<frame>_pred.txt`` per image, each
line ``<mask png, relative> <label id> <confidence>``, and one binary PNG per predicted instance. Then
``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling`` scores them against the
``*_gtFine_instanceIds.png`` files, exactly as its command line does, with four adjustments so it runs
here and leaves nothing behind:

* numpy 2.4 removed ``np.in1d``, which the evaluator calls: the alias is restored (``np.isin`` + ravel);
* its JSON writer fails on numpy scalars: it is given one that converts them;
* its ground-truth cache (``gtInstances.json``, in site-packages by default) goes to the output folder;
* it writes ``matches.json`` into the working directory: it runs inside the output folder.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
from PIL import Image

GT_SUFFIX = "_gtFine_instanceIds.png"


def _patch_numpy():
    if "in1d" not in np.__dict__:
        np.in1d = lambda a, b, *args, **kwargs: np.isin(a, b, *args, **kwargs).ravel()  # noqa: NPY201


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.__dict__


def _write_json(data, path):
    with open(path, "w") as f:
        json.dump(data, f, default=_to_builtin, sort_keys=True, indent=4)


@contextlib.contextmanager
def _working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def write_predictions(out_dir, stem, masks, label_ids, scores):
    """Write one image's predictions in the official format; returns the path of its txt file.

    masks: ``[H, W, N]`` bool in the original image size; label_ids: Cityscapes label ids ``[N]``
    (e.g. 26 for car); scores: ``[N]``.
    """
    os.makedirs(os.path.join(out_dir, "masks"), exist_ok=True)
    lines = []
    for i in range(masks.shape[-1]):
        name = f"{stem}_{i:03d}.png"
        Image.fromarray(masks[:, :, i].astype(np.uint8) * 255).save(os.path.join(out_dir, "masks", name))
        lines.append(f"masks/{name} {int(label_ids[i])} {float(scores[i]):.6f}\n")
    path = os.path.join(out_dir, f"{stem}_pred.txt")
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def run_official_evaluation(prediction_dir, gt_files, out_dir, quiet=True):
    """Score the predictions in ``prediction_dir`` against ``gt_files`` with the official evaluator.

    Returns the evaluator's result dict (``averages``: ``allAp``, ``allAp50%``, per-class ``ap`` and
    ``ap50%``) and writes it to ``<out_dir>/cityscapes_instance_eval.json``.
    """
    _patch_numpy()
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    args = official.args
    args.predictionPath = os.path.abspath(prediction_dir)
    args.predictionWalk = None
    args.gtInstancesFile = os.path.join(out_dir, "gtInstances.json")
    args.exportFile = os.path.join(out_dir, "cityscapes_instance_eval.json")
    args.JSONOutput = True
    args.quiet = quiet
    args.colorized = False
    official.writeDict2JSON = _write_json
    gt_files = [os.path.abspath(p) for p in gt_files]
    if os.path.exists(args.gtInstancesFile):  # the cache is per ground-truth set
        os.remove(args.gtInstancesFile)
    with _working_directory(out_dir):
        predictions = [official.getPrediction(gt, args) for gt in gt_files]
        return official.evaluateImgLists(predictions, gt_files, args)


def summarize(result):
    """``{"AP": ..., "AP50": ..., "classes": {name: {"AP", "AP50"}}}`` from the official result dict."""
    averages = result["averages"]
    return {
        "AP": float(averages["allAp"]),
        "AP50": float(averages["allAp50%"]),
        "classes": {name: {"AP": float(v["ap"]), "AP50": float(v["ap50%"])}
                    for name, v in averages["classes"].items()},
    }
