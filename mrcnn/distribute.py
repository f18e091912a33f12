"""Training on several GPUs or machines: the ``tf.distribute`` strategy a Config asks for.

* ``GPU_COUNT = 1`` and no ``TF_CONFIG``: no strategy (Keras's default, one device).
* ``GPU_COUNT = N > 1``: ``MirroredStrategy`` over this machine's first N GPUs. The global batch is
  ``IMAGES_PER_GPU * GPU_COUNT`` (Matterport's ``BATCH_SIZE``); Keras splits each batch across the GPUs.
* ``TF_CONFIG`` set (the JSON ``{"cluster": {...}, "task": {"type": ..., "index": ...}}`` that
  TensorFlow's multi-worker training reads): ``MultiWorkerMirroredStrategy``, each machine with its first
  ``GPU_COUNT`` GPUs; the global batch is ``IMAGES_PER_GPU * GPU_COUNT * workers``, each worker loading
  its own images (see :func:`worker_dataset`). Only the chief writes checkpoints and logs.

Fewer devices than ``GPU_COUNT`` is an error naming both numbers, never a silent fallback. Replicas are
GPUs; ``MRCNN_REPLICA_DEVICE="CPU"`` makes them (logical) CPU devices instead, which is how the tests
run this code without a GPU.
"""

from __future__ import annotations

import json
import os

REPLICA_DEVICE_ENV = "MRCNN_REPLICA_DEVICE"

_strategies = {}


class DistributeError(ValueError):
    """A distribution setting that cannot work (GPU count, TF_CONFIG); the message names the value."""


def parse_tf_config(value=None):
    """The validated ``TF_CONFIG`` (``os.environ["TF_CONFIG"]`` by default) as a dict, or None if unset.

    Needs ``cluster`` (``{job: [host:port, ...]}``) and ``task`` (``{"type": job, "index": i}``) naming a
    task that the cluster lists.
    """
    value = os.environ.get("TF_CONFIG", "") if value is None else value
    if not value.strip():
        return None
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as error:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({error}): {value!r}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(hosts, list) and hosts and all(isinstance(h, str) and ":" in h for h in hosts)
            for hosts in cluster.values()):
        raise DistributeError(f"TF_CONFIG needs a 'cluster' mapping each job to a list of 'host:port' "
                              f"addresses, got {value!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise DistributeError(f"TF_CONFIG needs a 'task' with 'type' and 'index' saying which cluster "
                              f"member this process is, got {value!r}")
    kind, index = task["type"], task["index"]
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise DistributeError(f"TF_CONFIG's task {task!r} names this worker nowhere in its cluster "
                              f"{cluster!r}")
    return spec


def is_chief(tf_config=None):
    """Whether this process writes checkpoints and logs: no TF_CONFIG, the ``chief`` task, or worker 0
    of a cluster without a chief (TensorFlow's rule)."""
    spec = parse_tf_config() if tf_config is None else tf_config
    if not spec:
        return True
    kind, index = spec["task"]["type"], spec["task"]["index"]
    if "chief" in spec["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def replica_device_type():
    device = os.environ.get(REPLICA_DEVICE_ENV, "GPU").upper()
    if device not in ("GPU", "CPU"):
        raise DistributeError(f"{REPLICA_DEVICE_ENV}={device!r}: expected GPU (default) or CPU")
    return device


def _devices(count):
    """Names of the first ``count`` replica devices of this machine; an error if there are fewer."""
    import tensorflow as tf

    device_type = replica_device_type()
    devices = tf.config.list_logical_devices(device_type)
    if len(devices) < count:
        raise DistributeError(
            f"GPU_COUNT={count}, but this machine has {len(devices)} {device_type} device(s) "
            f"({', '.join(d.name for d in devices) or 'none'}); set GPU_COUNT to at most {len(devices)}")
    return [d.name for d in devices[:count]]


def strategy_for(config):
    """The ``tf.distribute`` strategy for ``config`` (None: one device), created once per process."""
    tf_config = parse_tf_config()
    count = int(config.GPU_COUNT)
    if tf_config is None and count == 1:
        return None
    key = ("multi" if tf_config else "mirrored", count)
    if key not in _strategies:
        import tensorflow as tf

        if tf_config is None:
            _strategies[key] = tf.distribute.MirroredStrategy(devices=_devices(count))
        else:
            if _strategies:
                raise DistributeError("one multi-worker strategy per process: it was already created "
                                      f"for another setting ({list(_strategies)})")
            if replica_device_type() == "GPU":
                gpus = tf.config.list_physical_devices("GPU")
                if len(gpus) < count:
                    raise DistributeError(f"GPU_COUNT={count}, but this machine has {len(gpus)} GPU(s)")
                tf.config.set_visible_devices(gpus[:count], "GPU")  # each worker uses its first N GPUs
            _strategies[key] = _multi_worker_strategy()
    return _strategies[key]


def _multi_worker_strategy():
    """TensorFlow's ``MultiWorkerMirroredStrategy``, whose ``reduce`` also takes nested structures.

    Two incompatibilities of Keras 3's ``fit`` with TensorFlow's multi-worker reduce are absorbed here:
    ``fit`` reduces its first batch across replicas (to build metrics from its shapes), and with several
    workers the collective reduce takes one tensor at a time and no integer type narrower than int32,
    while this model's batch is a tuple of seven inputs with uint8 masks: nested values are reduced leaf
    by leaf, non-float leaves as float32. And ``fit`` reduces each step's scalar logs with ``axis=0``,
    which fails on scalars (tensorflow/tensorflow#72388): scalars are reduced across replicas as they are.
    """
    import tensorflow as tf

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if not tf.nest.is_nested(value):
                local = value.values[0] if isinstance(value, tf.distribute.DistributedValues) else value
                if axis is not None and getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    axis = None
                return super().reduce(reduce_op, value, axis)

            def leaf(v):
                if isinstance(v, tf.distribute.DistributedValues) and not v.values[0].dtype.is_floating:
                    v = self.run(lambda x: tf.cast(x, tf.float32), args=(v,))
                return super(Strategy, self).reduce(reduce_op, v, axis)

            return tf.nest.map_structure(leaf, value)

    return Strategy()


def worker_dataset(strategy, make_generator, steps_per_epoch, initial_epoch=0):
    """A per-worker input pipeline for multi-worker training (``strategy.distribute_datasets_from_function``).

    ``make_generator(worker_index)`` returns a :class:`mrcnn.data.generator.DataGenerator` of
    ``IMAGES_PER_GPU`` images a batch, seeded for that worker; each of the worker's replicas draws its own
    batches from it, so every worker loads only its share of the global batch. Batches follow the
    generator's (epoch, index) order from ``initial_epoch`` on, without end (``fit`` is given the steps
    per epoch).
    """
    import tensorflow as tf

    from mrcnn.data.generator import model_inputs

    def dataset_fn(context):
        generator = make_generator(context.input_pipeline_id)
        batches_per_epoch = steps_per_epoch * context.num_replicas_in_sync // context.num_input_pipelines
        first = initial_epoch * batches_per_epoch
        sample = model_inputs(generator.batch_at(initial_epoch, 0)[0])
        signature = tuple(tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in sample)

        def load(i):
            i = int(i)
            inputs, _ = generator.batch_at(i // batches_per_epoch, i % batches_per_epoch)
            return tuple(model_inputs(inputs))

        def load_tf(i):
            tensors = tf.numpy_function(load, [i], [s.dtype for s in signature])
            for tensor, spec in zip(tensors, signature):
                tensor.set_shape(spec.shape)
            return (tuple(tensors),)

        dataset = tf.data.Dataset.range(first, 2**62).map(load_tf, num_parallel_calls=generator.workers,
                                                            deterministic=True)
        return dataset.prefetch(2)

    return strategy.distribute_datasets_from_function(dataset_fn)
