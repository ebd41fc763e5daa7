"""The virtual wristband speaks the protocol on a real pseudo-terminal (raw pyserial here)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import serial

from firmware_bridge import codec
from firmware_bridge.codec import Ack, DataFrame, DeviceInfo, FrameDecoder, FrameType
from firmware_bridge.virtual_device import VirtualDevice


def ramp(first, n):
    return np.repeat((first + np.arange(n))[:, None], 2, axis=1) * codec.ADS1299_SCALE


def exchange(port, decoder, command: bytes, seconds: float = 0.3) -> list:
    port.write(command)
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out += decoder.feed(port.read(max(1, port.in_waiting)))
    return out


def test_commands_and_drift_free_schedule():
    with VirtualDevice(n_channels=2, sample_rate=500, signal=ramp, serial_number="X-9") as dev, \
            serial.Serial(dev.path, timeout=0.05) as port:
        assert "idle" in repr(dev) and dev.path in repr(dev)
        decoder = FrameDecoder()
        info = exchange(port, decoder, codec.encode_command(FrameType.QUERY_INFO))
        assert info == [dev.device_info()] and isinstance(info[0], DeviceInfo)
        assert info[0].serial_number == "X-9" and info[0].samples_per_frame == 5
        answer = exchange(port, decoder, codec.encode_command(FrameType.SET_RATE, 1000))
        assert answer == [Ack(FrameType.SET_RATE, Ack.OK)] and dev.sample_rate == 1000
        start = time.perf_counter()  # before the device can see START
        port.write(codec.encode_command(FrameType.START))
        got, arrivals = [], []
        while time.perf_counter() - start < 1.0:
            for message in decoder.feed(port.read(max(1, port.in_waiting))):
                got.append(message)
                arrivals.append(time.perf_counter())
        assert got[0] == Ack(FrameType.START, Ack.OK)
        frames = [m for m in got[1:] if isinstance(m, DataFrame)]
        # 1000 Hz, 10 samples per frame: frame k is due 10 (k + 1) ms after START, never
        # earlier (the device's START is after ours); lateness is the machine's load
        due = start + 0.010 * (1 + np.arange(len(frames)))
        assert np.all(np.array(arrivals[1:]) >= due)
        assert len(frames) >= 50
        assert [f.first_sample for f in frames] == [10 * k for k in range(len(frames))]
        np.testing.assert_array_equal(frames[-1].counts[:, 0], frames[-1].first_sample
                                      + np.arange(10))
        refused = exchange(port, decoder, codec.encode_command(FrameType.SET_RATE, 250))
        assert Ack(FrameType.SET_RATE, Ack.BAD_ARGUMENT) in refused  # not while streaming
        stopped = exchange(port, decoder, codec.encode_command(FrameType.STOP))
        assert Ack(FrameType.STOP, Ack.OK) in stopped
        assert exchange(port, decoder, b"", 0.2) == []  # silent once stopped
        assert decoder.corrupt_frames == 0 and "streaming" not in repr(dev)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="n_channels"):
        VirtualDevice(n_channels=0)
    with pytest.raises(ValueError, match="sample_rate"):
        VirtualDevice(sample_rate=2000.5)
    with pytest.raises(ValueError, match="bit_error_rate"):
        VirtualDevice(bit_error_rate=2)
    with pytest.raises(ValueError, match="samples_per_frame"):
        VirtualDevice(n_channels=256, samples_per_frame=17)
    with pytest.raises(RuntimeError, match="keep_history"):
        VirtualDevice().history()
    assert "not started" in repr(VirtualDevice(drop_frames=0.1))
