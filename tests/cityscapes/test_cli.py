"""samples/cityscapes/cityscapes.py end to end on a tiny generated tree (no network)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from samples.cityscapes import cityscapes as cli
from samples.cityscapes.synthetic import generate

SCRIPT = os.path.join(os.path.dirname(cli.__file__), "cityscapes.py")


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    generate(str(root), {"train": 2, "val": 2}, height=128, width=256, seed=3, progress=False)
    return root


def test_train_evaluate_detect_on_a_tiny_tree(tiny_tree, tmp_path, capsys):
    logs = tmp_path / "logs"
    # The main job's settings (--config=synthetic) on the tiny tree, one image per step, one validation step.
    code = cli.main(["train", f"--dataset={tiny_tree}", "--config=synthetic", "--set", "IMAGES_PER_GPU=1",
                     "--set=VALIDATION_STEPS=1", "--weights=none", f"--logs={logs}", "--epochs=1", "--steps=2",
                     "--limit=2"])
    out = capsys.readouterr().out
    assert code == 0
    (run,) = logs.iterdir()
    assert (run / "mask_rcnn_cityscapes_synth_0001.h5").is_file()
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["command"][:3] == ["cityscapes.py", "train", f"--dataset={tiny_tree}"]
    assert recorded["settings"]["set"] == ["IMAGES_PER_GPU=1", "VALIDATION_STEPS=1"]
    assert recorded["stages"] == [{"layers": "all", "end_epoch": 1, "learning_rate": 0.02}]
    header = (run / "training_log.csv").read_text().splitlines()[0].split(",")
    for name in ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        assert name in header and "val_" + name in header
    cost = json.loads((run / "run_summary.json").read_text())
    assert cost["params"] > cost["backbone_params"] > 0 and cost["backbone_gflops_per_image"] > 0
    assert cost["seconds_per_step"] > 0 and cost["peak_rss_mb"] > 100 and cost["attention_stages"] == []
    # Training ends with the official evaluation and pictures of the run.
    result = json.loads((run / "evaluation_val" / "evaluation.json").read_text())
    assert set(result["classes"]) == {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
    assert 0.0 <= result["AP"] <= 1.0 and result["images"] == 2 and set(result["coco"]) == {"bbox", "segm"}
    assert "average" in out and "AP50" in out
    assert len(list((run / "evaluation_val" / "predictions").glob("*_pred.txt"))) == 2
    assert not (tmp_path / "matches.json").exists() and not os.path.exists("matches.json")
    pictures = sorted((run / "detections").glob("*_detections.png"))
    assert len(pictures) == 2 and Image.open(pictures[0]).size == (256, 128)

    # detect on an image file of another size, from the last checkpoint, into --output
    odd = tmp_path / "odd.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 170, 3), dtype=np.uint8)).save(odd)
    out_dir = tmp_path / "out"
    code = cli.main(["detect", f"--dataset={tiny_tree}", "--config=synthetic", f"--logs={logs}", f"--image={odd}",
                     f"--output={out_dir}"])
    assert code == 0
    assert Image.open(out_dir / "odd_detections.png").size == (170, 100)

    # export the last checkpoint as a SavedModel and serve the odd image with TensorFlow alone
    served = tmp_path / "served"
    code = cli.main(["export", "--config=synthetic", f"--logs={logs}", "--format=saved_model", f"--output={served}"])
    assert code == 0 and f"Exported saved_model to {served}" in capsys.readouterr().out
    import tensorflow as tf

    result = tf.saved_model.load(str(served)).signatures["serving_default"](
        image=tf.constant(np.asarray(Image.open(odd).convert("RGB"))))
    n = int(result["count"])
    assert result["masks"].shape == (100, 170, n) and result["boxes"].shape == (n, 4)
    assert cli.main(["export", "--config=synthetic", f"--logs={logs}", "--format=keras",
                     f"--output={tmp_path / 'model.h5'}"]) == 2
    assert ".keras file name" in capsys.readouterr().err


def test_bad_frames_stop_with_the_file_named_or_are_skipped(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    generate(str(root), {"val": 2}, height=128, width=256, seed=4, progress=False)
    broken = sorted((root / "gtFine" / "val").glob("*/*_gtFine_polygons.json"))[0]
    broken.write_text("{not json")
    args = ["evaluate", f"--dataset={root}", "--config=synthetic", "--weights=none", f"--logs={tmp_path / 'logs'}"]
    assert cli.main(args) == 2
    assert broken.name in capsys.readouterr().err
    assert cli.main(args + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "Skipped 1 bad frames" in out and "(1 images)" in out


def test_set_overrides_config_settings_and_refuses_unknown_ones(tmp_path, capsys):
    args = cli.build_parser().parse_args(["train", "--set", "VALIDATION_STEPS=3", "--set",
                                          "RPN_ANCHOR_SCALES=(4, 8, 16, 32, 64)", "--set", "NAME=custom"])
    config = cli.make_config(args)
    assert config.VALIDATION_STEPS == 3 and config.RPN_ANCHOR_SCALES == (4, 8, 16, 32, 64)
    assert config.NAME == "custom" and config.IMAGE_MIN_DIM == 128  # the synthetic settings otherwise
    assert cli.main(["train", "--set", "NO_SUCH_SETTING=1", f"--logs={tmp_path}"]) == 2
    assert "NO_SUCH_SETTING" in capsys.readouterr().err
    assert cli.main(["train", "--set", "VALIDATION_STEPS", f"--logs={tmp_path}"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_help_says_each_default_once(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for option in ("--weights", "--schedule", "--output", "--image"):
        help_text = text.split(option, 2)[-1].split(" --")[0]
        assert help_text.lower().count("default") == 1, option


def test_usage_errors_are_one_paragraph(tmp_path, capsys):
    assert cli.main(["train", f"--dataset={tmp_path / 'nowhere'}", f"--logs={tmp_path}"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert cli.main(["train", "--classes=10", f"--dataset={tmp_path}", f"--logs={tmp_path}"]) == 2
    assert "leftImg8bit/train/<city>" in capsys.readouterr().err
    assert cli.main(["train", "--schedule=heads", f"--dataset={tmp_path}", f"--logs={tmp_path}"]) == 2


def test_coco_weights_offline_exit_with_a_paragraph_and_no_traceback(tiny_tree, tmp_path):
    env = dict(os.environ, MRCNN_COCO_WEIGHTS=str(tmp_path / "mask_rcnn_coco.h5"),
               MRCNN_COCO_WEIGHTS_URL="http://127.0.0.1:9/mask_rcnn_coco.h5", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, SCRIPT, "train", "--weights=coco", f"--dataset={tiny_tree}",
                           "--config=synthetic", f"--logs={tmp_path / 'logs'}"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "mask_rcnn_coco.h5" in done.stderr and str(tmp_path / "mask_rcnn_coco.h5") in done.stderr
    assert "--weights=/path/to/mask_rcnn_coco.h5" in done.stderr
