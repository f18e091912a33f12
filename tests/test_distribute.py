"""Several GPUs and machines (mrcnn.distribute), run without a GPU: logical CPU devices, loopback workers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mrcnn import distribute
from mrcnn.config import ConfigError
from mrcnn.losses import LOSS_NAMES
from tests.conftest import TinyModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return dict(env, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, **extra)


def test_two_replicas_take_the_step_one_device_takes(tmp_path):
    out = tmp_path / "step.npz"
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "mirrored_step.py"), str(out), str(tmp_path)],
                   check=True, env=_env(), timeout=900)
    result = np.load(out)
    for name in LOSS_NAMES + ("loss",):
        # the losses of the global batch, not twice them nor the mean of per-image losses
        np.testing.assert_allclose(result[f"mirrored/{name}"], result[f"single/{name}"], rtol=1e-5, err_msg=name)
    for name in LOSS_NAMES:  # validation after the update: the same weights came out
        np.testing.assert_allclose(result[f"mirrored/val_{name}"], result[f"single/val_{name}"], rtol=1e-5)
    count = len([k for k in result.files if k.startswith("initial/weight")])
    trained = 0
    for i in range(count):
        before, single, mirrored = (result[f"{k}/weight{i}"] for k in ("initial", "single", "mirrored"))
        step = np.abs(single - before).max()
        trained += step > 0
        np.testing.assert_allclose(mirrored, single, atol=1e-3 * step + 1e-7)
    assert trained > count // 2
    # one checkpoint, one CSV, one TensorBoard run: written once, not per replica
    assert result["mirrored/files"].tolist() == ["mask_rcnn_tinymodel_0001.h5", "train", "training_log.csv",
                                                 "validation"]


def test_more_gpus_than_the_machine_has_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv(distribute.REPLICA_DEVICE_ENV, "GPU")
    with pytest.raises(distribute.DistributeError, match=r"GPU_COUNT=3, but this machine has 0 GPU"):
        distribute.strategy_for(TinyModelConfig(GPU_COUNT=3))
    assert distribute.strategy_for(TinyModelConfig(GPU_COUNT=1)) is None


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_gpu_count_must_be_a_positive_int(value):
    with pytest.raises(ConfigError, match="GPU_COUNT"):
        TinyModelConfig(GPU_COUNT=value)


def test_batch_size_is_images_per_gpu_times_gpus():
    assert TinyModelConfig(IMAGES_PER_GPU=3, GPU_COUNT=2).BATCH_SIZE == 6


CLUSTER = {"worker": ["localhost:1111", "localhost:2222"]}


@pytest.mark.parametrize("value, match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "cluster"),
    (json.dumps({"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}), "cluster"),
    (json.dumps({"cluster": CLUSTER}), "task"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}), "nowhere"),
    (json.dumps({"cluster": CLUSTER, "task": {"type": "chief", "index": 0}}), "nowhere"),
])
def test_malformed_tf_config_is_a_clear_error(value, match):
    with pytest.raises(distribute.DistributeError, match=match):
        distribute.parse_tf_config(value)


def test_the_chief_is_the_chief_task_or_worker_zero():
    def spec(cluster, kind, index):
        return distribute.parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))

    assert distribute.is_chief(spec(CLUSTER, "worker", 0)) and not distribute.is_chief(spec(CLUSTER, "worker", 1))
    with_chief = {"chief": ["localhost:3333"], **CLUSTER}
    assert distribute.is_chief(spec(with_chief, "chief", 0)) and not distribute.is_chief(spec(with_chief, "worker", 0))
    assert distribute.parse_tf_config("") is None


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_cluster(tmp_path, cache, logs, argv, tag, timeout=900):
    """Two loopback workers running ``cityscapes.py train <argv>``; their exit codes and final weights."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs, outs = [], []
    for index in range(2):
        env = _env(MRCNN_CACHE=str(cache), OMP_NUM_THREADS="1",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        out = tmp_path / f"{tag}{index}.npz"
        log = open(tmp_path / f"{tag}{index}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "multiworker_train.py"), str(out), "train",
             "--weights=none" if tag == "first" else "--weights=last", f"--logs={logs}", "--no-evaluate", *argv],
            env=env, stdout=log, stderr=subprocess.STDOUT))
        outs.append(out)
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # a worker whose peer died waits for it forever: never leave one behind
            if p.poll() is None:
                p.kill()
    logs_text = [(tmp_path / f"{tag}{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs_text
    return [np.load(out) for out in outs]


@pytest.mark.slow
def test_two_workers_on_loopback_train_with_one_set_of_checkpoints_and_resume(tmp_path):
    from samples.cityscapes import jobs

    cache = tmp_path / "cache"
    jobs.synthetic_root(str(cache), progress=False)
    logs = tmp_path / "logs"
    first = _run_cluster(tmp_path, cache, logs, ["--epochs=2", "--steps=2"], "first")
    (run,) = logs.iterdir()  # one run folder: only the chief wrote
    assert sorted(f.name for f in run.iterdir() if f.suffix == ".h5") == [
        "mask_rcnn_cityscapes_synth_0001.h5", "mask_rcnn_cityscapes_synth_0002.h5"]
    assert not [f for f in run.iterdir() if f.name.startswith(".tmp")]
    rows = (run / "training_log.csv").read_text().splitlines()
    assert len(rows) == 3 and "mrcnn_mask_loss" in rows[0]
    assert len(first[0].files) > 100
    for a, b in zip(first[0].values(), first[1].values()):  # both workers hold the same trained weights
        np.testing.assert_array_equal(a, b)

    resumed = _run_cluster(tmp_path, cache, logs, ["--epochs=3", "--steps=2"], "resumed")
    assert [p.name for p in logs.iterdir()] == [run.name]  # resumed into the same run
    assert (run / "mask_rcnn_cityscapes_synth_0003.h5").is_file()
    assert len((run / "training_log.csv").read_text().splitlines()) == 4
    for a, b in zip(resumed[0].values(), resumed[1].values()):
        np.testing.assert_array_equal(a, b)
