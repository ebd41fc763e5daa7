"""A virtual wristband on a pseudo-terminal, speaking the serial protocol (``PROTOCOL.md``).

>>> with VirtualDevice(n_channels=16, sample_rate=2000) as device:
...     port = device.path              # e.g. /dev/pts/7: open it with pyserial
...     ...                             # or: open_source(f"serial://{port}")

A thread answers host commands (QUERY_INFO, START, STOP, SET_RATE) and, while started, sends
DATA frames on a drift-free schedule: frame ``k`` is due at ``t0 + (k + 1) * n / rate`` (sleep,
then spin the last half millisecond), so the long-run rate is exact whatever one wake-up's
jitter; a late thread sends every frame that is due at once. The signal is the simulated
wristband (``sim://``), quantized to the device's counts like a real ADC.

Faults, for tests: ``drop_frames`` (probability a frame is never sent, as a lost USB packet:
sequence and counter still advance), ``bit_error_rate`` (independent bit flips on the wire),
``garbage_rate`` (probability that 1..64 random bytes precede a frame), :meth:`stall` (send
nothing for a while, frames due meanwhile are lost), :meth:`disconnect` (close the
pseudo-terminal, as an unplugged cable), and :meth:`inject` (raw bytes, e.g. a hand-made frame).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import codec
from .codec import Ack, Command, DeviceInfo, FrameDecoder, FrameType, SampleFormat

__all__ = ["VirtualDevice", "FrameRecord"]

logger = logging.getLogger(__name__)

_SPIN_S = 0.0005  # sleep until this close to a deadline, then spin: sleep overshoots
_IDLE_POLL_S = 0.05  # command poll period while stopped
_MAX_CATCH_UP = 100  # frames a late thread sends back to back before it polls commands again


@dataclass(frozen=True)
class FrameRecord:
    """What happened to one DATA frame (kept when ``keep_history``)."""

    sequence: int
    first_sample: int
    n_samples: int
    fate: str  #: "sent", "dropped" (fault), "stalled", "overflow" (host not reading)
    flipped_bytes: tuple[int, ...] = ()  #: offsets in the frame of bytes with a flipped bit
    garbage: int = 0  #: garbage bytes sent before the frame


class VirtualDevice:
    """A wristband on a pseudo-terminal; see the module docstring.

    Parameters
    ----------
    n_channels : int
        Channels the device announces and sends (1..256).
    sample_rate : int
        Samples per second (the host may change it with SET_RATE while stopped).
    samples_per_frame : int | None
        Samples per DATA frame; default ``rate / 100`` (100 frames per second), bounded by
        the protocol's 4096 values per frame.
    sample_format : SampleFormat
        int24 (default, as the ADS1299) or int16.
    scale : float
        Microvolts per count.
    user, seed : int
        The simulated user and population seed (``sim://?user=..&seed=..``).
    signal : callable | None
        ``signal(first_sample, n) -> float array (n, n_channels)`` in µV, replacing the
        simulator (tests use it to make each sample's counter readable from its value).
    drop_frames, bit_error_rate, garbage_rate : float
        Fault probabilities (per frame, per bit, per frame).
    clock_ppm : float
        Crystal error of the device: its rate is ``sample_rate * (1 + clock_ppm * 1e-6)``
        measured on the host's clock.
    tx_buffer : int
        Bytes the device holds for a host that is not reading (its TX buffer plus the USB
        stack's); a frame that does not fit is lost whole (counted in ``lost_by["overflow"]``).
    keep_history : bool
        Keep every frame's :class:`FrameRecord` and every generated count (tests).
    fault_seed : int
        Seed of the fault generator, so a test's faults are reproducible.
    """

    def __init__(self, n_channels: int = 16, sample_rate: int = 2000,
                 samples_per_frame: int | None = None,
                 sample_format: SampleFormat = SampleFormat.INT24,
                 scale: float = codec.ADS1299_SCALE, user: int = 0, seed: int = 0,
                 signal: Callable[[int, int], np.ndarray] | None = None,
                 drop_frames: float = 0.0, bit_error_rate: float = 0.0,
                 garbage_rate: float = 0.0, clock_ppm: float = 0.0,
                 serial_number: str = "VIRT-0001", tx_buffer: int = 1 << 16,
                 keep_history: bool = False,
                 fault_seed: int = 0) -> None:
        if not isinstance(n_channels, int) or not 1 <= n_channels <= codec.MAX_CHANNELS:
            raise ValueError(f"n_channels must be an integer in 1..{codec.MAX_CHANNELS}, "
                             f"got {n_channels!r}")
        self._check_rate(sample_rate)
        for value, name in ((drop_frames, "drop_frames"), (bit_error_rate, "bit_error_rate"),
                            (garbage_rate, "garbage_rate")):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if samples_per_frame is not None and (
                not isinstance(samples_per_frame, int) or samples_per_frame < 1
                or samples_per_frame * n_channels > codec.MAX_VALUES):
            raise ValueError(f"samples_per_frame must be 1..{codec.MAX_VALUES // n_channels} "
                             f"for {n_channels} channels, got {samples_per_frame!r}")
        self.n_channels = n_channels
        self.sample_rate = int(sample_rate)
        self._fixed_per_frame = samples_per_frame
        self.sample_format = SampleFormat(sample_format)
        self.scale = float(np.float32(scale))
        self.user, self.seed = int(user), int(seed)
        self.serial_number = serial_number
        self.drop_frames = float(drop_frames)
        self.bit_error_rate = float(bit_error_rate)
        self.garbage_rate = float(garbage_rate)
        self.clock_ppm = float(clock_ppm)
        self.keep_history = keep_history
        self.tx_buffer = int(tx_buffer)
        self._signal = signal
        self._rng = np.random.default_rng(fault_seed)

        self.frames_sent = 0
        self.frames_lost = 0  #: dropped by a fault, a stall or a full TX buffer
        #: frames lost by cause: "dropped" (fault), "stalled", "overflow" (host not reading)
        self.lost_by = {"dropped": 0, "stalled": 0, "overflow": 0}
        self.samples_generated = 0
        self.records: list[FrameRecord] = []
        self._history: list[np.ndarray] = []

        self._master = self._slave = -1
        self._path = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._disconnect = threading.Event()
        self._lock = threading.Lock()
        self._injected = bytearray()
        self._stall_until = 0.0
        self._streaming = False
        self._sim = None
        self._sim_rate = 0
        self._sequence = 0  # DATA frames made since start(), wraps at 2^32
        self._frame_index = 0  # DATA frames made since START
        self._t0 = 0.0

    # -- public ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The slave side of the pseudo-terminal (what a host opens); empty before start."""
        return self._path

    @property
    def samples_per_frame(self) -> int:
        if self._fixed_per_frame is not None:
            return self._fixed_per_frame
        return max(1, min(self.sample_rate // 100, codec.MAX_VALUES // self.n_channels))

    @property
    def streaming(self) -> bool:
        return self._streaming

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(
            n_channels=self.n_channels, sample_rate=self.sample_rate,
            sample_format=self.sample_format, scale=self.scale,
            samples_per_frame=self.samples_per_frame, serial_number=self.serial_number,
            firmware_version="virtual-1.0", manufacturer="emgstream",
            model=f"virtual wristband {self.n_channels} ch",
            channel_names=tuple(f"EMG{i + 1}" for i in range(self.n_channels)))

    def start(self) -> str:
        """Open the pseudo-terminal, start the device thread, return the slave path."""
        if self._thread is not None:
            raise RuntimeError(f"{self!r} is already started")
        if self._signal is None:
            self._open_sim()  # before the port exists: opening it takes a while
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no newline translation: a byte pipe
        os.set_blocking(self._master, False)
        self._path = os.ttyname(self._slave)
        self._stop.clear()
        self._disconnect.clear()
        self._thread = threading.Thread(target=self._run, name=f"virtual-device {self._path}",
                                        daemon=True)
        self._thread.start()
        logger.info("virtual device on %s: %d ch @ %d Hz", self._path, self.n_channels,
                    self.sample_rate)
        return self._path

    def stop(self) -> None:
        """Stop the thread and close the pseudo-terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_pty()
        if self._sim is not None:
            self._sim.close()
            self._sim = None

    def stall(self, seconds: float) -> None:
        """Send nothing for ``seconds``; frames due meanwhile are lost (counter advances)."""
        self._stall_until = time.perf_counter() + float(seconds)

    def disconnect(self) -> None:
        """Close the pseudo-terminal from the device side, as an unplugged cable."""
        self._disconnect.set()

    def inject(self, data: bytes) -> None:
        """Send raw bytes before the next frame."""
        with self._lock:
            self._injected += data

    def history(self) -> np.ndarray:
        """int32 ``(samples, n_channels)``: every count generated since START (``keep_history``)."""
        if not self.keep_history:
            raise RuntimeError("history() needs VirtualDevice(keep_history=True)")
        if not self._history:
            return np.zeros((0, self.n_channels), np.int32)
        return np.concatenate(self._history)

    def __enter__(self) -> "VirtualDevice":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = ("streaming" if self._streaming else "idle") if self._path else "not started"
        faults = ", ".join(f"{name}={value:g}" for name, value in (
            ("drop_frames", self.drop_frames), ("bit_error_rate", self.bit_error_rate),
            ("garbage_rate", self.garbage_rate)) if value)
        return (f"<VirtualDevice {self._path or '-'} {self.n_channels} ch @ {self.sample_rate} Hz"
                f", {state}, sent {self.frames_sent} frames{', ' + faults if faults else ''}>")

    # -- the device thread ----------------------------------------------------------------
    @staticmethod
    def _check_rate(rate) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) \
                or not 0 < rate < 2**32:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {rate!r}")

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        self._streaming = False

    def _run(self) -> None:
        decoder = FrameDecoder()
        pending = bytearray()
        next_due = 0.0
        try:
            while not self._stop.is_set():
                if self._disconnect.is_set():
                    logger.info("virtual device %s: disconnected", self._path)
                    self._close_pty()
                    return
                now = time.perf_counter()
                wait = _IDLE_POLL_S
                if self._streaming:
                    wait = min(wait, max(0.0, next_due - now - _SPIN_S))
                writers = [self._master] if pending else []
                readable, _, _ = select.select([self._master], writers, [], wait)
                if readable:
                    for message in decoder.feed(self._read_master()):
                        if isinstance(message, Command):
                            pending += self._handle(message)
                    next_due = self._t0 + (self._frame_index + 1) * self._frame_period()
                if self._streaming and next_due - time.perf_counter() <= _SPIN_S:
                    while time.perf_counter() < next_due:
                        pass
                    for _ in range(_MAX_CATCH_UP):
                        if time.perf_counter() < next_due:
                            break
                        pending += self._next_frame(len(pending))
                        next_due = self._t0 + (self._frame_index + 1) * self._frame_period()
                with self._lock:
                    if self._injected:
                        pending += self._injected
                        self._injected.clear()
                if pending:
                    self._write(pending)
        except OSError as err:
            if not self._stop.is_set():
                logger.warning("virtual device %s stopped: %s", self._path, err)
        except Exception:
            # a device that dies must look dead to the host (closed port), not hang it
            logger.exception("virtual device %s failed; closing its port", self._path)
            self._close_pty()
        finally:
            self._streaming = False

    def _read_master(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as err:
            if err.errno == errno.EIO:  # no host has the port open: nothing to read
                return b""
            raise

    def _write(self, pending: bytearray) -> None:
        try:
            sent = os.write(self._master, pending)
        except BlockingIOError:
            return
        del pending[:sent]

    def _frame_period(self) -> float:
        device_rate = self.sample_rate * (1.0 + self.clock_ppm * 1e-6)
        return self.samples_per_frame / device_rate

    def _handle(self, command: Command) -> bytes:
        kind = command.type
        if kind is FrameType.QUERY_INFO:
            return codec.encode_device_info(self.device_info())
        if kind is FrameType.START:
            if not self._streaming:
                self._start_stream()
            return codec.encode_ack(kind, Ack.OK)
        if kind is FrameType.STOP:
            self._streaming = False
            return codec.encode_ack(kind, Ack.OK)
        if kind is FrameType.SET_RATE:
            if self._streaming or not command.rate:
                return codec.encode_ack(kind, Ack.BAD_ARGUMENT)
            self.sample_rate = int(command.rate)
            return codec.encode_ack(kind, Ack.OK)
        return codec.encode_ack(kind, Ack.UNSUPPORTED)

    def _open_sim(self) -> None:
        """(Re)open the simulator at the current rate; it keeps running across STOP/START,
        as the arm under a real band does."""
        from emgstream.sources import open_source

        if self._sim is not None:
            self._sim.close()
        self._sim = open_source(
            f"sim://?channels={self.n_channels}&rate={self.sample_rate}&user={self.user}"
            f"&seed={self.seed}&chunk={self.samples_per_frame}&realtime=0").open()
        self._sim_rate = self.sample_rate

    def _start_stream(self) -> None:
        if self._signal is None and self._sim_rate != self.sample_rate:
            self._open_sim()  # the rate changed (SET_RATE)
        self._frame_index = 0
        self._t0 = time.perf_counter()
        self._streaming = True

    def _counts(self, first: int, n: int) -> np.ndarray:
        if self._signal is not None:
            microvolts = np.asarray(self._signal(first, n), dtype=np.float64)
        else:
            microvolts, _ = self._sim.read()
        if microvolts.shape != (n, self.n_channels):
            raise ValueError(f"signal gave shape {microvolts.shape}, expected "
                             f"({n}, {self.n_channels})")
        return codec.quantize(microvolts, self.scale, self.sample_format)

    def _next_frame(self, backlog: int) -> bytes:
        """Acquire the next frame's samples and return the bytes that go on the wire."""
        n = self.samples_per_frame
        first = self._frame_index * n
        counts = self._counts(first, n)
        sequence = self._sequence
        self._frame_index += 1
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        self.samples_generated += n
        if self.keep_history:
            self._history.append(counts)
        frame = bytearray(codec.encode_data(counts, sequence, first, self.scale,
                                            self.sample_format))
        rng = self._rng
        fate, flipped, garbage = "sent", (), b""
        if time.perf_counter() < self._stall_until:
            fate = "stalled"
        elif self.drop_frames and rng.random() < self.drop_frames:
            fate = "dropped"
        elif backlog + len(frame) > self.tx_buffer:
            fate = "overflow"
        else:
            if self.bit_error_rate:
                n_flips = rng.binomial(8 * len(frame), self.bit_error_rate)
                bits = rng.choice(8 * len(frame), size=n_flips, replace=False)
                for bit in bits:
                    frame[bit // 8] ^= 1 << (bit % 8)
                flipped = tuple(sorted({int(b) // 8 for b in bits}))
            if self.garbage_rate and rng.random() < self.garbage_rate:
                garbage = rng.integers(0, 256, size=int(rng.integers(1, 65)),
                                       dtype=np.uint8).tobytes()
        if self.keep_history:
            self.records.append(FrameRecord(sequence, first, n, fate, flipped, len(garbage)))
        if fate != "sent":
            self.frames_lost += 1
            self.lost_by[fate] += 1
            return b""
        self.frames_sent += 1
        return garbage + bytes(frame)
