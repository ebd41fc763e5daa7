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
