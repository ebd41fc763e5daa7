"""Small pieces the benchmark scripts share (imported as a sibling module: run the scripts
as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import queue
import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def drain_to_writer(writer, chunks: queue.Queue) -> None:
    """Recorder thread body: append queued ``(samples, timestamps)`` until ``None`` comes."""
    while True:
        item = chunks.get()
        if item is None:
            return
        writer.append(*item)
