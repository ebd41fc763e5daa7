"""The wristband over a serial port: ``serial:///dev/ttyUSB0?baud=921600``.

Opening the port runs a handshake (STOP, QUERY_INFO, optional SET_RATE, START; each command
retried until answered); the device's DEVICE_INFO gives the channel count, rate, labels and
serial number. A reader thread then decodes frames (``firmware_bridge.codec``) as they arrive.

Processing order per DATA frame (the *Receiver rules* of ``firmware_bridge/PROTOCOL.md``):

1. the decoder has checked both CRCs, the bounds, the channel count and the sample format
   against DEVICE_INFO (rejections are counted in ``stats.corrupt_frames``, skipped garbage
   in ``stats.resyncs``);
2. an exact copy of a recently accepted frame (same sequence number, counter and samples) is
   dropped and counted in ``stats.duplicate_frames``;
3. the frame must continue the stream: its u64 sample counter at or after the next one
   expected, ahead of it by no more than the frames missing from the sequence numbers can
   hold (each at most one frame of samples, plus one frame) and no further than the host
   clock allows (a counter cannot run ahead of time). A frame that does not is held back:
   if the next frame continues the stream, the held one was corrupt (counted in
   ``stats.corrupt_frames``; its samples become dropped samples); if the next continues the
   held one, the device restarted its counter (``stats.restarts``; the clock map is
   anchored again and the samples missed meanwhile are a dropped span estimated from the
   clock). After START the expected counter is 0: a device that does not reset its counter
   is followed from wherever it counts, once two frames agree;
4. a gap in the counter is recorded as dropped samples (``drain_drops``) at the time the lost
   samples would have had;
5. samples are stamped from the counter mapped onto the LSL clock (:class:`_DeviceClock`),
   never from the frame's arrival time, so arrival jitter does not reach the timestamps and a
   lost frame does not shift the samples after it.

Silence is waited out: after ``stall`` seconds without data the source counts a stall
(``stats.stalls``; ``stats.stalled`` says for how long) and sends START again every second
(a device that rebooted waits for it; one that streams only answers ACK). A port that fails
(unplugged) is reopened as soon as it is back and the handshake run again. Only after
``timeout`` seconds without data does the stream end with a :class:`SourceError`; every
sample decoded before it is still delivered first. Each fault is also a
:class:`~emgstream.sources.FaultEvent` (``drain_faults``) with its time.

URI parameters: ``baud`` (921600), ``stall`` (seconds without data before it counts as a
stall, 1), ``timeout`` (seconds without data before giving up, 300), ``rate`` (ask the device
for this rate, Hz), ``name`` (stream name; default the device model).
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
import time
import zlib

import numpy as np

from firmware_bridge import codec
from firmware_bridge.codec import Ack, DataFrame, DeviceInfo, FrameDecoder, FrameType

from .._checks import check_positive_float, check_positive_int
from ._base import Source, SourceError, StreamInfo

__all__ = ["SerialSource"]

logger = logging.getLogger(__name__)

_POLL_S = 0.05  # the reader thread's read timeout: how fast it notices close()
_RETRY_S = 0.25  # a command unanswered this long is sent again
_RESTART_S = 1.0  # while stalled, START is sent again this often
_REOPEN_S = 0.25  # a lost port is tried again this often
#: A counter may run ahead of the clock map by this much: the map sits on the least-delayed
#: frames, so a frame's samples can be older than it says by the transport's minimum delay.
_AHEAD_S = 0.5
_RECENT = 64  # accepted frames remembered to recognise duplicates
_SEQUENCE_MASK = 0xFFFFFFFF

#: The emitted timestamp slope never departs from the estimated device period by more than
#: this fraction: corrections of the counter-to-clock offset are slewed, never stepped.
MAX_SLEW = 1e-3
#: The estimated device rate is kept within this fraction of the nominal rate (crystals are
#: within 100 ppm; more is a bad estimate, not a clock).
MAX_RATE_ERROR = 1e-3
#: Fit points more than this far above the lower envelope are left out of the rate fit:
#: the least-delayed frame of their bucket was late (a burst after the host stopped
#: reading), far beyond the jitter of on-time frames.
ENVELOPE_BAND = 2e-3


class _DeviceClock:
    """Maps the device's sample counter onto the LSL clock.

    Counters are u64 (Python integers, exact); the map works on counters relative to the first
    one it stamped after a reset, so floats only ever hold small differences.

    The target map is ``T(c) = a + b * c``, the lower envelope of arrival time against
    counter over the last ``window_s`` seconds: transport delay is never negative, so the
    least-delayed frames lie on a line and all others above it. Only the least-delayed frame
    of every ``window_s / 64`` seconds is kept as a fit point. The envelope is the line under
    every fit point that is highest at their centre; points more than :data:`ENVELOPE_BAND`
    above it are buckets without one on-time frame (the host stopped reading and the frames
    came in a burst) and are left out; ``b`` is the least-squares slope of the rest (their
    jitter averages out), ``a`` puts the line under the least-delayed frame, the bucket still
    filling included.

    The emitted map ``E(c)`` is continuous and piecewise linear in the counter: after each
    frame it is re-anchored where it stands and its slope is set to ``b`` corrected towards
    ``T`` over ``horizon_s``, the correction limited to :data:`MAX_SLEW`. So the time between
    any two samples is their counter distance times a period within ``MAX_SLEW`` and
    ``MAX_RATE_ERROR`` of nominal, whatever frames were lost between them.
    """

    def __init__(self, rate: float, window_s: float = 30.0, horizon_s: float = 2.0,
                 buckets: int = 64) -> None:
        from scipy.optimize import minimize_scalar  # scipy only once a device streams

        self._maximise = minimize_scalar
        self.rate = rate
        self._bucket = max(1, int(rate * window_s / buckets))
        self._min_span = 2.0 * rate  # samples of history before b is fitted
        self._horizon = horizon_s
        self._c = np.zeros(buckets)
        self._t = np.zeros(buckets)
        self.reset()

    def reset(self, after: float = -math.inf) -> None:
        """Forget everything: the next frame anchors the map again (device restart). Its
        samples are stamped after ``after`` (the last time given before: time never steps
        back)."""
        self._origin: int | None = None
        self._after = after
        self._filled = 0
        self._next = 0
        self._anchor_c = 0.0
        self._anchor_t = 0.0
        self.period = 1.0 / self.rate
        self._slope = self.period
        self._floor = math.inf  # min over completed buckets of t - period * c
        self._bucket_start = 0.0
        self._best: tuple[float, float, float] | None = None  # (residual, counter, arrival)

    @property
    def anchored(self) -> bool:
        return self._origin is not None

    def stamp(self, first: int, n: int, arrival: float) -> np.ndarray:
        """Timestamps of samples ``first .. first + n - 1``; then learn from this frame."""
        if self._origin is None:
            self._origin = first
            self._anchor_c = float(n - 1)
            self._anchor_t = max(arrival, self._after + n / self.rate)
        relative = float(first - self._origin)
        times = self._anchor_t + (relative + np.arange(n) - self._anchor_c) * self._slope
        self._learn(relative + n - 1, arrival)
        return times

    def at(self, counter: int) -> float:
        """The time of sample ``counter`` on the emitted map."""
        return self._at(float(counter - self._origin))

    def _at(self, relative: float) -> float:
        return self._anchor_t + (relative - self._anchor_c) * self._slope

    def _learn(self, last: float, arrival: float) -> None:
        residual = arrival - last / self.rate
        if self._best is not None and last >= self._bucket_start + self._bucket:
            _, c, t = self._best
            self._c[self._next], self._t[self._next] = c, t
            self._next = (self._next + 1) % len(self._c)
            self._filled = min(self._filled + 1, len(self._c))
            self._best = None
            self._fit()
        if self._best is None:
            self._bucket_start = last
        if self._best is None or residual < self._best[0]:
            self._best = (residual, last, arrival)
        period = self.period
        offset = min(self._floor, self._best[2] - period * self._best[1])
        now = self._at(last)
        error = offset + period * last - now  # > 0: emitted map is early
        correction = min(max(error / self._horizon, -MAX_SLEW), MAX_SLEW)
        self._anchor_c, self._anchor_t = last, now
        self._slope = period * (1.0 + correction)

    def _fit(self) -> None:
        """Rate and floor from the completed buckets (see the class docstring)."""
        c, t = self._c[:self._filled], self._t[:self._filled]
        nominal = 1.0 / self.rate
        low, high = nominal * (1 - MAX_RATE_ERROR), nominal * (1 + MAX_RATE_ERROR)
        period = nominal
        if self._filled >= 3 and c.max() - c.min() >= self._min_span:
            x, y = c - c.mean(), t - t.mean()
            # the envelope's height at the centre, for a slope b, is min(y - b x): concave
            # in b, so a bounded scalar search finds its top
            envelope = self._maximise(lambda b: -np.min(y - b * x), bounds=(low, high),
                                      method="bounded", options={"xatol": nominal * 1e-9}).x
            above = y - envelope * x
            near = above - above.min() <= ENVELOPE_BAND
            xs, ys = x[near], y[near]
            period = envelope
            if near.sum() >= 3 and xs.max() - xs.min() >= self._min_span:
                xs = xs - xs.mean()
                period = float(np.dot(xs, ys - ys.mean()) / np.dot(xs, xs))
            period = min(max(period, low), high)
        self.period = period
        self._floor = float(np.min(t - period * c))


class SerialSource(Source):
    """A wristband speaking the emgstream serial protocol; see the module docstring.

    Parameters
    ----------
    port : str
        Serial device, e.g. ``/dev/ttyUSB0`` or a pseudo-terminal.
    baud : int
        Baud rate (ignored by USB CDC devices and pseudo-terminals).
    timeout : float
        Seconds without a DATA frame after which the device counts as gone for good.
    rate : int | None
        Ask the device for this sample rate at open.
    name : str | None
        Stream name; default the device's model.
    open_timeout : float
        Seconds to wait for the device to answer each handshake command.
    stall : float
        Seconds without a DATA frame after which the source reports a stall, sends START
        again and keeps waiting.
    """

    def __init__(self, port: str, baud: int = 921600, timeout: float = 300.0,
                 rate: int | None = None, name: str | None = None,
                 open_timeout: float = 2.0, stall: float = 1.0) -> None:
        super().__init__()
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a device path, got {port!r}")
        self.port = port
        self.baud = check_positive_int(baud, "baud")
        self.timeout = check_positive_float(timeout, "timeout")
        self.stall = check_positive_float(stall, "stall")
        self.rate = None if rate is None else check_positive_int(rate, "rate")
        self.name = name
        self.open_timeout = check_positive_float(open_timeout, "open_timeout")
        self.device: DeviceInfo | None = None  #: the device's DeviceInfo, once open
        self.lost_frames = 0  #: frames missing from the sequence numbers
        self._serial = None
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: SourceError | None = None
        self._clock: _DeviceClock | None = None

    @classmethod
    def from_uri(cls, target: str, params: dict[str, str]) -> "SerialSource":
        known = {"baud", "timeout", "stall", "rate", "name"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"serial:// does not take {sorted(unknown)}; known: {sorted(known)}")
        if not target:
            raise ValueError("serial:// needs a port, e.g. serial:///dev/ttyUSB0")

        def number(key, kind):
            try:
                return kind(params[key])
            except ValueError:
                raise ValueError(f"serial:// parameter {key}={params[key]!r} is not a valid "
                                 f"{kind.__name__}") from None

        kwargs = {key: number(key, kind) for key, kind in
                  (("baud", int), ("timeout", float), ("stall", float), ("rate", int))
                  if key in params}
        if "name" in params:
            kwargs["name"] = params["name"]
        return cls(target, **kwargs)

    @property
    def estimated_rate(self) -> float:
        """The device's sample rate measured on the host clock (drift estimate)."""
        if self._clock is None:
            raise SourceError("SerialSource is not open")
        return 1.0 / self._clock.period

    def __repr__(self) -> str:
        if self._info is None:
            return f"<SerialSource {self.port} (closed)>"
        return f"{super().__repr__()[:-1]}, port {self.port}>"

    # -- handshake ------------------------------------------------------------------------
    def _request(self, frame: bytes, want, decoder, clock) -> tuple[object, list]:
        """Send ``frame`` until a message accepted by ``want`` arrives; return it and the
        ``(arrival, message)`` pairs that came in before and after it."""
        others = []
        deadline = time.monotonic() + self.open_timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            self._serial.write(frame)
            resend = time.monotonic() + _RETRY_S
            answer = None
            while time.monotonic() < resend:
                data = self._serial.read(max(1, self._serial.in_waiting))
                arrival = clock()
                for message in decoder.feed(data):
                    if answer is None and want(message):
                        answer = message
                    else:
                        others.append((arrival, message))
                if answer is not None:
                    return answer, others
        raise SourceError(f"serial device {self.port} did not answer within "
                          f"{self.open_timeout:g} s: is it an emgstream wristband "
                          f"(protocol v{codec.VERSION})?")

    def _open(self) -> None:
        import serial
        from pylsl import local_clock

        try:
            self._serial = serial.Serial(self.port, self.baud, timeout=_POLL_S)
        except (serial.SerialException, OSError) as err:
            raise SourceError(f"cannot open serial port {self.port}: {err}") from None
        self._stop.clear()
        try:
            device = self._query(local_clock)
            self.device = device
            self._info = StreamInfo.described_by(
                f"serial device {self.port}",
                name=self.name or device.model or "wristband", n_channels=device.n_channels,
                sample_rate=float(device.sample_rate), channel_names=device.channel_names,
                units="microvolts", device_id=device.serial_number, kind="serial",
                manufacturer=device.manufacturer)
            logger.info("serial device %s: %s %s (serial %s, firmware %s), %d ch @ %d Hz",
                        self.port, device.manufacturer, device.model, device.serial_number,
                        device.firmware_version, device.n_channels, device.sample_rate)
            self._clock = _DeviceClock(float(device.sample_rate))
            self._error = None
            self._queue = queue.Queue()
            self._recent: collections.deque = collections.deque(maxlen=_RECENT)
            self._held: tuple[DataFrame, float] | None = None  # a frame that did not fit
            self._gap_from: float | None = None  # time of a gap of unknown length
            self._last_stamp = -math.inf
            self._stalled = False
            self._last_data = local_clock()
            self._start(local_clock)
        except BaseException:
            self._close_port()
            raise
        self._thread = threading.Thread(target=self._reader, args=(local_clock,),
                                        name=f"serial {self.port}", daemon=True)
        self._thread.start()

    def _query(self, clock) -> DeviceInfo:
        """STOP, QUERY_INFO and, when another rate is wanted, SET_RATE: the device's info."""
        def checked_ack(kind, frame):
            answer, _ = self._request(
                frame, lambda m: isinstance(m, Ack) and m.command == kind, decoder, clock)
            if answer.status != Ack.OK:
                raise SourceError(f"serial device {self.port} refused {kind.name} "
                                  f"(status {answer.status})")

        decoder = FrameDecoder()
        checked_ack(FrameType.STOP, codec.encode_command(FrameType.STOP))
        query = codec.encode_command(FrameType.QUERY_INFO)
        device, _ = self._request(query, lambda m: isinstance(m, DeviceInfo), decoder, clock)
        if self.rate is not None and device.sample_rate != self.rate:
            checked_ack(FrameType.SET_RATE, codec.encode_command(FrameType.SET_RATE, self.rate))
            device, _ = self._request(query, lambda m: isinstance(m, DeviceInfo), decoder,
                                      clock)
        return device

    def _start(self, clock) -> None:
        """Send START: the stream begins again, its counter expected from 0."""
        device = self.device
        # A fresh decoder for the stream: garbage from before the handshake is not a fault.
        self._decoder = FrameDecoder(expected_channels=device.n_channels,
                                     expected_format=device.sample_format)
        self._seen = (0, 0)  # the decoder's corrupt frames and resyncs already counted
        self._largest = device.samples_per_frame  # samples in a frame, at most
        # (next counter, next sequence number or None, LSL time before which that sample
        # was not taken, give or take _AHEAD_S: the counter cannot run ahead of the clock)
        self._expected: tuple[int, int | None, float] = (0, None, clock())
        self._fresh = True  # nothing accepted since START
        self._last_start = clock()
        _, early = self._request(codec.encode_command(FrameType.START),
                                 lambda m: isinstance(m, Ack) and m.command == FrameType.START,
                                 self._decoder, clock)
        for arrival, message in early:  # DATA sent before a lost or late ACK
            if isinstance(message, DataFrame):
                self._on_data(message, arrival)

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # a port that vanished may fail to close: it is gone anyway
                pass
            self._serial = None

    def _close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 + self.open_timeout)
            self._thread = None
        try:
            self._serial.write(codec.encode_command(FrameType.STOP))
        except Exception:  # the device may be gone already: nothing to stop
            pass
        self._close_port()

    # -- frames ---------------------------------------------------------------------------
    def _on_data(self, frame: DataFrame, arrival: float) -> None:
        """Drop a duplicate, hold a frame that does not continue the stream, accept the rest
        (rules 2 and 3 of the module docstring)."""
        key = (frame.sequence, frame.first_sample, zlib.crc32(frame.counts))
        if key in self._recent:
            self._record_fault(arrival, "duplicate_frames")
            logger.info("serial device %s: frame %d (counter %d) received twice; the copy is "
                        "dropped", self.port, frame.sequence, frame.first_sample)
            return
        held = self._held
        if self._continues(frame, arrival, *self._expected):
            if held is not None:
                self._reject_held("the frame after it continues the stream")
        elif held is not None and self._continues(
                frame, arrival, held[0].first_sample + held[0].n_samples,
                (held[0].sequence + 1) & _SEQUENCE_MASK, held[1]):
            self._held = None
            self._new_run(*held)
        else:
            if held is not None:
                self._reject_held("neither it nor the frame after it continues the stream")
            self._held = (frame, arrival)
            return
        self._accept(frame, arrival, key)

    def _continues(self, frame: DataFrame, arrival: float, counter: int,
                   sequence: int | None, since: float) -> bool:
        """Could ``frame`` come next in a stream whose next sample is ``counter`` (not taken
        before LSL time ``since``) and next frame ``sequence`` (None: unknown)?"""
        gap = frame.first_sample - counter
        ahead = (arrival - since + _AHEAD_S) * self._info.sample_rate * (1 + MAX_RATE_ERROR)
        if not 0 <= gap <= ahead + self._largest:
            return False
        if sequence is None:
            return True
        lost = (frame.sequence - sequence) & _SEQUENCE_MASK
        return lost <= gap <= (lost + 1) * self._largest

    def _reject_held(self, why: str) -> None:
        frame, arrival = self._held
        self._held = None
        self._record_fault(arrival, "corrupt_frames")
        logger.warning("serial device %s: rejected frame %d with counter %d (%s); its samples "
                       "count as dropped", self.port, frame.sequence, frame.first_sample, why)

    def _new_run(self, frame: DataFrame, arrival: float) -> None:
        """Two frames agree on a counter the stream did not expect: follow them."""
        if self._fresh:
            logger.warning("serial device %s did not reset its sample counter at START "
                           "(first counter %d); counting from there", self.port,
                           frame.first_sample)
        else:
            counter, _, since = self._expected
            self._record_fault(arrival, "restarts")
            logger.warning("serial device %s restarted (sample counter %d after %d); "
                           "timestamps re-anchored", self.port, frame.first_sample, counter)
            self._gap_from = since
            self._clock.reset(after=self._last_stamp)
        self._expected = (frame.first_sample, None, arrival)
        self._accept(frame, arrival,
                     (frame.sequence, frame.first_sample, zlib.crc32(frame.counts)))

    def _accept(self, frame: DataFrame, arrival: float, key: tuple) -> None:
        """Stamp and queue a frame that continues the stream; record what it says was lost."""
        counter, sequence, _ = self._expected
        clock, rate = self._clock, self._info.sample_rate
        if sequence is not None:
            self.lost_frames += (frame.sequence - sequence) & _SEQUENCE_MASK
        gap = frame.first_sample - counter
        lost_at = clock.at(counter) if gap and clock.anchored else None
        timestamps = clock.stamp(frame.first_sample, frame.n_samples, arrival)
        if gap:
            if lost_at is None:  # lost before the first frame: extrapolate back
                lost_at = float(timestamps[0]) - gap / rate
            self._record_drop(lost_at, gap)
            logger.info("serial device %s: %d samples lost", self.port, gap)
        if self._gap_from is not None:  # a restart or reconnect: only the clock knows
            missed = int(round(((lost_at if gap else timestamps[0]) - self._gap_from) * rate))
            if missed > 0:
                self._record_drop(self._gap_from, missed)
                logger.warning("serial device %s: about %d samples missed (%.2f s)",
                               self.port, missed, missed / rate)
            self._gap_from = None
        self._expected = (frame.first_sample + frame.n_samples,
                          (frame.sequence + 1) & _SEQUENCE_MASK,
                          float(timestamps[-1]) + 1.0 / rate)
        self._last_stamp = float(timestamps[-1])
        self._fresh = False
        self._largest = max(self._largest, frame.n_samples)
        self._recent.append(key)
        if self._stalled:
            self._stalled = False
            self._update_stats(stalled=0.0)
            logger.warning("serial device %s: data again after %.1f s", self.port,
                           arrival - self._last_data)
        self._last_data = arrival
        self._queue.put((frame.microvolts(), timestamps))

    # -- reader thread --------------------------------------------------------------------
    def _reader(self, clock) -> None:
        import serial

        try:
            while not self._stop.is_set():
                try:
                    self._step(clock)
                except (serial.SerialException, OSError) as err:
                    if self._stop.is_set():
                        return
                    self._reconnect(clock, err)
        except SourceError as err:
            self._queue.put(err)
        except Exception as err:  # a bug must end the stream loudly, not hang it
            logger.exception("serial reader of %s failed", self.port)
            self._queue.put(SourceError(f"serial reader of {self.port} failed: {err!r}"))

    def _step(self, clock) -> None:
        """Read what came, decode it, count faults, watch for silence."""
        data = self._serial.read(max(1, self._serial.in_waiting))
        arrival = clock()
        decoder = self._decoder
        for message in decoder.feed(data):
            if isinstance(message, DataFrame):
                self._on_data(message, arrival)
        corrupt, resyncs = self._seen
        if decoder.corrupt_frames != corrupt:
            self._record_fault(arrival, "corrupt_frames", decoder.corrupt_frames - corrupt)
        if decoder.resyncs != resyncs:
            self._record_fault(arrival, "resyncs", decoder.resyncs - resyncs)
        self._seen = (decoder.corrupt_frames, decoder.resyncs)
        silent = arrival - self._last_data
        if silent > self.timeout:
            raise SourceError(f"serial device {self.port} sent no data for {self.timeout:g} s "
                              f"(stalled or unplugged); samples up to then were delivered")
        if silent > self.stall:
            self._stalled_for(silent)
            if arrival - self._last_start >= _RESTART_S:
                self._serial.write(codec.encode_command(FrameType.START))
                self._last_start = arrival

    def _stalled_for(self, silent: float) -> None:
        if not self._stalled:
            self._stalled = True
            self._record_fault(self._last_data, "stalls")
            logger.warning("serial device %s: no data for %.1f s; waiting for it (up to %g s)",
                           self.port, silent, self.timeout)
        self._update_stats(stalled=silent)

    def _reconnect(self, clock, err: Exception) -> None:
        """Reopen a port that failed and start the stream again, until ``timeout`` seconds
        without data have passed (then a :class:`SourceError`)."""
        import serial

        logger.warning("serial device %s disconnected (%s); reopening it when it is back",
                       self.port, err)
        self._close_port()
        if self._held is not None:
            self._reject_held("the port failed after it")
        if not self._fresh:  # the samples from here to the first after the reconnect
            self._gap_from = self._expected[2]
            self._clock.reset(after=self._last_stamp)
        while not self._stop.wait(_REOPEN_S):
            silent = clock() - self._last_data
            self._stalled_for(silent)
            if silent > self.timeout:
                raise SourceError(f"serial device {self.port} disconnected ({err}) and was not "
                                  f"back within {self.timeout:g} s; samples up to then were "
                                  f"delivered")
            try:
                self._serial = serial.Serial(self.port, self.baud, timeout=_POLL_S)
                device = self._query(clock)
            except (SourceError, serial.SerialException, OSError):
                self._close_port()  # not back yet, or not answering yet
                continue
            was = self.device
            if (device.n_channels, device.sample_rate, device.sample_format) != \
                    (was.n_channels, was.sample_rate, was.sample_format):
                raise SourceError(
                    f"serial device {self.port} came back as {device.n_channels} ch @ "
                    f"{device.sample_rate} Hz ({device.sample_format.name}), not the "
                    f"{was.n_channels} ch @ {was.sample_rate} Hz ({was.sample_format.name}) "
                    f"it was streaming; samples up to then were delivered")
            self.device = device
            try:
                self._start(clock)
            except (SourceError, serial.SerialException, OSError):
                self._close_port()
                continue
            self._record_fault(clock(), "reconnects")
            logger.warning("serial device %s is back (serial %s)", self.port,
                           device.serial_number)
            return

    def _read(self, timeout: float) -> tuple[np.ndarray, np.ndarray]:
        if self._error is not None:
            raise self._error
        chunks = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if isinstance(item, SourceError):
                    self._error = item
                    break
                chunks.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        if not chunks:
            if self._error is not None:
                raise self._error
            return (np.zeros((0, self._info.n_channels), np.float32), np.zeros(0))
        self._update_stats(backlog=self._queue.qsize() * self.device.samples_per_frame)
        if len(chunks) == 1:
            return chunks[0]
        return (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
