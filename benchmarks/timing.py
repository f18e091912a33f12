"""Shared by the benchmark scripts: the median wall time of a call after a warm-up call."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats, digits=3):
    """Call ``fn`` once (tracing, graph building), then ``repeats`` times; the median seconds, rounded."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), digits)
