"""Replay a recording as a live source: emg2pose-layout HDF5 (ours or the emg2pose dataset's)
or XDF (LabRecorder's; its signal stream, chosen by ``stream=NAME`` when it holds several).

``replay://path/to/rec.h5?speed=1&loop=0&chunk=10``, ``replay://session.xdf?stream=EMG``

Timing is drift-free: sample ``i`` (counted from the start of the replay, across loops) is
due at ``t0 + i / (rate * speed)`` on the LSL clock, ``t0`` being the moment of ``open``.
``read`` delivers the samples that are due, waiting for the next chunk by sleeping and then
spinning the last fraction of a millisecond, so lateness never accumulates. Timestamps are
those due times, so they are on the LSL clock near "now" like any live source's (at
``speed=1`` they are spaced ``1 / rate``; faster replays compress them by ``speed``).
``speed=0`` or ``speed=inf`` replays as fast as the consumer reads, stamped at the nominal
spacing ``t0 + i / rate``. With ``loop=1`` the file restarts seamlessly: timestamps keep
advancing.

Ground truth: the recording's labels (and pose) are not part of the chunk contract, so
:meth:`ReplaySource.labels_for` maps delivered timestamps back to the file's labels; live
benchmarks use it to score a replayed session. ``last_labels`` holds the labels of the last
chunk ``read`` returned. :meth:`ReplaySource.markers_between` gives the file's markers and
changes of label at their replay times (what ``emgstream play`` publishes beside the samples).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
from pylsl import local_clock

from .._checks import check_positive_int
from ._base import Source, SourceError, StreamInfo

__all__ = ["ReplaySource"]

logger = logging.getLogger(__name__)

_SPIN_S = 0.0003  # sleep until this close to the due time, then spin
_BLOCK_BYTES = 64 * 1024 * 1024  # files with more EMG than this are read in blocks
_PARAMS = ("speed", "loop", "chunk", "stream")


class ReplaySource(Source):
    """A recording played back on a drift-free schedule.

    Parameters
    ----------
    path : path-like
        emg2pose-layout HDF5 file, or an ``.xdf`` file.
    speed : float
        Playback speed (1 = real time); 0 or inf = as fast as possible.
    loop : bool
        Restart at the end instead of finishing.
    chunk : int, optional
        Samples per chunk; default about 5 ms of data.
    stream : str, optional
        XDF only: the name of the signal stream, when the file holds several.

    Attributes
    ----------
    finished : bool
        True once a non-looping replay has delivered every sample.
    last_labels : ndarray of int16 or None
        Labels of the last chunk ``read`` returned (None if the file has none).
    class_names : list of str
        The recording's class names (empty if unlabelled).
    """

    def __init__(self, path, *, speed: float = 1.0, loop: bool = False,
                 chunk: int | None = None, stream: str | None = None) -> None:
        super().__init__()
        self._path = Path(path)
        speed = float(speed)
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be > 0 (or 0/inf for as fast as possible), got "
                             f"{speed!r}")
        self._speed = math.inf if speed == 0 else speed
        self._loop = bool(loop)
        self._chunk = None if chunk is None else check_positive_int(chunk, "chunk")
        self._stream = stream
        self.finished = False
        self.last_labels: np.ndarray | None = None
        self.class_names: list[str] = []
        self._labels: np.ndarray | None = None

    @classmethod
    def from_uri(cls, target: str, params: dict[str, str]) -> "ReplaySource":
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise ValueError(f"unknown replay:// parameter(s) {sorted(unknown)}; expected "
                             f"{list(_PARAMS)}")
        if not target:
            raise ValueError("replay:// needs a file path, e.g. replay://rec.h5?speed=1")
        try:
            speed = float(params.get("speed", 1.0))
            loop = params.get("loop", "0")
            if loop not in ("0", "1", "true", "false"):
                raise ValueError
            chunk = int(params["chunk"]) if "chunk" in params else None
        except ValueError:
            raise ValueError(f"bad replay:// parameters {params!r}: speed is a number, loop "
                             f"is 0 or 1, chunk a positive integer") from None
        return cls(target, speed=speed, loop=loop in ("1", "true"), chunk=chunk,
                   stream=params.get("stream"))

    # -- Source ------------------------------------------------------------------------------
    def _open(self) -> None:
        from ..io.recording import RecordingError  # h5py only when used

        try:
            if self._path.suffix.lower() == ".xdf":
                head = self._open_xdf()
            else:
                head = self._open_hdf5()
        except RecordingError as err:
            raise SourceError(f"cannot replay: {err}") from None
        self.class_names = list(head.class_names)
        device = head.meta.get("device") or {}
        names = device.get("channel_names")
        if not (isinstance(names, list) and len(names) == head.n_channels
                and all(isinstance(name, str) for name in names)):
            names = ()  # untrusted file: fall back to EMG1..EMGn
        self._rate = head.sample_rate
        self._info = StreamInfo.described_by(
            f"recording {str(self._path)!r}", name=self._path.stem, n_channels=head.n_channels,
            sample_rate=head.sample_rate, channel_names=tuple(names),
            units=str(device.get("units", "microvolts")),
            device_id=str(device.get("device_id", "")), kind="replay",
            manufacturer=str(device.get("manufacturer", "")))
        self._chunk_size = self._chunk or max(1, int(round(0.005 * self._rate)))
        self._spacing = 1.0 / (self._rate * self._speed) if math.isfinite(self._speed) \
            else 1.0 / self._rate
        self._delivered = 0
        self.finished = False
        self._t0 = local_clock()
        logger.info("replaying %s: %d samples, %d ch @ %g Hz, speed %g%s", self._path,
                    self._total, head.n_channels, self._rate, self._speed,
                    ", looping" if self._loop else "")

    def _open_hdf5(self):
        from ..io.recording import read_recording

        if self._stream is not None:
            raise SourceError(f"cannot replay: stream= chooses a stream of an XDF file; "
                              f"{str(self._path)!r} is not one")
        head = read_recording(self._path, stop=0)
        total = self._set_total(head.meta["total_samples"])
        self._block = total if total * head.n_channels * 4 <= _BLOCK_BYTES else \
            max(1, _BLOCK_BYTES // (head.n_channels * 4))
        self._load_block(0)
        # labels are 2 bytes a sample: keep them whole for labels_for(); marker times map to
        # samples through the time column (8 bytes a sample, read once)
        labels, times = [], []
        if head.labels is not None or head.markers:
            for a in range(0, total, self._block):
                part = read_recording(self._path, start=a, stop=min(a + self._block, total))
                labels.append(part.labels)
                times.append(part.time if head.markers else part.time[:0])
        if head.labels is not None:
            self._labels = np.concatenate(labels)
        self._set_markers(head, np.concatenate(times) if head.markers else None)
        return head

    def _open_xdf(self):
        from ..io.xdf import read_xdf

        rec = read_xdf(self._path, stream=self._stream)  # pyxdf reads the file whole
        self._block = self._set_total(rec.n_samples)
        self._block_start, self._block_emg = 0, rec.emg
        self._set_markers(rec, rec.time)
        return rec

    def _set_total(self, total: int) -> int:
        if total == 0:
            raise SourceError(f"recording {str(self._path)!r} holds no samples")
        self._total = total
        return total

    def _set_markers(self, rec, times: np.ndarray | None) -> None:
        """The file's markers (each at the sample nearest its time: round-off in a file's
        stamps must not move it by one) and its changes of label, as sample indices and
        texts in order."""
        from ..io.xdf import label_markers

        events = label_markers(self._labels, rec.class_names)
        if rec.markers:
            half = 0.5 / rec.sample_rate
            at = np.searchsorted(times, [t - half for t, _ in rec.markers])
            at = at.clip(0, self._total - 1)
            events += [(int(i), text) for i, (_, text) in zip(at, rec.markers)]
        events.sort(key=lambda e: e[0])
        self._event_index = np.array([i for i, _ in events], np.int64)
        self._event_text = [text for _, text in events]

    def _load_block(self, start: int) -> None:
        from ..io.recording import RecordingError, read_recording

        stop = min(start + self._block, self._total)
        try:
            rec = read_recording(self._path, start=start, stop=stop)
        except RecordingError as err:
            raise SourceError(f"cannot replay: {err}") from None
        self._block_start, self._block_emg = start, rec.emg

    def _close(self) -> None:
        self._block_emg = None

    def _read(self, timeout: float) -> tuple[np.ndarray, np.ndarray]:
        if self.finished:
            time.sleep(timeout)
            return self._empty()
        remaining = math.inf if self._loop else self._total - self._delivered
        want = int(min(self._chunk_size, remaining))
        if math.isfinite(self._speed):
            # every sample due now, at least one chunk when it falls due within the timeout
            now = local_clock()
            due = int((now - self._t0) / self._spacing) + 1 - self._delivered
            if due < want:
                deadline = self._t0 + (self._delivered + want - 1) * self._spacing
                if deadline - now > timeout:
                    _wait_until(now + timeout)
                    due = int((local_clock() - self._t0) / self._spacing) + 1 \
                        - self._delivered
                    want = max(0, min(due, want))
                else:
                    _wait_until(deadline)
            else:
                # a consumer that fell behind catches up in pieces of at most a second
                want = int(min(due, remaining, max(self._chunk_size, self._rate)))
        if want == 0:
            return self._empty()
        samples = self._take(want)
        index = self._delivered + np.arange(want)
        timestamps = self._t0 + index * self._spacing
        if self._labels is not None:
            self.last_labels = self._labels[index % self._total]
        self._delivered += want
        if not self._loop and self._delivered >= self._total:
            self.finished = True
            logger.info("replay of %s finished after %d samples", self._path, self._delivered)
        return samples, timestamps

    # -- public extras ---------------------------------------------------------------------
    def labels_for(self, timestamps: np.ndarray) -> np.ndarray:
        """Ground-truth labels (int16, -1 = none) of delivered samples, from their timestamps.

        Works from any thread on timestamps this replay produced (e.g. the stamps of an
        inference window); raises if the recording has no labels.
        """
        if self._labels is None:
            raise SourceError(f"recording {str(self._path)!r} has no labels")
        index = np.rint((np.asarray(timestamps, np.float64) - self._t0) / self._spacing)
        index = index.astype(np.int64)
        if index.size and (index.min() < 0 or (not self._loop and index.max() >= self._total)):
            raise ValueError("timestamps lie outside this replay")
        return self._labels[index % self._total]

    def markers_between(self, start: int, stop: int) -> list[tuple[float, str]]:
        """The file's markers and changes of label (the class name; ``unlabelled`` for -1)
        at replay positions ``[start, stop)`` (samples delivered, counted across loops), as
        ``(lsl_time, text)`` stamped on this replay's schedule, in order."""
        index, out = self._event_index, []
        for base in range(start - start % self._total, stop, self._total):
            lo = np.searchsorted(index, max(start - base, 0))
            hi = np.searchsorted(index, stop - base)
            out += [(self._t0 + (base + index[k]) * self._spacing, self._event_text[k])
                    for k in range(lo, hi)]
        return out

    @property
    def length(self) -> int:
        """Samples in the file (one loop)."""
        return self._total

    @property
    def marker_count(self) -> int:
        """Markers and changes of label in the file (one loop)."""
        return len(self._event_text)

    @property
    def start_time(self) -> float:
        """LSL time at which sample 0 was due (the replay's ``t0``)."""
        return self._t0

    @property
    def position(self) -> int:
        """Samples delivered so far (across loops)."""
        return self._delivered

    def __repr__(self) -> str:
        base = super().__repr__()[:-1]
        return f"{base}, speed {self._speed:g}{', loop' if self._loop else ''}>"

    # -- private -----------------------------------------------------------------------------
    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return np.empty((0, self._info.n_channels), np.float32), np.empty(0)

    def _take(self, n: int) -> np.ndarray:
        out = np.empty((n, self._info.n_channels), np.float32)
        filled = 0
        while filled < n:
            pos = (self._delivered + filled) % self._total
            if not self._block_start <= pos < self._block_start + len(self._block_emg):
                self._load_block(pos)
            offset = pos - self._block_start
            k = min(n - filled, len(self._block_emg) - offset)
            out[filled:filled + k] = self._block_emg[offset:offset + k]
            filled += k
        return out


def _wait_until(deadline: float) -> None:
    """Sleep until just before ``deadline`` (LSL clock), then spin: sleep alone overshoots."""
    remaining = deadline - local_clock()
    if remaining > _SPIN_S:
        time.sleep(remaining - _SPIN_S)
    while local_clock() < deadline:
        pass
