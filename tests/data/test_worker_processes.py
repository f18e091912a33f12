"""Data workers in processes (``train(use_multiprocessing=True)``): what crosses from a forked worker to the
training process, and a worker forked after OpenCV's thread pool has run in the parent. TensorFlow only: the
tests fork, which JAX's threads do not survive."""

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np

from mrcnn.data import generator as generator_module
from mrcnn.data.generator import SharedMemoryArray, from_worker


def _through_worker(batch):
    return from_worker(batch)


def _shared_files():
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"mrcnn-batch-{os.getpid()}-")}


def test_large_arrays_cross_through_shared_memory_and_are_removed(monkeypatch):
    large = np.arange(2**19, dtype=np.float32).reshape(512, 1024)  # 2 MiB
    flags = np.zeros((2, 1024, 600), dtype=bool)  # 1.2 MB
    small = np.arange(10, dtype=np.int32)
    batch = ((large, flags, small),)
    assert from_worker(batch) is batch  # the training process: nothing to do
    before = _shared_files()
    read = []
    read_shared = generator_module._read_shared

    def recording_read_shared(path, shape, dtype):  # unpickling a shipped array calls it here, by name
        read.append(path)
        return read_shared(path, shape, dtype)

    with multiprocessing.get_context("fork").Pool(1) as pool:  # forked here, with the module's own function
        monkeypatch.setattr(generator_module, "_read_shared", recording_read_shared)
        shipped = pool.apply(_through_worker, (batch,))
    assert isinstance(shipped, tuple) and isinstance(shipped[0], tuple) and len(shipped[0]) == 3
    for got, sent in zip(shipped[0], batch[0]):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)
    got = shipped[0][0]
    got[0, 0] = -1.0  # writable, and private to this array
    assert got[0, 0] == -1.0 and large[0, 0] == 0.0
    assert len(read) == 2 and all(path.startswith("/dev/shm/mrcnn-batch-") for path in read)  # not `small`
    assert _shared_files() == before  # each file removed once read


def test_a_shared_memory_array_is_an_array_until_pickled():
    """A process forked from the one that imported mrcnn (a user's multiprocessing.Process) may train itself: the
    arrays it marks for shared memory must still work as arrays there."""
    import pickle

    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    marked = values.view(SharedMemoryArray)
    np.testing.assert_array_equal(marked + 1, values + 1)
    np.testing.assert_array_equal(np.asarray(marked), values)
    before = _shared_files()
    back = pickle.loads(pickle.dumps(marked, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is np.ndarray and back.dtype == np.float32
    np.testing.assert_array_equal(back, values)
    assert _shared_files() == before


_WORKER_SCRIPT = """
import json, multiprocessing, sys
import cv2, numpy as np, threadpoolctl
from mrcnn.config import Config
from mrcnn.data.generator import DataGenerator
from mrcnn.shapes import ShapesDataset

class Small(Config):
    NAME = "small"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)

image = np.random.default_rng(0).random((2048, 2048, 3), dtype=np.float32)
for _ in range(3):
    cv2.resize(image, (1024, 1024))  # the pool runs in this process before the fork
dataset = ShapesDataset()
dataset.load_shapes(2, 96, 160, seed=5)
dataset.prepare()
generator = DataGenerator(dataset, Small(), seed=0)
expected = generator[1]

def load(index):
    batch = generator[index]
    blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    return batch, cv2.getNumThreads(), blas

with multiprocessing.get_context("fork").Pool(1) as pool:
    batch, opencv_threads, blas = pool.apply_async(load, (1,)).get(timeout=60)
equal = all(np.array_equal(a, b) for a, b in zip(batch[0], expected[0]))
parent_blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
print(json.dumps({"opencv_threads": opencv_threads, "blas": blas, "parent_blas": parent_blas, "equal": equal}))
"""


def test_a_worker_forked_after_opencv_ran_in_the_parent_loads_its_batch_on_one_thread():
    """In a fresh process with the libraries' default thread pools (not the tests' bounds): a worker forked after
    OpenCV's pool ran loads its batch (``cv2.setNumThreads(1)`` there waited forever for pool threads the fork did
    not copy), on one OpenCV and one BLAS thread, and the batch is the parent's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", _WORKER_SCRIPT], env=env, cwd=root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["equal"]
    assert report["opencv_threads"] == 1
    assert report["blas"] and set(report["blas"]) == {1}
    if os.cpu_count() > 1:
        assert max(report["parent_blas"]) > 1  # the bound is the worker's, not inherited from the environment
