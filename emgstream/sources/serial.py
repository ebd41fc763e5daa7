"""The wristband over a serial port: ``serial:///dev/ttyUSB0?baud=921600``.

Opening the port runs a handshake (STOP, QUERY_INFO, optional SET_RATE, START; each command
retried until answered); the device's DEVICE_INFO gives the channel count, rate, labels and
serial number. A reader thread then decodes frames (``firmware_bridge.codec``) as they arrive.

Processing order per DATA frame:

1. the decoder has checked both CRCs, the bounds and the channel count (rejections are counted
   in ``stats.corrupt_frames``, skipped garbage in ``stats.resyncs``);
2. a gap in the device's sample counter is recorded as dropped samples (``drain_drops``) at the
   time the lost samples would have had; a counter that goes back means the device restarted;
3. samples are stamped from the sample counter mapped onto the LSL clock (:class:`_DeviceClock`),
   never from the frame's arrival time, so arrival jitter does not reach the timestamps and a
   lost frame does not shift the samples after it.

No DATA for ``timeout`` seconds, or a port that fails (unplugged), ends the stream with a
:class:`SourceError`; every sample decoded before it is still delivered first.

URI parameters: ``baud`` (921600), ``timeout`` (seconds without data before giving up, 2),
``rate`` (ask the device for this rate, Hz), ``name`` (stream name; default the device model).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from firmware_bridge import codec
from firmware_bridge.codec import Ack, DataFrame, DeviceInfo, FrameDecoder, FrameType

from .._checks import check_positive_float, check_positive_int
from ._base import Source, SourceError, StreamInfo

__all__ = ["SerialSource"]

logger = logging.getLogger(__name__)

_POLL_S = 0.05  # the reader thread's read timeout: how fast it notices close()
_RETRY_S = 0.25  # a command unanswered this long is sent again

#: The emitted timestamp slope never departs from the estimated device period by more than
#: this fraction: corrections of the counter-to-clock offset are slewed, never stepped.
MAX_SLEW = 1e-3
#: The estimated device rate is kept within this fraction of the nominal rate (crystals are
#: within 100 ppm; more is a bad estimate, not a clock).
MAX_RATE_ERROR = 1e-3


class _DeviceClock:
    """Maps the device's sample counter onto the LSL clock.

    The target map is ``T(c) = a + b * c``: ``b`` (seconds per sample of the device, as the host
    clock sees it) is a least-squares fit of arrival time against counter over the last
    ``window_s`` seconds; ``a`` is the lower envelope, the least-delayed frame, since transport
    delay is never negative. Only the least-delayed frame of every ``window_s / 64`` seconds
    is kept as a fit point, so jitter enters neither estimate much.

    The emitted map ``E(c)`` is continuous and piecewise linear in the counter: after each
    frame it is re-anchored where it stands and its slope is set to ``b`` corrected towards
    ``T`` over ``horizon_s``, the correction limited to :data:`MAX_SLEW`. So the time between
    any two samples is their counter distance times a period within ``MAX_SLEW`` and
    ``MAX_RATE_ERROR`` of nominal, whatever frames were lost between them.
    """

    def __init__(self, rate: float, window_s: float = 30.0, horizon_s: float = 2.0,
                 buckets: int = 64) -> None:
        self.rate = rate
        self._bucket = max(1, int(rate * window_s / buckets))
        self._min_span = 2.0 * rate  # samples of history before b is fitted
        self._horizon = horizon_s
        self._c = np.zeros(buckets)
        self._t = np.zeros(buckets)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next frame anchors the map again (device restart)."""
        self._filled = 0
        self._next = 0
        self._anchor_c: int | None = None
        self._anchor_t = 0.0
        self.period = 1.0 / self.rate
        self._slope = self.period
        self._bucket_start = 0
        self._best: tuple[float, int, float] | None = None  # (residual, counter, arrival)

    @property
    def anchored(self) -> bool:
        return self._anchor_c is not None

    def stamp(self, first: int, n: int, arrival: float) -> np.ndarray:
        """Timestamps of samples ``first .. first + n - 1``; then learn from this frame."""
        last = first + n - 1
        if self._anchor_c is None:
            self._anchor_c, self._anchor_t = last, arrival
        times = self.at(first + np.arange(n))
        self._learn(last, arrival)
        return times

    def at(self, counter) -> np.ndarray | float:
        return self._anchor_t + (counter - self._anchor_c) * self._slope

    def _learn(self, last: int, arrival: float) -> None:
        residual = arrival - last / self.rate
        if self._best is not None and last >= self._bucket_start + self._bucket:
            _, c, t = self._best
            self._c[self._next], self._t[self._next] = c, t
            self._next = (self._next + 1) % len(self._c)
            self._filled = min(self._filled + 1, len(self._c))
            self._best = None
        if self._best is None:
            self._bucket_start = last
        if self._best is None or residual < self._best[0]:
            self._best = (residual, last, arrival)
        # slope from completed buckets only (each the least-delayed frame of its bucket);
        # the bucket still filling joins the lower envelope below
        c, t = self._c[:self._filled], self._t[:self._filled]
        nominal = 1.0 / self.rate
        period = nominal
        if self._filled >= 3 and c.max() - c.min() >= self._min_span:
            dc = c - c.mean()
            period = float(np.dot(dc, t - t.mean()) / np.dot(dc, dc))
            period = min(max(period, nominal * (1 - MAX_RATE_ERROR)),
                         nominal * (1 + MAX_RATE_ERROR))
        c = np.append(c, self._best[1])
        t = np.append(t, self._best[2])
        self.period = period
        offset = float(np.min(t - period * c))
        now = float(self.at(last))
        error = offset + period * last - now  # > 0: emitted map is early
        correction = min(max(error / self._horizon, -MAX_SLEW), MAX_SLEW)
        self._anchor_c, self._anchor_t = last, now
        self._slope = period * (1.0 + correction)


class SerialSource(Source):
    """A wristband speaking the emgstream serial protocol; see the module docstring.

    Parameters
    ----------
    port : str
        Serial device, e.g. ``/dev/ttyUSB0`` or a pseudo-terminal.
    baud : int
        Baud rate (ignored by USB CDC devices and pseudo-terminals).
    timeout : float
        Seconds without a DATA frame after which the device counts as gone.
    rate : int | None
        Ask the device for this sample rate at open.
    name : str | None
        Stream name; default the device's model.
    open_timeout : float
        Seconds to wait for the device to answer each handshake command.
    """

    def __init__(self, port: str, baud: int = 921600, timeout: float = 2.0,
                 rate: int | None = None, name: str | None = None,
                 open_timeout: float = 2.0) -> None:
        super().__init__()
        if not isinstance(port, str) or not port:
            raise ValueError(f"port must be a device path, got {port!r}")
        self.port = port
        self.baud = check_positive_int(baud, "baud")
        self.timeout = check_positive_float(timeout, "timeout")
        self.rate = None if rate is None else check_positive_int(rate, "rate")
        self.name = name
        self.open_timeout = check_positive_float(open_timeout, "open_timeout")
        self.device = None  #: the device's DeviceInfo, once open
        self.lost_frames = 0  #: frames missing from the sequence numbers
        self._serial = None
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: SourceError | None = None
        self._clock: _DeviceClock | None = None

    @classmethod
    def from_uri(cls, target: str, params: dict[str, str]) -> "SerialSource":
        known = {"baud", "timeout", "rate", "name"}
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
                  (("baud", int), ("timeout", float), ("rate", int)) if key in params}
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
        while time.monotonic() < deadline:
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
        try:
            self._handshake(local_clock)
        except BaseException:
            self._serial.close()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._reader, args=(local_clock,),
                                        name=f"serial {self.port}", daemon=True)
        self._thread.start()

    def _handshake(self, clock) -> None:
        def ack(kind):
            return lambda m: isinstance(m, Ack) and m.command == kind

        def checked_ack(kind, frame):
            answer, _ = self._request(frame, ack(kind), decoder, clock)
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
        # A fresh decoder for the stream: garbage from before the handshake is not a fault.
        self._decoder = FrameDecoder(expected_channels=device.n_channels)
        self._clock = _DeviceClock(float(device.sample_rate))
        self._next_counter: int | None = 0  # START resets the device's counter
        self._next_sequence: int | None = None
        self._error = None
        self._queue = queue.Queue()
        self._last_data = clock()
        _, early = self._request(codec.encode_command(FrameType.START), ack(FrameType.START),
                                 self._decoder, clock)
        for arrival, message in early:  # DATA sent before a lost or late ACK
            if isinstance(message, DataFrame):
                self._accept(message, arrival)

    def _close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        try:
            self._serial.write(codec.encode_command(FrameType.STOP))
        except Exception:  # the device may be gone already: nothing to stop
            pass
        self._serial.close()

    # -- reader thread --------------------------------------------------------------------
    def _accept(self, frame, arrival: float) -> None:
        """Check counters, stamp and queue one DATA frame."""
        clock = self._clock
        if self._next_counter is not None and frame.first_sample < self._next_counter:
            logger.warning("serial device %s restarted (sample counter %d after %d); "
                           "timestamps re-anchored", self.port, frame.first_sample,
                           self._next_counter)
            clock.reset()
            self._next_counter = self._next_sequence = None
        if self._next_sequence is not None:
            self.lost_frames += (frame.sequence - self._next_sequence) & 0xFFFFFFFF
        gap = 0 if self._next_counter is None else frame.first_sample - self._next_counter
        lost_at = float(clock.at(self._next_counter)) if gap and clock.anchored else None
        timestamps = clock.stamp(frame.first_sample, frame.n_samples, arrival)
        if gap:
            if lost_at is None:  # lost before the first frame: extrapolate back
                lost_at = float(timestamps[0]) - gap / clock.rate
            self._record_drop(lost_at, gap)
            logger.info("serial device %s: %d samples lost", self.port, gap)
        self._next_counter = frame.first_sample + frame.n_samples
        self._next_sequence = (frame.sequence + 1) & 0xFFFFFFFF
        self._queue.put((frame.microvolts(), timestamps))

    def _reader(self, clock) -> None:
        import serial

        decoder = self._decoder
        corrupt = resyncs = 0
        try:
            while not self._stop.is_set():
                data = self._serial.read(max(1, self._serial.in_waiting))
                arrival = clock()
                for message in decoder.feed(data):
                    if isinstance(message, DataFrame):
                        self._accept(message, arrival)
                        self._last_data = arrival
                if decoder.corrupt_frames != corrupt or decoder.resyncs != resyncs:
                    self._update_stats(corrupt_frames=decoder.corrupt_frames - corrupt,
                                       resyncs=decoder.resyncs - resyncs)
                    corrupt, resyncs = decoder.corrupt_frames, decoder.resyncs
                if arrival - self._last_data > self.timeout:
                    raise SourceError(
                        f"serial device {self.port} sent no data for {self.timeout:g} s "
                        f"(stalled or unplugged); samples up to then were delivered")
        except SourceError as err:
            self._queue.put(err)
        except (serial.SerialException, OSError) as err:
            if not self._stop.is_set():
                self._queue.put(SourceError(
                    f"serial device {self.port} disconnected ({err}); samples up to then "
                    f"were delivered"))
        except Exception as err:  # a bug must end the stream loudly, not hang it
            logger.exception("serial reader of %s failed", self.port)
            self._queue.put(SourceError(f"serial reader of {self.port} failed: {err!r}"))

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
