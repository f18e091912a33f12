"""Shared by the benchmark scripts: the median wall time of a call after a warm-up call."""

from __future__ import annotations

import argparse
import os
import statistics
import time


def median_seconds(fn, repeats, digits=3, first=None):
    """Call ``fn`` once (tracing, graph building), then ``repeats`` times; the median seconds, rounded.
    ``first``: a dict that receives the first call's seconds under ``"first_call_s"``."""
    start = time.perf_counter()
    fn()
    if first is not None:
        first["first_call_s"] = round(time.perf_counter() - start, digits)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), digits)


def threads_from_argv(argv):
    """The ``--threads N`` in ``argv`` (default: all cores), read before TensorFlow or torch starts; the
    script's own parser accepts the same option for its help."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser.parse_known_args(argv)[0].threads
