"""Encoder and streaming decoder of the wristband serial protocol (``PROTOCOL.md``, v1).

Frames are ``sync | version | type | length | header CRC-16 | body | frame CRC-32``, all
little-endian. :class:`FrameDecoder` takes bytes in any pieces and returns whole, checked
frames; it resynchronises after garbage, counts what it rejected, and never allocates or waits
for a length that the header CRC has not vouched for.
"""

from __future__ import annotations

import binascii
import enum
import logging
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SYNC", "VERSION", "MAX_VALUES", "MAX_CHANNELS", "MAX_BODY", "FrameType", "SampleFormat",
    "DataFrame", "DeviceInfo", "Command", "Ack", "CodecError", "FrameDecoder",
    "quantize", "encode_data", "encode_device_info", "encode_command", "encode_ack",
    "ADS1299_SCALE",
]

logger = logging.getLogger(__name__)

SYNC = b"\xEB\x90"
VERSION = 1
HEADER_SIZE = 8
CRC_SIZE = 4
DATA_HEADER_SIZE = 22
MAX_VALUES = 4096
MAX_CHANNELS = 256
MAX_BODY = DATA_HEADER_SIZE + 3 * MAX_VALUES
MAX_DEVICE_STRING = 64
MAX_LABEL = 32
#: µV per count of an ADS1299 at gain 24 with a 4.5 V reference, as float32 carries it.
ADS1299_SCALE = float(np.float32(4.5e6 / 24 / 2**23))

_ENVELOPE = struct.Struct("<2sBBH")  # sync, version, type, length (header CRC follows)
_DATA = struct.Struct("<IQHHBBf")  # sequence, first sample, n, channels, format, reserved, scale
_INFO = struct.Struct("<HIBBfH")  # channels, rate, format, reserved, scale, samples/frame
_ACK = struct.Struct("<BB")
_RATE = struct.Struct("<I")


class CodecError(ValueError):
    """Bytes that are not a valid frame of this protocol, or values that cannot be encoded."""


class FrameType(enum.IntEnum):
    DATA = 0x01
    DEVICE_INFO = 0x02
    ACK = 0x03
    START = 0x10
    STOP = 0x11
    SET_RATE = 0x12
    QUERY_INFO = 0x13


COMMAND_TYPES = frozenset({FrameType.START, FrameType.STOP, FrameType.SET_RATE,
                           FrameType.QUERY_INFO})


class SampleFormat(enum.IntEnum):
    INT24 = 1
    INT16 = 2

    @property
    def width(self) -> int:
        return 3 if self is SampleFormat.INT24 else 2

    @property
    def limits(self) -> tuple[int, int]:
        bits = 8 * self.width
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@dataclass(frozen=True)
class DataFrame:
    """One DATA frame: ``counts`` int32 ``(n_samples, n_channels)``, time-major."""

    sequence: int
    first_sample: int
    counts: np.ndarray = field(repr=False)
    sample_format: SampleFormat
    scale: float  #: µV per count (a float32 value)

    @property
    def n_samples(self) -> int:
        return self.counts.shape[0]

    @property
    def n_channels(self) -> int:
        return self.counts.shape[1]

    def microvolts(self) -> np.ndarray:
        """float32 ``(n_samples, n_channels)``: counts times scale."""
        return self.counts.astype(np.float32) * np.float32(self.scale)


@dataclass(frozen=True)
class DeviceInfo:
    """What the device says it is (answer to QUERY_INFO)."""

    n_channels: int
    sample_rate: int
    sample_format: SampleFormat = SampleFormat.INT24
    scale: float = ADS1299_SCALE
    samples_per_frame: int = 20
    serial_number: str = ""
    firmware_version: str = ""
    manufacturer: str = ""
    model: str = ""
    channel_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    """A host-to-device command; ``rate`` only for SET_RATE."""

    type: FrameType
    rate: int | None = None


@dataclass(frozen=True)
class Ack:
    command: FrameType | int
    status: int  #: 0 ok, 1 bad argument, 2 unsupported

    OK = 0
    BAD_ARGUMENT = 1
    UNSUPPORTED = 2


# -- encoding ------------------------------------------------------------------------------
def _frame(frame_type: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise CodecError(f"frame body of {len(body)} bytes exceeds the maximum {MAX_BODY}")
    head = _ENVELOPE.pack(SYNC, VERSION, int(frame_type), len(body))
    head += struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))
    frame = head + body
    return frame + struct.pack("<I", zlib.crc32(frame))


def _as_float32(value: float) -> float:
    return float(np.float32(value))


def quantize(microvolts: np.ndarray, scale: float,
             sample_format: SampleFormat = SampleFormat.INT24) -> np.ndarray:
    """Microvolts to int32 counts of ``sample_format``: round to nearest, saturate."""
    lo, hi = SampleFormat(sample_format).limits
    counts = np.rint(np.asarray(microvolts, dtype=np.float64) / _as_float32(scale))
    return np.clip(counts, lo, hi).astype(np.int32)


def encode_data(counts: np.ndarray, sequence: int, first_sample: int, scale: float,
                sample_format: SampleFormat = SampleFormat.INT24) -> bytes:
    """Encode int counts ``(n_samples, n_channels)`` as a DATA frame (counts saturate)."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or not np.issubdtype(counts.dtype, np.integer):
        raise CodecError(f"counts must be an integer array (n_samples, n_channels), got "
                         f"{counts.dtype} {counts.shape}")
    n, channels = counts.shape
    if not 1 <= channels <= MAX_CHANNELS or n < 1 or n * channels > MAX_VALUES:
        raise CodecError(f"a DATA frame holds 1..{MAX_CHANNELS} channels and at most "
                         f"{MAX_VALUES} values, got {n} samples x {channels} channels")
    fmt = SampleFormat(sample_format)
    lo, hi = fmt.limits
    values = np.clip(counts, lo, hi).astype("<i4")
    payload = values.view(np.uint8).reshape(-1, 4)[:, :fmt.width].tobytes()
    head = _DATA.pack(sequence & 0xFFFFFFFF, first_sample, n, channels, fmt, 0, scale)
    return _frame(FrameType.DATA, head + payload)


def _pack_string(text: str, limit: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > limit:
        raise CodecError(f"{what} {text!r} is {len(raw)} bytes in UTF-8; at most {limit}")
    return bytes([len(raw)]) + raw


def encode_device_info(info: DeviceInfo) -> bytes:
    names = info.channel_names or tuple(f"EMG{i + 1}" for i in range(info.n_channels))
    if len(names) != info.n_channels:
        raise CodecError(f"device info has {info.n_channels} channels but {len(names)} labels")
    if not 1 <= info.n_channels <= MAX_CHANNELS:
        raise CodecError(f"channels must be 1..{MAX_CHANNELS}, got {info.n_channels}")
    body = _INFO.pack(info.n_channels, info.sample_rate, SampleFormat(info.sample_format), 0,
                      info.scale, info.samples_per_frame)
    for text, what in ((info.serial_number, "serial number"),
                       (info.firmware_version, "firmware version"),
                       (info.manufacturer, "manufacturer"), (info.model, "model")):
        body += _pack_string(text, MAX_DEVICE_STRING, what)
    for name in names:
        body += _pack_string(name, MAX_LABEL, "channel label")
    return _frame(FrameType.DEVICE_INFO, body)


def encode_command(frame_type: FrameType, rate: int | None = None) -> bytes:
    frame_type = FrameType(frame_type)
    if frame_type not in COMMAND_TYPES:
        raise CodecError(f"{frame_type.name} is not a host command")
    if frame_type is FrameType.SET_RATE:
        if rate is None or not 0 < rate < 2**32:
            raise CodecError(f"SET_RATE needs a rate in Hz (1..2^32-1), got {rate!r}")
        return _frame(frame_type, _RATE.pack(rate))
    return _frame(frame_type, b"")


def encode_ack(command: int, status: int = Ack.OK) -> bytes:
    return _frame(FrameType.ACK, _ACK.pack(int(command), status))


# -- decoding ------------------------------------------------------------------------------
def _decode_data(body: memoryview) -> DataFrame:
    if len(body) < DATA_HEADER_SIZE:
        raise CodecError(f"DATA body of {len(body)} bytes is shorter than its "
                         f"{DATA_HEADER_SIZE}-byte header")
    sequence, first, n, channels, fmt, _, scale = _DATA.unpack_from(body)
    if fmt not in (SampleFormat.INT24, SampleFormat.INT16):
        raise CodecError(f"unknown sample format {fmt}")
    fmt = SampleFormat(fmt)
    if n < 1 or not 1 <= channels <= MAX_CHANNELS or n * channels > MAX_VALUES:
        raise CodecError(f"DATA frame of {n} samples x {channels} channels is out of bounds "
                         f"(1..{MAX_CHANNELS} channels, at most {MAX_VALUES} values)")
    expected = DATA_HEADER_SIZE + n * channels * fmt.width
    if len(body) != expected:
        raise CodecError(f"DATA frame announces {n} samples x {channels} channels "
                         f"({expected} body bytes) but carries {len(body)}")
    if not np.isfinite(scale) or scale <= 0:
        raise CodecError(f"DATA frame scale must be positive and finite, got {scale}")
    raw = np.frombuffer(body, np.uint8, offset=DATA_HEADER_SIZE)
    if fmt is SampleFormat.INT24:
        b = raw.reshape(-1, 3).astype(np.int32)
        values = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        values = (values ^ 0x800000) - 0x800000
    else:
        values = raw.view("<i2").astype(np.int32)
    return DataFrame(sequence, first, values.reshape(n, channels), fmt, scale)


def _unpack_strings(body: memoryview, offset: int, count: int) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        if offset >= len(body):
            raise CodecError("DEVICE_INFO ends inside its strings")
        size = body[offset]
        end = offset + 1 + size
        if end > len(body):
            raise CodecError("DEVICE_INFO string runs past the end of the frame")
        try:
            out.append(bytes(body[offset + 1:end]).decode("utf-8"))
        except UnicodeDecodeError as err:
            raise CodecError(f"DEVICE_INFO string is not UTF-8: {err}") from None
        offset = end
    return out, offset


def _decode_info(body: memoryview) -> DeviceInfo:
    if len(body) < _INFO.size:
        raise CodecError(f"DEVICE_INFO body of {len(body)} bytes is too short")
    channels, rate, fmt, _, scale, per_frame = _INFO.unpack_from(body)
    if not 1 <= channels <= MAX_CHANNELS or rate < 1 or per_frame < 1:
        raise CodecError(f"DEVICE_INFO out of bounds: {channels} channels, {rate} Hz, "
                         f"{per_frame} samples per frame")
    if fmt not in (SampleFormat.INT24, SampleFormat.INT16):
        raise CodecError(f"unknown sample format {fmt}")
    if not np.isfinite(scale) or scale <= 0:
        raise CodecError(f"DEVICE_INFO scale must be positive and finite, got {scale}")
    strings, end = _unpack_strings(body, _INFO.size, 4 + channels)
    if end != len(body):
        raise CodecError(f"DEVICE_INFO has {len(body) - end} bytes after its last label")
    return DeviceInfo(channels, rate, SampleFormat(fmt), scale, per_frame, *strings[:4],
                      channel_names=tuple(strings[4:]))


def decode_body(frame_type: int, body: memoryview):
    """Decode one checked frame body; raises :class:`CodecError` when it is malformed."""
    if frame_type == FrameType.DATA:
        return _decode_data(body)
    if frame_type == FrameType.DEVICE_INFO:
        return _decode_info(body)
    if frame_type == FrameType.ACK:
        if len(body) != _ACK.size:
            raise CodecError(f"ACK body must be {_ACK.size} bytes, got {len(body)}")
        command, status = _ACK.unpack(body)
        try:
            command = FrameType(command)
        except ValueError:
            pass
        return Ack(command, status)
    if frame_type == FrameType.SET_RATE:
        if len(body) != _RATE.size:
            raise CodecError(f"SET_RATE body must be {_RATE.size} bytes, got {len(body)}")
        return Command(FrameType.SET_RATE, _RATE.unpack(body)[0])
    if frame_type in COMMAND_TYPES:
        if len(body):
            raise CodecError(f"{FrameType(frame_type).name} takes no body, got {len(body)} bytes")
        return Command(FrameType(frame_type))
    return None  # unknown type: valid envelope, ignored


def _header_ok(buf: bytearray, pos: int) -> int:
    """Body length of a valid header at ``pos`` (sync already matched), or -1."""
    _, version, _, length = _ENVELOPE.unpack_from(buf, pos)
    if version != VERSION or length > MAX_BODY:
        return -1
    (crc,) = struct.unpack_from("<H", buf, pos + 6)
    if binascii.crc_hqx(bytes(buf[pos:pos + 6]), 0xFFFF) != crc:
        return -1
    return length


class FrameDecoder:
    """Streaming decoder: ``feed(bytes)`` returns the frames completed by those bytes.

    Parameters
    ----------
    expected_channels : int | None
        When set, DATA frames with another channel count are rejected as corrupt (a device
        must not change its channel count without announcing it in DEVICE_INFO).
    expected_format : SampleFormat | None
        When set, DATA frames in another sample format are rejected as corrupt, for the same
        reason: DEVICE_INFO is the contract the stream was opened on.

    Counters (read any time): ``frames`` accepted, ``corrupt_frames`` (frame CRC failed or a
    checked frame had a malformed body), ``resyncs`` (runs of skipped bytes before a valid
    frame), ``skipped_bytes``.
    """

    def __init__(self, expected_channels: int | None = None,
                 expected_format: SampleFormat | None = None) -> None:
        self.expected_channels = expected_channels
        self.expected_format = None if expected_format is None else SampleFormat(expected_format)
        self.frames = 0
        self.corrupt_frames = 0
        self.resyncs = 0
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._skipping = False

    def __repr__(self) -> str:
        return (f"<FrameDecoder frames={self.frames} corrupt={self.corrupt_frames} "
                f"resyncs={self.resyncs} buffered={len(self._buf)}>")

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def _check_announced(self, frame: DataFrame) -> None:
        if self.expected_channels is not None and frame.n_channels != self.expected_channels:
            raise CodecError(f"DATA frame has {frame.n_channels} channels, the device "
                             f"announced {self.expected_channels}")
        if self.expected_format is not None and frame.sample_format != self.expected_format:
            raise CodecError(f"DATA frame is in sample format {frame.sample_format.name}, the "
                             f"device announced {self.expected_format.name}")

    def _skip(self, count: int) -> None:
        if count:
            self.skipped_bytes += count
            self._skipping = True

    def feed(self, data: bytes) -> list:
        """Add bytes; return the decoded frames (DataFrame, DeviceInfo, Ack, Command)."""
        buf = self._buf
        buf += data
        out = []
        pos = 0
        size = len(buf)
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                # keep a trailing first sync byte: it may start a frame
                keep = 1 if size > pos and buf[size - 1] == SYNC[0] else 0
                self._skip(size - keep - pos)
                pos = size - keep
                break
            if start > pos:
                self._skip(start - pos)
                pos = start
            if size - pos < HEADER_SIZE:
                break
            length = _header_ok(buf, pos)
            if length < 0:
                self._skip(1)
                pos += 1
                continue
            end = pos + HEADER_SIZE + length + CRC_SIZE
            if end > size:
                break  # wait for the rest; length is bounded by MAX_BODY
            (crc,) = struct.unpack_from("<I", buf, end - CRC_SIZE)
            frame = bytes(buf[pos:end - CRC_SIZE])
            if zlib.crc32(frame) != crc:
                if end + HEADER_SIZE > size:
                    break  # decide when the next header is in: was it a flip or a loss?
                self.corrupt_frames += 1
                logger.debug("frame CRC mismatch in a %d-byte frame", end - pos)
                if buf[end:end + 2] == SYNC and _header_ok(buf, end) >= 0:
                    pos = end  # a bit flip inside the frame: the next frame follows it
                else:
                    self._skip(1)  # bytes were lost: scan for the next frame
                    pos += 1
                continue
            try:
                decoded = decode_body(frame[3], memoryview(frame)[HEADER_SIZE:])
                if isinstance(decoded, DataFrame):
                    self._check_announced(decoded)
            except CodecError as err:
                self.corrupt_frames += 1
                logger.warning("rejected a frame with valid CRC: %s", err)
                decoded = None
            if self._skipping:
                self.resyncs += 1
                self._skipping = False
            pos = end
            if decoded is not None:
                self.frames += 1
                out.append(decoded)
        del buf[:pos]
        return out
