"""A wristband written from ``firmware_bridge/PROTOCOL.md`` alone, for the fault tests.

It shares no code with ``firmware_bridge`` (frames are built with ``struct``, ``zlib`` and
``binascii`` as the spec describes them), so a misreading of the spec in the codec is not
repeated here, and it can do what the virtual device never does: counters near 2^64, a
counter that is not reset by START, duplicated and torn frames, bursts after a stall,
a pause, an unplug and replug of the port, frames in a format DEVICE_INFO did not announce.

The port is a pseudo-terminal reached through a symbolic link (``link``), as a real band is
through ``/dev/serial/by-id/...``: :meth:`unplug` closes the terminal and removes the link,
:meth:`replug` makes a new terminal behind the same link, and the band comes back rebooted
(idle until START, counter and sequence from 0).

Every sample says which it is: channel 0 holds its counter modulo 2^22, channel 1 the number
of the band's run (it counts reboots: the counter starts again after each) and the other
channels a pattern of both, so a recorded row maps back to the frame it came in
(:meth:`truth`). Frames are due on a drift-free schedule on the LSL clock: frame ``k`` after
START at ``t0 + (k + 1) * n / rate``; that due time is the true time of its last sample.
"""

from __future__ import annotations

import binascii
import os
import select
import struct
import threading
import tty
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pylsl import local_clock

SCALE = 0.25  # µV per count: values stay exact through float32
LOW_BITS = 22  # channel 0 carries the counter modulo 2**LOW_BITS
_SYNC = b"\xEB\x90"
_DATA, _INFO, _ACK, _START, _STOP, _SET_RATE, _QUERY = 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13
_INT24, _INT16 = 1, 2


def frame(frame_type: int, body: bytes) -> bytes:
    """Envelope of PROTOCOL.md: sync, version 1, type, length, CRC-16, body, CRC-32."""
    head = struct.pack("<2sBBH", _SYNC, 1, frame_type, len(body))
    head += struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))
    return head + body + struct.pack("<I", zlib.crc32(head + body))


def counts_for(counters: np.ndarray, run: int, channels: int) -> np.ndarray:
    """int64 counts (n, channels >= 3) of the samples with these counters (any u64) made in
    the band's run ``run``."""
    low = (np.asarray(counters, dtype=np.uint64) % np.uint64(1 << LOW_BITS)).astype(np.int64)
    out = np.empty((len(low), channels), np.int64)
    out[:, 0] = low
    out[:, 1] = run
    out[:, 2:] = ((low[:, None] + run) * (np.arange(2, channels) + 1)) % (1 << 23) - (1 << 22)
    return out


def data_body(sequence: int, first: int, counts: np.ndarray, fmt: int = _INT24) -> bytes:
    n, channels = counts.shape
    width = 3 if fmt == _INT24 else 2
    raw = counts.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :width].tobytes()
    return struct.pack("<IQHHBBf", sequence & 0xFFFFFFFF, first, n, channels, fmt, 0,
                       SCALE) + raw


@dataclass
class Sent:
    """One DATA frame as the band meant it (``counter`` and ``due`` are the truth)."""

    sequence: int
    counter: int
    n: int
    due: float  #: LSL time of its last sample
    run: int  #: reboots of the band before it
    fate: str = "sent"  #: sent, duplicated, torn, wrong-format, paused, unplugged


@dataclass
class Faults:
    """What the band does wrong; frame indices count DATA frames since the band began."""

    counter_base: int = 0  #: counter of the first sample after START (the spec says 0)
    duplicate: set = field(default_factory=set)  #: these frames are sent twice in a row
    torn: dict = field(default_factory=dict)  #: frame -> added to its counter field
    wrong_format: set = field(default_factory=set)  #: sent as int16 (DEVICE_INFO: int24)
    burst: tuple | None = None  #: (at, seconds): frames due then are held, then sent at once
    pause: tuple | None = None  #: (at, seconds): frames due then are not sent
    #: (at, seconds): the band reboots, is silent, then streams again by itself with counter
    #: and sequence from 0 (firmware that starts streaming at power-up)
    restart: tuple | None = None


class SpecBand:
    """The band; use as a context manager. Times in :class:`Faults` are seconds since the
    first START."""

    def __init__(self, link: Path, channels: int = 4, rate: int = 1000, per_frame: int = 10,
                 faults: Faults | None = None) -> None:
        self.link = Path(link)
        self.channels, self.rate, self.per_frame = channels, rate, per_frame
        self.faults = faults or Faults()
        self.frames: list[Sent] = []  #: every DATA frame made, in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._first_start: float | None = None
        self._hushed = False
        self._run_id = -1
        self._reboot()

    # -- public ---------------------------------------------------------------------------
    def __enter__(self) -> "SpecBand":
        self._open_port()
        self._thread = threading.Thread(target=self._run, name="spec-band", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_port()

    def hush(self) -> None:
        """Make no more frames (as STOP would): the host can then drain what was sent."""
        with self._lock:
            self._hushed = True

    def unplug(self) -> None:
        with self._lock:
            self._close_port()

    def replug(self) -> None:
        with self._lock:
            self._reboot()
            self._open_port()

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    def truth(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counter, true LSL time, row is exactly a sample the band made) of recorded rows.

        Counters are told apart by their low 22 bits, so a test must stay below 2^22
        samples per band (70 minutes at 1 kHz)."""
        keys = np.rint(rows[:, :2] / np.float32(SCALE)).astype(np.int64).tolist()
        index = {}
        for f in self.frames:
            for j in range(f.n):
                index[((f.counter + j) % (1 << LOW_BITS), f.run)] = (
                    f.counter + j, f.due - (f.n - 1 - j) / self.rate)
        found = [index.get(tuple(k), (0, np.nan)) for k in keys]
        counters = np.array([c for c, _ in found], dtype=np.uint64)
        runs = np.array([k[1] for k in keys])
        expected = np.concatenate(
            [counts_for(counters[i:i + 1], runs[i], self.channels) for i in range(len(rows))]
        ) if len(rows) else np.zeros((0, self.channels))
        exact = np.all(rows == expected.astype(np.float32) * np.float32(SCALE), axis=1)
        exact &= np.array([tuple(k) in index for k in keys], dtype=bool)
        return counters, np.array([t for _, t in found]), exact

    def sent_samples(self, kind: str = "sent") -> int:
        return sum(f.n for f in self.frames if f.fate == kind)

    # -- the band's thread ----------------------------------------------------------------
    def _reboot(self) -> None:
        self._run_id += 1
        self._streaming = False
        self._sequence = 0
        self._counter = 0
        self._held: list[bytes] = []

    def _open_port(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._inbox = bytearray()
        if self.link.is_symlink():
            self.link.unlink()
        self.link.symlink_to(os.ttyname(self._slave))

    def _close_port(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        if self.link.is_symlink():
            self.link.unlink()

    def _run(self) -> None:
        out = bytearray()
        while not self._stop.is_set():
            with self._lock:
                if self._master < 0:
                    out.clear()
                else:
                    out += self._serve_commands()
                    if self._streaming:
                        out += self._due_frames()
                    if out:
                        try:
                            del out[:os.write(self._master, out)]
                        except BlockingIOError:
                            pass
                master = self._master
            if master < 0:
                self._stop.wait(0.01)
                continue
            wait = 0.01
            if self._streaming:  # wake for the next frame due (the schedule never drifts)
                due = self._t0 + (self._since_start + 1) * self.per_frame / self.rate
                wait = min(wait, max(0.0, due - local_clock()))
            select.select([master], [], [], wait)

    def _serve_commands(self) -> bytes:
        try:
            self._inbox += os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            pass
        replies = b""
        while True:
            start = self._inbox.find(_SYNC)
            if start < 0 or len(self._inbox) - start < 8:
                return replies
            del self._inbox[:start]
            _, version, kind, length, crc = struct.unpack_from("<2sBBHH", self._inbox)
            if version != 1 or binascii.crc_hqx(bytes(self._inbox[:6]), 0xFFFF) != crc:
                del self._inbox[:1]
                continue
            if len(self._inbox) < 12 + length:
                return replies
            whole = bytes(self._inbox[:12 + length])
            del self._inbox[:12 + length]
            if zlib.crc32(whole[:-4]) == struct.unpack("<I", whole[-4:])[0]:
                replies += self._answer(kind, whole[8:8 + length])

    def _answer(self, kind: int, body: bytes) -> bytes:
        if kind == _QUERY:
            info = struct.pack("<HIBBfH", self.channels, self.rate, _INT24, 0, SCALE,
                               self.per_frame)
            for text in ("SPEC-1", "spec-1.0", "tests", "spec band",
                         *(f"ch{i}" for i in range(self.channels))):
                info += bytes([len(text)]) + text.encode()
            return frame(_INFO, info)
        if kind == _START and not self._streaming:
            self._streaming = True
            self._t0 = local_clock()
            if self._first_start is None:
                self._first_start = self._t0
            self._since_start = 0
            self._counter = self.faults.counter_base
        elif kind == _STOP:
            self._streaming = False
        elif kind == _SET_RATE:
            return frame(_ACK, struct.pack("<BB", kind, 2))  # unsupported: fixed rate
        return frame(_ACK, struct.pack("<BB", kind, 0))

    def _due_frames(self) -> bytes:
        out = b""
        if self._hushed:
            return out
        now = local_clock()
        period = self.per_frame / self.rate
        while self._t0 + (self._since_start + 1) * period <= now:
            due = self._t0 + (self._since_start + 1) * period
            out += self._make(due, due - self._first_start)
            self._since_start += 1
        return out

    def _make(self, due: float, at: float) -> bytes:
        k = len(self.frames)
        n, f = self.per_frame, self.faults
        if f.restart and f.restart[0] + f.restart[1] <= at:
            f.restart = None  # rebooted: this frame is the first of the new run
            self._run_id += 1
            self._sequence = self._counter = 0
        sent = Sent(self._sequence, self._counter, n, due, self._run_id)
        self.frames.append(sent)
        counts = counts_for(self._counter + np.arange(n, dtype=np.uint64), self._run_id,
                            self.channels)
        counter_field = self._counter
        fmt = _INT24
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        self._counter += n
        if f.pause and f.pause[0] <= at < f.pause[0] + f.pause[1] or \
                f.restart and f.restart[0] <= at:
            sent.fate = "paused"
            return b""
        if k in f.torn:
            counter_field = (counter_field + f.torn[k]) % (1 << 64)
            sent.fate = "torn"
        if k in f.wrong_format:
            counts = counts % (1 << 15)
            fmt, sent.fate = _INT16, "wrong-format"
        wire = frame(_DATA, data_body(sent.sequence, counter_field, counts, fmt))
        if k in f.duplicate:
            wire += wire
            sent.fate = "duplicated"
        if f.burst and f.burst[0] <= at < f.burst[0] + f.burst[1]:
            self._held.append(wire)
            return b""
        wire, self._held = b"".join(self._held) + wire, []
        return wire


def record_band(band: SpecBand, path: Path, seconds: float, query: str = "", actions=()):
    """Record the band through ``serial://`` into ``path`` for ``seconds``; ``actions`` are
    ``(at, fn)`` run meanwhile. Returns the final :class:`RecordStatus`, every status and
    the source's stats; a source error propagates after the file is closed."""
    from emgstream.io import RecordingWriter, record_source
    from emgstream.sources import open_source

    statuses = []
    stop = threading.Event()
    timers = [threading.Timer(at, fn) for at, fn in actions]
    timers.append(threading.Timer(seconds, stop.set))
    with open_source(f"serial://{band.link}{query}") as src, \
            RecordingWriter(path, src.info) as writer:
        for timer in timers:
            timer.start()
        try:
            final = record_source(src, writer, stop=stop, on_status=statuses.append,
                                  status_interval=0.1)
        finally:
            for timer in timers:
                timer.cancel()
        return final, statuses, src.stats


def worst_clock_error(clock, first_counter: int = 0) -> float:
    """Feed a clock map (``stamp(first, n, arrival)``) 90 s of simulated 2 kHz frames of 20
    samples: 0.1 ms transport delay plus exponential jitter (mean 0.3 ms), a crystal 40 ppm
    fast, and at 10 s a host that stops reading for 1.5 s, then takes the frames in a burst.
    Returns the worst error of a frame's last stamp once the map has settled (after 5 s)."""
    rate, n = 2000, 20
    rng = np.random.default_rng(3)
    period = n / rate / (1 + 40e-6)
    worst = 0.0
    for k in range(int(90 / period)):
        due = 1000.0 + (k + 1) * period  # the frame's last sample, true time
        arrival = due + 1e-4 + rng.exponential(3e-4)
        if 10.0 <= due - 1000.0 < 11.5:  # not read: it comes with the burst at 11.5 s
            arrival = 1011.5 + 1e-4 + (k - int(10.0 / period)) * 2e-6
        stamps = clock.stamp(first_counter + k * n, n, arrival)
        if k * period > 5.0:
            worst = max(worst, abs(stamps[-1] - due - 1e-4))
    return worst
