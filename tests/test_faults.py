"""Training that survives SIGKILL at any moment and stops cleanly when it diverges (cityscapes.py end to end).

The CLI runs in subprocesses (tests/cli_with_fault.py: the CLI with a tiny model, killing itself at a named
moment). One run is killed at ten moments in turn, each restart resuming with ``--weights=last``; it must end
with the same weights and log as a run that was never interrupted.
"""

import csv
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mrcnn import checkpoints
from mrcnn import model as modellib
from samples.cityscapes.synthetic import generate

HARNESS = os.path.join(os.path.dirname(__file__), "cli_with_fault.py")
NAME = "cityscapes_synth"
# (moment, last complete checkpoint when it strikes: the epoch the next start resumes from)
MOMENTS = [
    ("train_batch:1:1", 0),     # during the first epoch
    ("val_batch:1", 0),         # during its validation
    ("checkpoint_write:1", 0),  # inside the first checkpoint, before its rename
    ("after_checkpoint:1", 1),  # checkpoint in place, training_log.csv not yet written
    ("epoch_begin:2", 1),       # between epochs
    ("train_batch:2:2", 1),     # during the second epoch
    ("csv_write:2", 2),         # training_log.csv half written
    ("checkpoint_write:3", 2),  # inside the last checkpoint
    ("run_summary", 3),         # after training
    ("evaluate:1", 3),          # during the evaluation
]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _cli(moment, args):
    return subprocess.run([sys.executable, HARNESS, moment, "train", *args], env=_env(), capture_output=True,
                          text=True, timeout=600)


def _run_dir(logs):
    (run,) = modellib.run_dirs(str(logs), NAME)
    return run


def _rows(run):
    with open(os.path.join(run, "training_log.csv")) as f:
        return list(csv.DictReader(f))


def _weights(path):
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        return {f"{n}/{w.decode()}": np.asarray(f[n][w.decode()]) for n in names for w in f[n].attrs["weight_names"]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    generate(str(root), {"train": 3, "val": 2}, height=128, width=256, seed=4, progress=False)
    return root


@pytest.mark.slow
def test_killed_at_ten_moments_the_run_resumes_to_the_same_result(tree, tmp_path):
    first = [f"--dataset={tree}", "--config=synthetic", "--weights=none", "--epochs=3", "--steps=2", "--limit=3",
             "--deterministic"]  # without it, two uninterrupted runs differ in the last digits already
    straight = _cli("none", first + [f"--logs={tmp_path / 'straight'}"])
    assert straight.returncode == 0, straight.stderr[-3000:]

    logs = tmp_path / "killed"
    args = first + [f"--logs={logs}"]
    for moment, resumes_from in MOMENTS:
        done = _cli(moment, args)
        assert done.returncode == -9, f"{moment}: {done.returncode}\n{done.stderr[-3000:]}"
        if args[-1] == "--weights=last":  # this start resumed from the checkpoint the previous kill left
            assert "Resuming run" in done.stdout, done.stdout[-2000:]
        run = _run_dir(logs)
        complete = modellib.checkpoints_of(run)
        assert [os.path.basename(p) for p in complete] == [
            f"mask_rcnn_{NAME}_{e:04d}.h5" for e in range(1, resumes_from + 1)], moment
        if complete:  # find_last only ever returns a complete checkpoint with its training state
            last = modellib.find_last(str(logs), NAME)
            assert last == complete[-1] and checkpoints.read_state(last).epoch == resumes_from
        else:
            with pytest.raises(FileNotFoundError):
                modellib.find_last(str(logs), NAME)
        args = [f"--logs={logs}", "--weights=last"]  # the run's own settings come from its run.json

    done = _cli("none", args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Resuming run" in done.stdout and "from mask_rcnn_cityscapes_synth_0003.h5" in done.stdout
    run, reference = _run_dir(logs), _run_dir(tmp_path / "straight")
    # no temporary file left anywhere in the run, and everything the uninterrupted run wrote
    assert not [f for _, _, files in os.walk(run) for f in files if f.startswith(checkpoints.TMP_PREFIX)]
    for name in ("run.json", "run_summary.json", "evaluation_val/evaluation.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert len(os.listdir(os.path.join(run, "detections"))) == 2
    # the same log, row for row (no duplicated or missing epoch), and the same final weights
    rows, expected = _rows(run), _rows(reference)
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in expected] == ["0", "1", "2"]
    for row, want in zip(rows, expected):
        assert row.keys() == want.keys()
        np.testing.assert_allclose([float(row[k]) for k in row], [float(want[k]) for k in want], rtol=1e-5)
    got, want = _weights(os.path.join(run, f"mask_rcnn_{NAME}_0003.h5")), \
        _weights(os.path.join(reference, f"mask_rcnn_{NAME}_0003.h5"))
    assert got.keys() == want.keys()
    assert max(float(np.max(np.abs(got[k] - want[k]))) for k in got) <= 1e-5


@pytest.mark.slow
def test_divergence_stops_with_one_message_and_keeps_the_last_good_checkpoint(tree, tmp_path):
    logs = tmp_path / "logs"
    # A learning rate of 1e30 overflows the weights. (At 1000 the training losses stayed finite and only the
    # validation loss, through batch-norm moving averages left behind by the weights, was not; precise BN,
    # which the synthetic config turns on, recomputes those statistics, so that no longer diverges.)
    done = _cli("none", [f"--dataset={tree}", "--config=synthetic", "--weights=none", "--steps=2", "--limit=3",
                         "--schedule=all:1,all:3:5e31", f"--logs={logs}"])
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    message = done.stderr.strip().splitlines()
    message = next(line for line in message if "training diverged" in line)
    assert "at epoch 2" in message and "learning rate 1e+30" in message and "lower learning rate" in message
    assert any(name in message for name in ("loss", "non-finite"))
    run = _run_dir(logs)
    assert [os.path.basename(p) for p in modellib.checkpoints_of(run)] == [f"mask_rcnn_{NAME}_0001.h5"]
    assert f"mask_rcnn_{NAME}_0001.h5" in message
    assert [r["epoch"] for r in _rows(run)] == ["0"]
    weights = _weights(os.path.join(run, f"mask_rcnn_{NAME}_0001.h5"))
    assert all(np.all(np.isfinite(w)) for w in weights.values())
