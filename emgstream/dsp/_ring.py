"""Ring buffer of samples and timestamps: one writer, many readers, across threads."""

from __future__ import annotations

import logging
import threading

import numpy as np

from .._checks import check_positive_int
from ._kernels import ring_read, ring_write

logger = logging.getLogger(__name__)

#: latest() copies without a lock this many times before it holds the writer back; a copy
#: fails only when the writer overwrites the oldest copied samples meanwhile.
_OPTIMISTIC_TRIES = 3


class RingBuffer:
    """Preallocated ring of float32 samples ``(capacity, n_channels)`` and float64 timestamps.

    Samples are numbered by a 64-bit total-written counter: sample ``i`` (0-based, in write
    order) lives in slot ``i % capacity`` until sample ``i + capacity`` overwrites it.

    Threads: one writer, any number of readers. Readers never return torn data, by a
    seqlock-style check. The writer publishes two counters: ``_claimed`` (advanced *before*
    it copies a chunk in) and ``_total`` (advanced *after*). A reader takes ``_total`` as
    the end of what it may read, copies out, then reads ``_claimed``: every copied sample
    numbered below ``_claimed - capacity`` may have been overwritten during the copy and is
    discarded. ``read_since`` counts it as lost (it was overrun); ``latest`` copies again,
    and after a few torn copies (a writer lapping the buffer faster than the reader
    copies) takes the lock the writer holds while it writes, so it always returns.
    Otherwise readers never hold the writer back. The counters are Python ints assigned
    with the GIL held and the copies run in ``nogil`` kernels; taking and releasing the
    GIL around each copy orders the counter updates against the sample copies (this
    relies on the GIL: not for free-threaded builds). One writer only.

    Parameters
    ----------
    capacity : int
        Samples kept (all channels).
    n_channels : int
        Channels per sample.
    """

    def __init__(self, capacity: int, n_channels: int) -> None:
        self._capacity = check_positive_int(capacity, "capacity")
        self._n_channels = check_positive_int(n_channels, "n_channels")
        self._samples = np.zeros((self._capacity, self._n_channels), dtype=np.float32)
        self._timestamps = np.zeros(self._capacity, dtype=np.float64)
        self._claimed = 0
        self._total = 0
        self._write_lock = threading.Lock()  # uncontended unless a viewer is starved

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def n_channels(self) -> int:
        return self._n_channels

    @property
    def total_written(self) -> int:
        """Samples written since creation (the 64-bit counter readers pass to read_since)."""
        return self._total

    def write(self, samples, timestamps) -> None:
        """Append a chunk: samples (n, n_channels) float32, timestamps (n,) float64.

        A chunk longer than the capacity keeps its newest ``capacity`` samples; all ``n``
        count as written, so readers see the rest as lost. Only one thread may write.
        """
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[1] != self._n_channels:
            raise ValueError(f"expected samples of shape (n, {self._n_channels}), "
                             f"got {samples.shape}")
        n = samples.shape[0]
        if timestamps.shape != (n,):
            raise ValueError(f"expected {n} timestamps for {n} samples, "
                             f"got shape {timestamps.shape}")
        if n == 0:
            return
        start = self._total
        end = start + n
        if n > self._capacity:
            samples = samples[n - self._capacity:]
            timestamps = timestamps[n - self._capacity:]
            start = end - self._capacity
        with self._write_lock:
            self._claimed = end  # before the copy: readers discard what it may overwrite
            ring_write(self._samples, self._timestamps, samples, timestamps,
                       start % self._capacity)
            self._total = end  # after the copy: the new samples are readable

    def _copy(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Copy samples [start, end); return them and the first number still intact."""
        out = np.empty((end - start, self._n_channels), dtype=np.float32)
        tout = np.empty(end - start, dtype=np.float64)
        if end > start:
            ring_read(self._samples, self._timestamps, start % self._capacity, out, tout)
        return out, tout, self._claimed - self._capacity

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the newest ``min(n, total_written)`` samples and their timestamps.

        ``n`` may not exceed the capacity. For viewers; consumers that must see every
        sample use :meth:`read_since`.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if n > self._capacity:
            raise ValueError(f"n must be at most the capacity {self._capacity}, got {n}")
        for _ in range(_OPTIMISTIC_TRIES):
            end = self._total
            start = max(0, end - int(n))
            samples, timestamps, first_intact = self._copy(start, end)
            if first_intact <= start:
                return samples, timestamps
        logger.debug("latest(%d): writer lapped %d copies; copying under the write lock", n,
                     _OPTIMISTIC_TRIES)
        with self._write_lock:
            end = self._total
            return self._copy(max(0, end - int(n)), end)[:2]

    def read_since(self, counter: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Every sample written since ``counter`` that is still in the buffer.

        Parameters
        ----------
        counter : int
            ``total_written`` as of the previous read (0 at first).

        Returns
        -------
        samples : float32 (n, n_channels)
        timestamps : float64 (n,)
        new_counter : int
            Pass it to the next call.
        lost : int
            Samples written after ``counter`` that were overwritten before this read got
            them (overrun: the reader is too slow or the capacity too small); they precede
            the returned samples. Also logged at warning level.
        """
        if isinstance(counter, bool) or not isinstance(counter, (int, np.integer)) \
                or counter < 0:
            raise ValueError(f"counter must be a non-negative integer, got {counter!r}")
        counter = int(counter)
        end = self._total
        if counter > end:
            raise ValueError(f"counter {counter} is ahead of the {end} samples written "
                             "(a counter from another buffer?)")
        start = max(counter, end - self._capacity)
        samples, timestamps, first_intact = self._copy(start, end)
        if first_intact > start:  # overwritten during the copy: drop the torn head
            drop = min(first_intact, end) - start
            samples, timestamps = samples[drop:], timestamps[drop:]
            start += drop
        lost = start - counter
        if lost:
            logger.warning("ring buffer overrun: %d samples lost before sample %d "
                           "(capacity %d; the reader is too slow)", lost, start,
                           self._capacity)
        return samples, timestamps, end, lost

    def __repr__(self) -> str:
        return (f"<RingBuffer | {self._n_channels} channels, capacity {self._capacity}, "
                f"{self._total} written>")
