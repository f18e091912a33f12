"""Shared by the benchmark scripts: the median wall time of a call after a warm-up call."""

from __future__ import annotations

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
