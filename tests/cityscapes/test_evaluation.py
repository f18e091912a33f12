"""The in-process evaluation wrapper against the official evaluation script run as a program."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mrcnn.evaluation.coco import coco_ap
from samples.cityscapes.evaluation import run_official_evaluation, summarize, write_predictions
from samples.cityscapes.synthetic import generate

# The official script's own main(), with only the numpy-2 shims it needs to run at all.
OFFICIAL = """
import json, sys
import numpy as np
np.in1d = lambda a, b, *x, **k: np.isin(a, b, *x, **k).ravel()
def write(d, path):
    with open(path, "w") as f:
        json.dump(d, f, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__, indent=4)
import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as official
official.writeDict2JSON = write
official.args.gtInstancesFile = sys.argv[1]
sys.argv = sys.argv[:1]
official.main()
"""


def _fixed_predictions(gt_files, pred_dir):
    """From the ground truth: exact masks, eroded copies, and false positives, with fixed scores."""
    rng = np.random.default_rng(0)
    for gt_file in gt_files:
        ids = np.asarray(Image.open(gt_file), dtype=np.int64)
        masks, labels, scores = [], [], []
        for value in np.unique(ids[ids >= 1000]):
            mask = ids == value
            masks.append(mask)
            labels.append(value // 1000)
            scores.append(rng.uniform(0.5, 1.0))
            shrunk = mask.copy()
            shrunk[: ids.shape[0] // 2] = False  # a worse duplicate
            masks.append(shrunk)
            labels.append(value // 1000)
            scores.append(rng.uniform(0.0, 0.6))
        fp = np.zeros(ids.shape, bool)
        fp[-15:, :40] = True  # on the road, where no car is
        masks.append(fp)
        labels.append(26)
        scores.append(0.99)  # ranked first: it must cost precision
        stem = os.path.basename(gt_file)[: -len("_gtFine_instanceIds.png")]
        write_predictions(pred_dir, stem, np.stack(masks, -1), labels, scores)


def test_wrapper_equals_the_official_script(tmp_path):
    root = tmp_path / "cityscapes"
    generate(str(root), {"val": 4}, height=96, width=192, seed=5, progress=False)
    gt_files = sorted(glob.glob(str(root / "gtFine/val/*/*_gtFine_instanceIds.png")))
    pred_dir = tmp_path / "results"
    _fixed_predictions(gt_files, str(pred_dir))

    work = tmp_path / "work"
    work.mkdir()
    before = set(os.listdir(work))
    cwd = os.getcwd()
    ours = summarize(run_official_evaluation(str(pred_dir), gt_files, str(tmp_path / "eval")))
    assert os.getcwd() == cwd and set(os.listdir(work)) == before
    assert (tmp_path / "eval" / "cityscapes_instance_eval.json").is_file()

    env = dict(os.environ, CITYSCAPES_DATASET=str(root), CITYSCAPES_RESULTS=str(pred_dir))
    subprocess.run([sys.executable, "-c", OFFICIAL, str(tmp_path / "official_gt.json")], cwd=work, env=env,
                   check=True, capture_output=True, text=True)
    exported = root / "evaluationResults" / "resultInstanceLevelSemanticLabeling.json"
    reference = summarize(json.loads(exported.read_text()))
    np.testing.assert_equal(ours, reference)  # NaN (a class absent from these frames) equals NaN
    assert 0 < ours["AP"] < 1 and 0 < ours["classes"]["car"]["AP50"] < 1


def test_coco_ap_perfect_and_with_crowds():
    masks = np.zeros((40, 60, 3), bool)
    masks[2:12, 2:20, 0] = True
    masks[20:35, 10:30, 1] = True
    masks[5:15, 40:58, 2] = True  # a crowd region
    gt = [(1, 40, 60, masks, [26, 24, 26], [0, 0, 1])]
    perfect = [(1, masks[:, :, :2], [26, 24], [0.9, 0.8])]
    result = coco_ap(gt, perfect, [24, 26])
    assert result["segm"]["AP"] == pytest.approx(1.0) and result["bbox"]["AP50"] == pytest.approx(1.0)
    # A detection on the crowd region is neither a true nor a false positive
    on_crowd = [(1, masks, [26, 24, 26], [0.9, 0.8, 0.95])]
    assert coco_ap(gt, on_crowd, [24, 26])["segm"]["AP"] == pytest.approx(1.0)
    assert coco_ap(gt, [(1, masks[:, :, :0], [], [])], [24, 26])["segm"]["AP"] == 0.0
