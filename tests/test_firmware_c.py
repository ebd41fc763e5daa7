"""The C frame encoder of the reference firmware, built with gcc on the host, must produce
exactly the bytes of the Python encoder; the whole firmware must compile warning-free."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.codec import (ADS1299_SCALE, MAX_VALUES, FrameDecoder, SampleFormat,
                                   encode_data)

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware"
GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="gcc not installed")
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.fixture(scope="module")
def host_encode(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("fw") / "host_encode"
    subprocess.run([GCC, *CFLAGS, "-o", str(exe), str(FIRMWARE / "host_encode.c"),
                    str(FIRMWARE / "frame.c")], check=True, capture_output=True)
    return exe


def _requests(rng: np.random.Generator):
    """(sequence, first sample, counts, format, scale) covering the edges."""
    lo24, hi24 = SampleFormat.INT24.limits
    edges = np.array([lo24 - 1, lo24, lo24 + 1, -1, 0, 1, hi24 - 1, hi24, hi24 + 1,
                      -2**31, 2**31 - 1, -32769, -32768, 32767, 32768], dtype=np.int64)
    out = []
    # sequence wrap: 2^32 - 2, 2^32 - 1, then 0, 1; counters up to the top of u64
    for k, seq in enumerate([2**32 - 2, 2**32 - 1, 0, 1]):
        counts = rng.integers(lo24, hi24 + 1, size=(20, 16))
        out.append((seq, 2**64 - 1 - 20 * (4 - k), counts, SampleFormat.INT24, ADS1299_SCALE))
    for fmt in (SampleFormat.INT24, SampleFormat.INT16):
        counts = rng.choice(edges, size=(30, 8))  # saturation on both sides
        out.append((7, 123456789, counts, fmt, 0.5))
    for _ in range(20):
        channels = int(rng.integers(1, 257))
        n = int(rng.integers(1, MAX_VALUES // channels + 1))
        counts = rng.integers(-2**31, 2**31, size=(n, channels))
        fmt = SampleFormat(int(rng.integers(1, 3)))
        scale = float(np.float32(rng.uniform(1e-3, 10)))
        out.append((int(rng.integers(0, 2**32)), int(rng.integers(0, 2**63)), counts, fmt, scale))
    out.append((0, 0, np.full((1, 1), 5), SampleFormat.INT24, ADS1299_SCALE))
    out.append((1, 0, rng.integers(-9e6, 9e6, size=(MAX_VALUES // 256, 256)),
                SampleFormat.INT24, ADS1299_SCALE))
    return out


def test_c_encoder_matches_python_byte_for_byte(host_encode):
    requests = _requests(np.random.default_rng(1234))
    stdin = b"".join(
        struct.pack("<IQHHBf", seq, first, *counts.shape, fmt, scale)
        + counts.astype("<i4").tobytes()
        for seq, first, counts, fmt, scale in requests)
    result = subprocess.run([str(host_encode)], input=stdin, capture_output=True, check=True)
    expected = [encode_data(counts.astype(np.int64), seq, first, scale, fmt)
                for seq, first, counts, fmt, scale in requests]
    got = result.stdout
    offset = 0
    for i, frame in enumerate(expected):
        assert got[offset:offset + len(frame)] == frame, f"frame {i} differs"
        offset += len(frame)
    assert offset == len(got)
    # and the decoder reads them back, saturated to the format's range
    decoded = FrameDecoder().feed(got)
    assert len(decoded) == len(requests)
    for frame, (seq, first, counts, fmt, scale) in zip(decoded, requests):
        lo, hi = SampleFormat(fmt).limits
        assert (frame.sequence, frame.first_sample, frame.sample_format) == (seq, first, fmt)
        np.testing.assert_array_equal(frame.counts, np.clip(counts, lo, hi))


def test_c_encoder_rejects_out_of_bounds_requests(host_encode):
    request = struct.pack("<IQHHBf", 0, 0, 1, 300, 1, 1.0) + bytes(4 * 300)  # > 256 channels
    result = subprocess.run([str(host_encode)], input=request, capture_output=True)
    assert result.returncode != 0 and result.stdout == b""


@pytest.mark.parametrize("source", ["frame.c", "ads1299.c", "main.c"])
def test_firmware_compiles_warning_free(source, tmp_path):
    subprocess.run([GCC, *CFLAGS, "-c", "-o", str(tmp_path / "out.o"), str(FIRMWARE / source)],
                   check=True, capture_output=True)


def test_c_device_info_and_ack_match_python(host_encode):
    from firmware_bridge.codec import Ack, DeviceInfo, FrameType, encode_ack, encode_device_info

    info = DeviceInfo(n_channels=3, sample_rate=4000, sample_format=SampleFormat.INT16,
                      scale=0.25, samples_per_frame=40, serial_number="SN-1",
                      firmware_version="2.1", manufacturer="Acme", model="band",
                      channel_names=("EMG1", "flexor", ""))
    result = subprocess.run([str(host_encode), "--info"], capture_output=True, check=True)
    assert result.stdout == encode_device_info(info) + encode_ack(FrameType.SET_RATE,
                                                                  Ack.BAD_ARGUMENT)


def test_c_command_parser_accepts_python_commands_through_garbage(host_encode):
    from firmware_bridge.codec import FrameType, encode_command

    rng = np.random.default_rng(5)
    start, stop = encode_command(FrameType.START), encode_command(FrameType.STOP)
    rate = encode_command(FrameType.SET_RATE, 250)
    flipped = bytearray(encode_command(FrameType.SET_RATE, 1000))
    flipped[9] ^= 0x01  # corrupt: must be ignored
    garbage = rng.integers(0, 256, 300, dtype=np.uint8).tobytes().replace(b"\xEB", b"\x00")
    stream = (garbage[:50] + start + garbage[50:60] + bytes(flipped) + rate + b"\xEB"
              + encode_command(FrameType.QUERY_INFO) + garbage[60:] + stop
              + encode_data(np.zeros((1, 1), np.int32), 0, 0, 1.0))  # DATA: not a command
    result = subprocess.run([str(host_encode), "--commands"], input=stream,
                            capture_output=True, check=True, text=False)
    lines = result.stdout.decode().split()
    assert lines == ["16", "0", "18", "250", "19", "0", "17", "0"]
