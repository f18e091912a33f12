"""The attention comparison over seeds: statistics against scipy, tables, plot, resuming, the command line."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from samples.cityscapes import compare_attention

CLASSES = ("person", "car")


def _result(seed, ap, seconds, stages):
    return {
        "seed": seed,
        "evaluation": {"AP": ap, "AP50": 2 * ap, "classes": {c: {"AP": ap, "AP50": 2 * ap} for c in CLASSES},
                       "coco": {"bbox": {"AP": ap, "AP50": ap}, "segm": {"AP": ap / 2, "AP50": ap}}},
        "params": 1234567, "backbone_params": 234567, "backbone_gflops_per_image": 1.5,
        "seconds_per_step": seconds, "peak_rss_mb": 2048.0, "val_loss": [3.0, 2.0, 1.5],
        "attention_stages": stages,
    }


BASE_AP = [0.10, 0.14, 0.09]
ATTN_AP = [0.12, 0.13, 0.15]


def _results():
    return {"baseline": [_result(s, ap, 0.5, []) for s, ap in enumerate(BASE_AP)],
            "attention": [_result(s, ap, 0.7 + 0.01 * s, [4, 5]) for s, ap in enumerate(ATTN_AP)]}


def test_statistics_match_scipy():
    out = compare_attention.aggregate(_results())
    base = out["variants"]["baseline"]
    assert base["mean"]["AP"] == pytest.approx(np.mean(BASE_AP))
    assert base["std"]["AP"] == pytest.approx(np.std(BASE_AP, ddof=1))
    assert base["std"]["AP50"] == pytest.approx(2 * np.std(BASE_AP, ddof=1))
    diff = out["differences"]["AP"]
    assert diff["per_seed"] == pytest.approx(np.subtract(ATTN_AP, BASE_AP))
    reference = stats.ttest_rel(ATTN_AP, BASE_AP).confidence_interval(0.95)
    assert (diff["low"], diff["high"]) == pytest.approx((reference.low, reference.high))
    assert out["variants"]["attention"]["seconds_per_step"] == pytest.approx(0.71)
    # one seed: a mean difference, no interval
    one = compare_attention.aggregate({k: v[:1] for k, v in _results().items()})
    assert one["differences"]["AP50"]["low"] is None
    assert "One seed" in compare_attention.conclusion(one)


def test_conclusion_says_whether_the_interval_excludes_zero():
    out = compare_attention.aggregate(_results())
    assert "contains 0" in compare_attention.conclusion(out)
    clear = _results()
    for run, ap in zip(clear["attention"], (0.30, 0.31, 0.29)):
        run["evaluation"]["AP50"] = 2 * ap
    text = compare_attention.conclusion(compare_attention.aggregate(clear))
    assert "excludes 0: attention is better" in text


def test_mismatched_seeds_are_refused():
    results = _results()
    results["attention"][2]["seed"] = 7
    with pytest.raises(ValueError, match="different seeds"):
        compare_attention.aggregate(results)


def test_table_json_and_plot(tmp_path):
    stats_, text = compare_attention.write_outputs(_results(), str(tmp_path))
    lines = text.splitlines()
    assert "| | baseline | attention |" in lines
    assert "| AP (official) | 0.110 +- 0.026 | 0.133 +- 0.015 |" in lines
    assert "| 1 | 0.140 / 0.280 | 0.130 / 0.260 |" in lines
    assert "| seconds / training step | 0.500 +- 0.000 | 0.710 +- 0.010 |" in lines
    assert any(line.startswith("| AP | +0.020, -0.010, +0.060 | +0.023 |") for line in lines)
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["statistics"]["seeds"] == [0, 1, 2]
    assert len(saved["runs"]["attention"]) == 3
    assert (tmp_path / "comparison.md").read_text().strip() == text.strip()
    assert Image.open(tmp_path / "comparison.png").size == (1500, 450)


def _fake_run(run_dir, seed, ap):
    os.makedirs(os.path.join(run_dir, "evaluation_val"))
    summary = _result(seed, ap, 0.5, [])
    evaluation = summary.pop("evaluation")
    summary.pop("val_loss")
    with open(os.path.join(run_dir, "run_summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(run_dir, "evaluation_val", "evaluation.json"), "w") as f:
        json.dump(evaluation, f)
    with open(os.path.join(run_dir, "training_log.csv"), "w") as f:
        f.write("epoch,loss,val_loss\n0,3.0,2.5\n1,2.0,1.9\n")


def test_main_runs_each_variant_and_seed_once_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_subprocess_run(command, check):
        calls.append(command)
        logs = next(a.split("=", 1)[1] for a in command if a.startswith("--logs="))
        seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--seed=")))
        _fake_run(os.path.join(logs, "cityscapes_synth20260101T0000"), seed, 0.1 + 0.01 * seed)

    monkeypatch.setattr(compare_attention.subprocess, "run", fake_subprocess_run)
    out = tmp_path / "cmp"
    compare_attention.main(["--seeds", "2", "--first-seed", "5", "--epochs", "3", "--out", str(out)])
    assert len(calls) == 4
    assert all("--deterministic" in c and "--epochs=3" in c for c in calls)
    assert [("--attention" in c, next(a for a in c if a.startswith("--seed="))) for c in calls] == [
        (False, "--seed=5"), (True, "--seed=5"), (False, "--seed=6"), (True, "--seed=6")]
    assert (out / "comparison.md").is_file() and (out / "comparison.png").is_file()
    # again into the same folder: every run is found, nothing is trained
    compare_attention.main(["--seeds", "2", "--first-seed", "5", "--out", str(out)])
    assert len(calls) == 4


def test_a_run_without_evaluation_is_an_error(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(compare_attention.subprocess, "run", lambda command, check: commands.append(command))
    with pytest.raises(RuntimeError, match="baseline seed 0"):
        compare_attention.main(["--seeds", "1", "--out", str(tmp_path)])
    # on the synthetic set the runs default to the comparison's own schedule length
    assert f"--epochs={compare_attention.SYNTHETIC_EPOCHS}" in commands[0]
