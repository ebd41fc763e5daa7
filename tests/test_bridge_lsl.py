"""``emgstream bridge``: virtual serial wristband -> bridge process -> a real LSL inlet."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest

from emgstream.sources.serial import MAX_RATE_ERROR, MAX_SLEW
from firmware_bridge import codec
from firmware_bridge.virtual_device import VirtualDevice

CHANNELS = 8
RATE = 1000
SCALE = codec.ADS1299_SCALE


def ramp(first: int, n: int) -> np.ndarray:
    counter = first + np.arange(n)
    return (counter[:, None] * CHANNELS + np.arange(CHANNELS)) * SCALE


def test_bridge_serves_labelled_samples_over_lsl(unique_id):
    with VirtualDevice(n_channels=CHANNELS, sample_rate=RATE, signal=ramp,
                       keep_history=True) as dev:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "emgstream", "bridge", f"serial://{dev.path}",
             "--name", unique_id, "--source-id", unique_id, "--duration", "8",
             "--stats-every", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            found = pylsl.resolve_byprop("source_id", unique_id, timeout=8)
            assert found, "the bridge's outlet was not found on loopback"
            inlet = pylsl.StreamInlet(found[0])
            info = inlet.info(timeout=5)
            assert (info.name(), info.type(), info.channel_count(), info.nominal_srate()) \
                == (unique_id, "EMG", CHANNELS, RATE)
            channel = info.desc().child("channels").child("channel")
            labels, units = [], []
            while not channel.empty():
                labels.append(channel.child_value("label"))
                units.append(channel.child_value("unit"))
                channel = channel.next_sibling()
            assert labels == [f"EMG{i + 1}" for i in range(CHANNELS)]
            assert set(units) == {"microvolts"}
            acquisition = info.desc().child("acquisition")
            assert acquisition.child_value("manufacturer") == "emgstream"
            assert acquisition.child_value("serial_number") == "VIRT-0001"

            samples, stamps = [], []
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                chunk, ts = inlet.pull_chunk(timeout=0.2)
                if ts:
                    samples.append(np.asarray(chunk, np.float32))
                    stamps.extend(ts)
        finally:
            bridge.terminate()
            output, _ = bridge.communicate(timeout=10)
    samples = np.concatenate(samples)
    assert len(samples) >= RATE // 2, output
    counts = np.rint(samples / np.float32(SCALE)).astype(np.int64)
    counters = counts[:, 0] // CHANNELS
    # consecutive samples, each equal to what the device sent, with device-counter times
    np.testing.assert_array_equal(np.diff(counters), 1)
    sent = dev.history()[counters].astype(np.float32) * np.float32(SCALE)
    np.testing.assert_array_equal(samples, sent)
    assert np.allclose(np.diff(stamps), 1 / RATE, rtol=MAX_SLEW + MAX_RATE_ERROR, atol=0)
    assert "bridging" in output


def test_bridge_rejects_other_uris():
    result = subprocess.run([sys.executable, "-m", "emgstream", "bridge", "lsl://name=EMG"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "expected a serial:// URI" in result.stderr


@pytest.mark.parametrize("args", [["--lsl", "X", "--serial"], []])
def test_simulate_needs_exactly_one_transport(args):
    result = subprocess.run([sys.executable, "-m", "emgstream", "simulate", *args],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "exactly one of --lsl NAME or --serial" in result.stderr


def test_simulate_serial_prints_a_port_that_streams():
    from emgstream.sources import open_source

    sim = subprocess.Popen([sys.executable, "-m", "emgstream", "simulate", "--serial",
                            "--channels", "4", "--rate", "500", "--duration", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = sim.stdout.readline().strip()
        assert port.startswith("/dev/"), sim.stderr.read()
        with open_source(f"serial://{port}") as src:
            assert (src.info.n_channels, src.info.sample_rate) == (4, 500)
            got = 0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                samples, _ = src.read(timeout=0.1)
                got += len(samples)
                assert np.isfinite(samples).all()
            assert got >= 250 and src.stats.dropped_samples == 0
    finally:
        sim.terminate()
        sim.communicate(timeout=10)


def test_simulate_lsl_serves_described_stream(unique_id):
    sim = subprocess.Popen([sys.executable, "-m", "emgstream", "simulate", "--lsl", unique_id,
                            "--source-id", unique_id, "--channels", "4", "--rate", "500",
                            "--duration", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        found = pylsl.resolve_byprop("source_id", unique_id, timeout=10)
        assert found
        inlet = pylsl.StreamInlet(found[0])
        info = inlet.info(timeout=5)
        assert (info.name(), info.channel_count(), info.nominal_srate()) == (unique_id, 4, 500)
        assert info.desc().child("channels").child("channel").child_value("unit") == "microvolts"
        samples = []
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            chunk, ts = inlet.pull_chunk(timeout=0.2)
            samples.extend(chunk)
        assert len(samples) >= 250 and np.std(samples) > 0
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
