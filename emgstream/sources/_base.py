"""The contract every source implements.

A source delivers chunks ``(samples: float32[n, channels], timestamps: float64[n])``,
time-major, samples in the units of ``info.units`` (microvolts for EMG), timestamps on the
LSL clock (``pylsl.local_clock()`` base) whatever the transport.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import threading
from dataclasses import dataclass, field

import numpy as np

from .._checks import (MAX_CHANNELS, MAX_SAMPLE_RATE, check_at_most, check_positive_float,
                       check_positive_int, check_text)

__all__ = ["StreamInfo", "SourceStats", "DroppedSpan", "FaultEvent", "FAULT_KINDS", "Source",
           "SourceError"]


class SourceError(RuntimeError):
    """A source cannot deliver: device unplugged, stream gone, corrupt beyond repair."""


@dataclass(frozen=True)
class StreamInfo:
    """What a stream is. Nothing downstream assumes 16 channels or 2 kHz: it reads this.

    Attributes
    ----------
    name : str
        Human-readable stream name (the LSL name, the device's name, the file's stem).
    n_channels : int
        Number of EMG channels.
    sample_rate : float
        Nominal sampling rate in Hz.
    channel_names : tuple of str
        One label per channel; defaults to ``("EMG1", ..., "EMGn")``.
    units : str
        Units of the samples, ``"microvolts"`` for EMG.
    device_id : str
        Serial number or LSL source id; empty when unknown.
    kind : str
        The transport: ``"lsl"``, ``"serial"``, ``"replay"`` or ``"sim"``.
    manufacturer : str
        For stream metadata; empty when unknown.
    """

    name: str
    n_channels: int
    sample_rate: float
    channel_names: tuple[str, ...] = ()
    units: str = "microvolts"
    device_id: str = ""
    kind: str = ""
    manufacturer: str = ""

    def __post_init__(self) -> None:
        # bounded as well as typed: descriptions come from devices, the network and files,
        # and buffers are sized from them
        check_at_most(check_positive_int(self.n_channels, "n_channels"), MAX_CHANNELS,
                      "n_channels")
        check_at_most(check_positive_float(self.sample_rate, "sample_rate"), MAX_SAMPLE_RATE,
                      "sample_rate", " Hz")
        for key in ("name", "units", "device_id", "kind", "manufacturer"):
            check_text(getattr(self, key), key)
        if not self.channel_names:
            names = tuple(f"EMG{i + 1}" for i in range(self.n_channels))
            object.__setattr__(self, "channel_names", names)
        else:
            object.__setattr__(self, "channel_names", tuple(str(c) for c in self.channel_names))
        if len(self.channel_names) != self.n_channels:
            raise ValueError(
                f"StreamInfo has n_channels={self.n_channels} but "
                f"{len(self.channel_names)} channel names"
            )
        for name in self.channel_names:
            check_text(name, "channel name")

    @classmethod
    def described_by(cls, who: str, **fields) -> "StreamInfo":
        """The StreamInfo a device, stream or file (``who``, for the message) describes;
        :class:`SourceError` when the description is out of bounds."""
        try:
            return cls(**fields)
        except ValueError as err:
            raise SourceError(f"{who} describes a stream emgstream does not take: {err}") \
                from None


@dataclass(frozen=True)
class DroppedSpan:
    """Samples known to be lost: ``count`` samples starting at LSL time ``time``."""

    time: float
    count: int


_MAX_UNDRAINED_FAULTS = 10_000

#: What a :class:`FaultEvent` can be: each is also a counter of :class:`SourceStats`.
FAULT_KINDS = ("corrupt_frames", "resyncs", "duplicate_frames", "restarts", "stalls",
               "reconnects")


@dataclass(frozen=True)
class FaultEvent:
    """``count`` faults of one kind (see :data:`FAULT_KINDS`) noticed at LSL time ``time``,
    so that a recording can tell corruption from silence."""

    time: float
    kind: str
    count: int


@dataclass
class SourceStats:
    """Counters a source keeps; read them from any thread (copies are cheap)."""

    samples: int = 0  #: samples delivered by ``read``
    chunks: int = 0  #: non-empty chunks delivered
    dropped_samples: int = 0  #: samples known lost (sequence gaps, LSL gaps)
    corrupt_frames: int = 0  #: frames rejected (CRC, bad header, implausible); serial only
    resyncs: int = 0  #: times the decoder skipped garbage to find a sync word
    backlog: int = 0  #: samples waiting in the transport after the last read
    reconnects: int = 0  #: times the source recovered a lost stream
    duplicate_frames: int = 0  #: frames received twice (the copy is dropped); serial only
    restarts: int = 0  #: times the device restarted its sample counter; serial only
    stalls: int = 0  #: times data stopped for longer than the source's stall threshold
    stalled: float = 0.0  #: seconds without data while stalled now, else 0
    drops: list[DroppedSpan] = field(default_factory=list, repr=False)
    #: undrained fault events; a consumer that never drains them (a bridge) keeps only the
    #: newest, the counters above stay exact
    faults: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=_MAX_UNDRAINED_FAULTS), repr=False)


class Source(abc.ABC):
    """Base class of all sources: a context manager delivering time-stamped chunks.

    Subclasses implement :meth:`_open`, :meth:`_close` and :meth:`_read` and set
    ``self._info`` in ``_open`` (or earlier). ``read`` is called from one thread (the
    acquisition thread); ``stats`` and ``drain_drops`` may be called from any thread.
    """

    def __init__(self) -> None:
        self._info: StreamInfo | None = None
        self._stats = SourceStats()
        self._stats_lock = threading.Lock()
        self._is_open = False

    # -- public API ---------------------------------------------------------------------
    @property
    def info(self) -> StreamInfo:
        if self._info is None:
            raise SourceError(f"{type(self).__name__} is not open: call open() or use 'with'")
        return self._info

    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> "Source":
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._close()

    def read(self, timeout: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Return the next chunk, waiting at most ``timeout`` seconds.

        Returns
        -------
        samples : ndarray, float32, shape (n, n_channels)
        timestamps : ndarray, float64, shape (n,)
            ``n`` may be 0 when nothing arrived in time.
        """
        if not self._is_open:
            raise SourceError(f"{type(self).__name__} is not open: call open() or use 'with'")
        samples, timestamps = self._read(timeout)
        n = samples.shape[0]
        if n:
            with self._stats_lock:
                self._stats.samples += n
                self._stats.chunks += 1
        return samples, timestamps

    @property
    def stats(self) -> SourceStats:
        """A copy of the counters (``drops`` and ``faults`` are not copied: use
        :meth:`drain_drops` and :meth:`drain_faults`)."""
        with self._stats_lock:
            return dataclasses.replace(self._stats, drops=[], faults=collections.deque())

    def drain_drops(self) -> list[DroppedSpan]:
        """Return and forget the dropped spans recorded since the last call."""
        with self._stats_lock:
            drops, self._stats.drops = self._stats.drops, []
            return drops

    def drain_faults(self) -> list[FaultEvent]:
        """Return and forget the fault events recorded since the last call."""
        with self._stats_lock:
            faults = list(self._stats.faults)
            self._stats.faults.clear()
            return faults

    def __enter__(self) -> "Source":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._info is None:
            return f"<{type(self).__name__} (closed)>"
        i = self._info
        state = "open" if self._is_open else "closed"
        return (f"<{type(self).__name__} '{i.name}' {i.n_channels} ch @ {i.sample_rate:g} Hz, "
                f"{state}>")

    # -- for subclasses -------------------------------------------------------------------
    def _record_drop(self, time: float, count: int) -> None:
        with self._stats_lock:
            self._stats.dropped_samples += count
            self._stats.drops.append(DroppedSpan(float(time), int(count)))

    def _record_fault(self, time: float, kind: str, count: int = 1) -> None:
        """Count ``count`` faults of ``kind`` (a :data:`FAULT_KINDS` counter) at ``time``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        with self._stats_lock:
            setattr(self._stats, kind, getattr(self._stats, kind) + count)
            self._stats.faults.append(FaultEvent(float(time), kind, int(count)))

    def _update_stats(self, **deltas: int) -> None:
        """Add to counters, e.g. ``self._update_stats(chunks=1)``; ``backlog`` and
        ``stalled`` are set. Faults go through :meth:`_record_fault`, which keeps their
        times too."""
        with self._stats_lock:
            for key, value in deltas.items():
                if key in ("backlog", "stalled"):
                    setattr(self._stats, key, value)
                else:
                    setattr(self._stats, key, getattr(self._stats, key) + value)

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _read(self, timeout: float) -> tuple[np.ndarray, np.ndarray]: ...
