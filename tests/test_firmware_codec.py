"""The protocol codec: round trips, resynchronisation, bounds, and what is rejected."""

from __future__ import annotations

import binascii
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec
from firmware_bridge.codec import (Ack, Command, DataFrame, DeviceInfo, FrameDecoder, FrameType,
                                   SampleFormat)


def frames(count=10, channels=16, n=20, seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.integers(-2**23, 2**23, size=(n, channels)) for _ in range(count)]
    raw = [codec.encode_data(d, k, k * n, codec.ADS1299_SCALE) for k, d in enumerate(data)]
    return data, raw


def header(frame_type, length):
    head = struct.pack("<2sBBH", codec.SYNC, codec.VERSION, frame_type, length)
    return head + struct.pack("<H", binascii.crc_hqx(head, 0xFFFF))


def seal(frame_type, body):
    frame = header(frame_type, len(body)) + body
    return frame + struct.pack("<I", zlib.crc32(frame))


def test_crc_parameters_are_the_documented_ones():
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1  # CRC-16/CCITT-FALSE
    assert zlib.crc32(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC


def test_data_frame_layout_matches_protocol_table():
    counts = np.array([[1, -1], [2**23 - 1, -2**23]])
    frame = codec.encode_data(counts, 0xDEADBEEF, 2**40 + 5, 0.5)
    assert frame[:2] == b"\xEB\x90" and frame[2] == 1 and frame[3] == FrameType.DATA
    length = struct.unpack_from("<H", frame, 4)[0]
    assert len(frame) == 12 + length and length == 22 + 4 * 3
    assert struct.unpack_from("<IQHHBBf", frame, 8) == (0xDEADBEEF, 2**40 + 5, 2, 2, 1, 0, 0.5)
    assert frame[30:42] == bytes([1, 0, 0, 255, 255, 255, 255, 255, 127, 0, 0, 128])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40),
       st.sampled_from(list(SampleFormat)))
def test_any_split_decodes_the_same(cuts, fmt):
    rng = np.random.default_rng(len(cuts))
    data = [rng.integers(-2**23, 2**23, size=(int(rng.integers(1, 30)), 12)) for _ in range(8)]
    stream = b"".join(codec.encode_data(d, k, 0, 1.0, fmt) for k, d in enumerate(data))
    decoder = FrameDecoder()
    out, pos = [], 0
    for cut in cuts:
        out += decoder.feed(stream[pos:pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    lo, hi = fmt.limits
    assert [f.sequence for f in out] == list(range(8))
    for frame, d in zip(out, data):
        np.testing.assert_array_equal(frame.counts, np.clip(d, lo, hi))
    assert (decoder.corrupt_frames, decoder.resyncs, decoder.buffered) == (0, 0, 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=10, max_size=10),
       st.lists(st.booleans(), min_size=10, max_size=10))
def test_garbage_between_frames_is_skipped_and_counted(garbage, where):
    data, raw = frames()
    stream = b"".join((g if put else b"") + f for g, put, f in zip(garbage, where, raw))
    decoder = FrameDecoder(expected_channels=16)
    out = decoder.feed(stream)
    assert [f.sequence for f in out] == list(range(10))
    for frame, d in zip(out, data):
        np.testing.assert_array_equal(frame.counts, d)
    assert decoder.resyncs == sum(where) and decoder.corrupt_frames == 0


def test_corrupted_length_never_stalls_or_over_buffers():
    _, raw = frames(20)
    # a "frame" whose header is valid but claims the maximum length, then real frames
    fake = header(FrameType.DATA, codec.MAX_BODY)
    stream = fake + b"".join(raw) + b"\0" * 8
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), 100):
        out += decoder.feed(stream[i:i + 100])
        assert decoder.buffered <= 12 + codec.MAX_BODY + 8 + 100
    assert [f.sequence for f in out] == list(range(20))
    assert decoder.corrupt_frames == 1 and decoder.resyncs == 1
    # lengths over the bound are not even waited for
    decoder = FrameDecoder()
    assert decoder.feed(header(FrameType.DATA, codec.MAX_BODY + 1) + raw[0]) != []
    assert decoder.resyncs == 1


def test_bit_flip_in_body_rejects_one_frame_only():
    data, raw = frames(3)
    bad = bytearray(raw[1])
    bad[200] ^= 0x10
    decoder = FrameDecoder()
    out = decoder.feed(raw[0] + bytes(bad) + raw[2])
    assert [f.sequence for f in out] == [0, 2]
    assert (decoder.corrupt_frames, decoder.resyncs) == (1, 0)


@pytest.mark.parametrize("body, reason", [
    (struct.pack("<IQHHBBf", 0, 0, 2, 2, 1, 0, 1.0) + bytes(11), "carries"),  # length mismatch
    (struct.pack("<IQHHBBf", 0, 0, 20, 300, 1, 0, 1.0), "out of bounds"),  # > 256 channels
    (struct.pack("<IQHHBBf", 0, 0, 1, 1, 9, 0, 1.0) + bytes(3), "format"),
    (struct.pack("<IQHHBBf", 0, 0, 1, 1, 1, 0, float("nan")) + bytes(3), "scale"),
])
def test_valid_crc_but_malformed_body_is_rejected(body, reason, caplog):
    _, raw = frames(1)
    decoder = FrameDecoder()
    out = decoder.feed(seal(FrameType.DATA, body) + raw[0])
    assert len(out) == 1 and decoder.corrupt_frames == 1
    assert reason in caplog.text


def test_channel_count_checked_against_device():
    _, raw16 = frames(1, channels=16)
    _, raw8 = frames(1, channels=8)
    decoder = FrameDecoder(expected_channels=16)
    out = decoder.feed(raw8[0] + raw16[0])
    assert len(out) == 1 and out[0].n_channels == 16 and decoder.corrupt_frames == 1


def test_sample_format_checked_against_device(caplog):
    counts = np.arange(40).reshape(20, 2)
    int16 = codec.encode_data(counts, 0, 0, codec.ADS1299_SCALE, SampleFormat.INT16)
    int24 = codec.encode_data(counts, 1, 20, codec.ADS1299_SCALE, SampleFormat.INT24)
    decoder = FrameDecoder(expected_channels=2, expected_format=SampleFormat.INT24)
    out = decoder.feed(int16 + int24)
    assert [f.first_sample for f in out] == [20] and decoder.corrupt_frames == 1
    assert "sample format INT16, the device announced INT24" in caplog.text


def test_device_info_and_commands_round_trip():
    info = DeviceInfo(n_channels=3, sample_rate=4000, sample_format=SampleFormat.INT16,
                      scale=float(np.float32(0.25)), samples_per_frame=40,
                      serial_number="SN-1", firmware_version="2.1", manufacturer="Acme",
                      model="band", channel_names=("a", "b", "ü"))
    stream = (codec.encode_device_info(info) + codec.encode_command(FrameType.START)
              + codec.encode_command(FrameType.SET_RATE, 500) + codec.encode_ack(FrameType.STOP)
              + seal(0x7F, b"future"))  # an unknown type is skipped silently
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [info, Command(FrameType.START),
                                    Command(FrameType.SET_RATE, 500), Ack(FrameType.STOP, 0)]
    assert decoder.corrupt_frames == 0


def test_encoder_checks_its_arguments():
    with pytest.raises(codec.CodecError, match="at most 4096 values"):
        codec.encode_data(np.zeros((17, 256), np.int32), 0, 0, 1.0)
    with pytest.raises(codec.CodecError, match="integer array"):
        codec.encode_data(np.zeros((2, 2)), 0, 0, 1.0)
    with pytest.raises(codec.CodecError, match="not a host command"):
        codec.encode_command(FrameType.DATA)
    with pytest.raises(codec.CodecError, match="channel label"):
        codec.encode_device_info(DeviceInfo(1, 100, channel_names=("x" * 33,)))


def test_quantize_rounds_and_saturates():
    scale = codec.ADS1299_SCALE
    x = np.array([0.49 * scale, 0.51 * scale, -1e9, 1e9])
    np.testing.assert_array_equal(codec.quantize(x, scale), [0, 1, -2**23, 2**23 - 1])
    np.testing.assert_array_equal(codec.quantize(x, scale, SampleFormat.INT16),
                                  [0, 1, -2**15, 2**15 - 1])
    frame = FrameDecoder().feed(codec.encode_data(codec.quantize(x[None, :2], scale), 0, 0,
                                                  scale))[0]
    assert isinstance(frame, DataFrame) and frame.microvolts().dtype == np.float32
