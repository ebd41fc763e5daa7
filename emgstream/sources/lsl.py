"""LabStreamingLayer inlet.

``lsl://name=EMG``, ``lsl://type=EMG`` or ``lsl://source_id=band-0042``; several may be
joined with ``&`` inside the target or given as query parameters, with ``timeout`` (seconds
to resolve, default 5), ``dejitter`` (0/1) and ``max_buffered`` (seconds the inlet holds).

Processing order of each ``read``:

1. pull every waiting sample (up to one second's worth) into a preallocated buffer,
   waiting at most ``timeout`` for the first;
2. add the clock offset from ``time_correction`` (refreshed every few seconds), so
   timestamps are on this machine's LSL clock; with ``dejitter`` liblsl first smooths the
   sender's stamps (its ``proc_dejitter`` regression);
3. check the gap to the previous chunk: more than ``0.1 s`` of missing samples is recorded
   as a dropped span (the outlet went away and came back, or the network lost data);
4. report the inlet backlog (``stats.backlog``), with a warning when more than a second of
   data waits, so that a slow consumer is visible rather than silently behind.

Streams with a ``source_id`` are recovered by liblsl when the outlet comes back; a stall of
more than ``stall_timeout`` seconds is logged and counted in ``stats.stalls``
(``stats.stalled`` says how long it lasts), its end too, in ``stats.reconnects``; both are
fault events (``drain_faults``) with their time.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pylsl
from pylsl.util import LostError, TimeoutError as LSLTimeoutError

from .._checks import check_positive_float, shown
from ._base import Source, SourceError, StreamInfo

__all__ = ["LSLSource"]

logger = logging.getLogger(__name__)

_KEYS = ("name", "type", "source_id")
_PARAMS = ("timeout", "dejitter", "max_buffered", *_KEYS)
_NUMERIC_FORMATS = {pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64,
                    pylsl.cf_int32: np.int32, pylsl.cf_int16: np.int16,
                    pylsl.cf_int8: np.int8}
_GAP_TOLERANCE_S = 0.1  # timestamp gaps above this count as lost samples
_OFFSET_REFRESH_S = 5.0
_BACKLOG_WARN_S = 1.0
_BACKLOG_WARN_EVERY_S = 5.0


class LSLSource(Source):
    """Read an LSL stream found by name, type and/or source id.

    Parameters
    ----------
    name, type, source_id : str, optional
        Properties the stream must have (at least one).
    timeout : float
        Seconds to wait for the stream when opening.
    dejitter : bool
        Smooth the sender's timestamps with liblsl's online regression.
    max_buffered : float
        Seconds of data the inlet buffers while the consumer is away.
    stall_timeout : float
        Seconds without samples after which a stall is logged.
    """

    def __init__(self, *, name: str | None = None, type: str | None = None,  # noqa: A002
                 source_id: str | None = None, timeout: float = 5.0, dejitter: bool = False,
                 max_buffered: float = 360.0, stall_timeout: float = 1.0) -> None:
        super().__init__()
        props = {"name": name, "type": type, "source_id": source_id}
        props = {k: str(v) for k, v in props.items() if v is not None}
        if not props:
            raise ValueError("LSLSource needs at least one of name=, type=, source_id=")
        for key, value in props.items():
            if "'" in value or not value:
                raise ValueError(f"LSL {key} must be non-empty without quotes, got {value!r}")
        self._predicate = " and ".join(f"{k}='{v}'" for k, v in props.items())
        self._timeout = check_positive_float(timeout, "timeout")
        self._dejitter = bool(dejitter)
        self._max_buffered = check_positive_float(max_buffered, "max_buffered")
        self._stall_timeout = check_positive_float(stall_timeout, "stall_timeout")
        self._inlet: pylsl.StreamInlet | None = None

    @classmethod
    def from_uri(cls, target: str, params: dict[str, str]) -> "LSLSource":
        props: dict[str, str] = {}
        for part in filter(None, target.split("&")):
            key, sep, value = part.partition("=")
            if not sep or key not in _KEYS:
                raise ValueError(f"lsl:// target {target!r}: expected key=value with key in "
                                 f"{list(_KEYS)}, e.g. lsl://name=EMG")
            props[key] = value
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise ValueError(f"unknown lsl:// parameter(s) {sorted(unknown)}; expected "
                             f"{list(_PARAMS)}")
        props.update({k: v for k, v in params.items() if k in _KEYS})
        try:
            options = dict(timeout=float(params.get("timeout", 5.0)),
                           max_buffered=float(params.get("max_buffered", 360.0)))
        except ValueError:
            raise ValueError(f"lsl:// timeout and max_buffered must be numbers, got "
                             f"{params!r}") from None
        dejitter = params.get("dejitter", "0")
        if dejitter not in ("0", "1"):
            raise ValueError(f"lsl:// dejitter must be 0 or 1, got {dejitter!r}")
        return cls(**props, dejitter=dejitter == "1", **options)

    @property
    def predicate(self) -> str:
        """The LSL query the stream must match, e.g. ``name='EMG'``."""
        return self._predicate

    @property
    def timeout(self) -> float:
        """Seconds to wait for the stream when opening."""
        return self._timeout

    # -- Source ------------------------------------------------------------------------------
    def _open(self) -> None:
        head = _resolve_first(self._predicate, self._timeout)
        rate = head.nominal_srate()
        if not rate > 0:
            raise SourceError(f"LSL stream {head.name()!r} has an irregular rate "
                              f"(nominal_srate={rate}); EMG needs a regular sampling rate")
        fmt = head.channel_format()
        if fmt not in _NUMERIC_FORMATS:
            raise SourceError(f"LSL stream {head.name()!r} has channel format {fmt} "
                              f"(string or int64); expected float32, double64, int32, int16 "
                              f"or int8")
        _stream_info(head)  # channels and rate in bounds before the inlet sizes its buffer
        flags = pylsl.proc_dejitter | pylsl.proc_monotonize if self._dejitter else 0
        inlet = pylsl.StreamInlet(head, max_buflen=max(1, int(round(self._max_buffered))),
                                  recover=True, processing_flags=flags)
        info, self._offset = _open_inlet(inlet, head, self._predicate, self._timeout,
                                        describe=True)  # with labels and units
        self._inlet = inlet
        self._info = info
        n_channels = self._info.n_channels
        self._max_chunk = max(64, int(rate))
        self._buffer = np.empty((self._max_chunk, n_channels), _NUMERIC_FORMATS[fmt])
        self._offset_at = time.monotonic()
        self._last_data = time.monotonic()
        self._last_stamp: float | None = None
        self._stalled = False
        self._backlog_warned_at = -np.inf
        logger.info("opened LSL stream %r (%s): %d ch @ %g Hz, clock offset %.6f s",
                    self._info.name, self._info.device_id, n_channels, rate, self._offset)

    def _close(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def _read(self, timeout: float) -> tuple[np.ndarray, np.ndarray]:
        inlet = self._inlet
        try:
            view, stamps = inlet.pull_chunk(timeout=timeout, max_samples=self._max_chunk,
                                            dest_obj=self._buffer, min_samples=1,
                                            as_numpy=True)
        except LostError:
            raise SourceError(f"LSL stream {self._info.name!r} was lost and cannot be "
                              f"recovered (it has no source_id)") from None
        now = time.monotonic()
        n = len(stamps)
        if n == 0:
            silent = now - self._last_data
            if not self._stalled and silent > self._stall_timeout:
                self._stalled = True
                self._record_fault(pylsl.local_clock() - silent, "stalls")
                logger.warning("LSL stream %r stalled: no samples for %.1f s; waiting for it "
                               "to come back", self._info.name, silent)
            if self._stalled:
                self._update_stats(stalled=silent)
            return np.empty((0, self._info.n_channels), np.float32), np.empty(0)

        if self._stalled:
            self._stalled = False
            self._update_stats(stalled=0.0)
            self._record_fault(pylsl.local_clock(), "reconnects")
            logger.warning("LSL stream %r is back after %.1f s", self._info.name,
                           now - self._last_data)
        self._last_data = now
        if now - self._offset_at > _OFFSET_REFRESH_S:
            self._refresh_offset(now)
        samples = view.astype(np.float32)  # a copy: the buffer is reused
        timestamps = stamps + self._offset
        self._check_gaps(timestamps)
        self._last_stamp = float(timestamps[-1])

        backlog = inlet.samples_available()
        self._update_stats(backlog=backlog)
        rate = self._info.sample_rate
        if backlog > _BACKLOG_WARN_S * rate and now - self._backlog_warned_at > \
                _BACKLOG_WARN_EVERY_S:
            self._backlog_warned_at = now
            logger.warning("LSL inlet of %r is %.1f s behind (%d samples waiting): the "
                           "consumer is too slow", self._info.name, backlog / rate, backlog)
        return samples, timestamps

    def __repr__(self) -> str:
        if self._info is None:
            return f"<LSLSource {self._predicate} (closed)>"
        return super().__repr__()

    # -- private -----------------------------------------------------------------------------
    def _refresh_offset(self, now: float) -> None:
        try:
            self._offset = self._inlet.time_correction(timeout=0.05)
        except LSLTimeoutError:
            pass  # keep the last offset; it changes slowly
        self._offset_at = now

    def _check_gaps(self, timestamps: np.ndarray) -> None:
        """Record spans where the stamps jump by more than the tolerance (within the chunk
        or since the previous one) as dropped samples."""
        rate = self._info.sample_rate
        stamps = timestamps if self._last_stamp is None else \
            np.concatenate(([self._last_stamp], timestamps))
        missing = np.rint(np.diff(stamps) * rate).astype(np.int64) - 1
        for k in np.flatnonzero(missing > _GAP_TOLERANCE_S * rate):
            count = int(missing[k])
            logger.warning("LSL stream %r: %d samples missing (%.3f s gap)", self._info.name,
                           count, count / rate)
            self._record_drop(stamps[k] + 1.0 / rate, count)


def _resolve_first(predicate: str, timeout: float) -> pylsl.StreamInfo:
    """The first LSL stream matching ``predicate`` within ``timeout`` seconds (a warning when
    several match); :class:`SourceError` when none does."""
    found = pylsl.resolve_bypred(predicate, minimum=1, timeout=timeout)
    if not found:
        raise SourceError(f"no LSL stream matching {predicate} found within {timeout:g} s; is "
                          f"the outlet running? ('emgstream devices' lists the visible "
                          f"streams)")
    if len(found) > 1:
        logger.warning("%d LSL streams match %s; using the first (source_id %r)", len(found),
                       predicate, found[0].source_id())
    return found[0]


def _open_inlet(inlet: pylsl.StreamInlet, head: pylsl.StreamInfo, predicate: str,
               timeout: float, describe: bool = False) -> tuple[StreamInfo | None, float]:
    """Open ``inlet`` and measure its clock offset: ``(its full description as a StreamInfo
    when describe, else None; offset)``. The inlet is closed again and :class:`SourceError`
    raised when the stream does not answer or describes itself out of bounds."""
    try:
        info = _stream_info(inlet.info(timeout=timeout)) if describe else None
        inlet.open_stream(timeout=timeout)
        return info, inlet.time_correction(timeout=timeout)
    except LSLTimeoutError:
        inlet.close_stream()
        raise SourceError(f"LSL stream {head.name()!r} ({predicate}) was found but did not "
                          f"answer within {timeout:g} s") from None
    except SourceError:
        inlet.close_stream()
        raise


def _stream_info(full: pylsl.StreamInfo) -> StreamInfo:
    """Our StreamInfo from the full LSL description (channel labels and units if given);
    :class:`SourceError` when the description is out of bounds (it comes from the network)."""
    n = full.channel_count()
    desc = full.desc()
    labels, units = [], []
    channel = desc.child("channels").child("channel")
    while not channel.empty() and len(labels) <= n:  # one too many tells a mismatch
        labels.append(channel.child_value("label"))
        units.append(channel.child_value("unit"))
        channel = channel.next_sibling("channel")
    names: tuple[str, ...] = ()
    if len(labels) == n and all(labels):
        names = tuple(labels)
    elif labels:
        logger.warning("LSL stream %s describes %s channel labels for %d channels; using "
                       "default names", shown(full.name()),
                       len(labels) if len(labels) <= n else "more", n)
    unit = units[0] if units and all(u == units[0] for u in units) and units[0] else \
        "microvolts"
    return StreamInfo.described_by(
        f"LSL stream {shown(full.name())}", name=full.name(), n_channels=n,
        sample_rate=full.nominal_srate(), channel_names=names, units=unit,
        device_id=full.source_id(), kind="lsl",
        # the XDF meta-data convention (our outlets) keeps it under acquisition
        manufacturer=desc.child("acquisition").child_value("manufacturer")
        or desc.child_value("manufacturer"))
