"""SerialSource against the virtual wristband on a real pseudo-terminal, with pyserial.

Most tests use a counter-coded signal: channel 0 carries each sample's device counter (mod
2^22), the other channels a pseudo-random full-scale int24 pattern of counter and channel, so
every delivered row says which sample it is and can be checked against what the device sent.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from emgstream.sources import SourceError, open_source
from emgstream.sources.serial import MAX_RATE_ERROR, MAX_SLEW
from firmware_bridge import codec
from firmware_bridge.virtual_device import VirtualDevice

RATE = 2000
CHANNELS = 16
SCALE = codec.ADS1299_SCALE


def counter_signal(first: int, n: int) -> np.ndarray:
    counter = first + np.arange(n, dtype=np.int64)
    counts = np.empty((n, CHANNELS), np.int64)
    counts[:, 0] = counter % (1 << 22)
    channel = np.arange(1, CHANNELS)
    counts[:, 1:] = (counter[:, None] * 7919 + channel * 104729) % (1 << 24) - (1 << 23)
    return counts * SCALE  # µV that quantize back to exactly these counts


def device(**faults) -> VirtualDevice:
    return VirtualDevice(n_channels=CHANNELS, sample_rate=RATE, signal=counter_signal,
                         keep_history=True, fault_seed=7, **faults)


def read_for(src, seconds: float):
    samples, times = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        x, t = src.read(timeout=0.1)
        samples.append(x)
        times.append(t)
    return np.concatenate(samples), np.concatenate(times)


def read_until_quiet(src, quiet: float = 0.4):
    """Read until nothing came for ``quiet`` seconds (the device was stalled)."""
    samples, times = [], []
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        x, t = src.read(timeout=0.05)
        if len(x):
            samples.append(x)
            times.append(t)
            last = time.monotonic()
    return samples, times


def collect(dev, src, seconds: float):
    """Stream ``seconds``, then stall the device and drain: everything sent is decoded."""
    x, t = read_for(src, seconds)
    dev.stall(60)
    more_x, more_t = read_until_quiet(src)
    dev.inject(bytes(16))  # lets the decoder judge a corrupt last frame
    time.sleep(0.1)
    rest_x, rest_t = read_until_quiet(src, 0.1)
    return (np.concatenate([x, *more_x, *rest_x]), np.concatenate([t, *more_t, *rest_t]))


def counters_of(samples: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Device counter of each delivered row, checking each row equals what was sent."""
    low = np.rint(samples[:, 0] / np.float32(SCALE)).astype(np.int64)
    # unwrap the 22-bit counter (tests stay far below 2^22 samples anyway)
    counters = low + (np.cumsum(np.diff(low, prepend=low[:1]) < 0) << 22)
    assert np.all(np.diff(counters) > 0), "samples out of order or duplicated"
    sent = history[counters].astype(np.float32) * np.float32(SCALE)
    np.testing.assert_array_equal(samples, sent)
    return counters


def assert_no_time_shift(timestamps: np.ndarray, counters: np.ndarray) -> None:
    """Time between delivered samples is their counter distance times the device period (the
    clock map's slope is bounded by MAX_SLEW and MAX_RATE_ERROR), across losses too: a lost
    frame shifting later samples would be off by a whole frame."""
    dt = np.diff(timestamps)
    expected = np.diff(counters) / RATE
    bound = expected * (MAX_SLEW + MAX_RATE_ERROR) + 1e-9
    worst = np.max(np.abs(dt - expected) - bound)
    assert worst <= 0, f"timestamps depart from the counter by {worst:.2e} s beyond bound"


def test_clean_stream_round_trips_exactly():
    with device() as dev, open_source(f"serial://{dev.path}?baud=921600") as src:
        assert src.info.n_channels == CHANNELS and src.info.sample_rate == RATE
        assert src.info.channel_names == tuple(f"EMG{i + 1}" for i in range(CHANNELS))
        assert src.info.device_id == "VIRT-0001" and src.info.kind == "serial"
        samples, timestamps = collect(dev, src, 1.5)
        history = dev.history()
        counters = counters_of(samples, history)
        stats = src.stats
    sent = sum(r.n_samples for r in dev.records if r.fate == "sent")
    assert len(samples) == sent >= RATE  # every sample sent arrived
    np.testing.assert_array_equal(counters, np.arange(sent))
    assert (stats.dropped_samples, stats.corrupt_frames, stats.resyncs) == (0, 0, 0)
    assert_no_time_shift(timestamps, counters)
    from pylsl import local_clock
    assert 0 < local_clock() - timestamps[-1] < 1.5  # on the LSL clock (collect idles ~0.6 s)


def test_simulated_signal_round_trips_within_quantisation():
    """The default device signal is the simulator (sim://); values survive int24 framing."""
    with VirtualDevice(n_channels=8, sample_rate=1000, user=1, seed=3) as dev, \
            open_source(f"serial://{dev.path}") as src:
        samples, _ = read_for(src, 1.0)
        assert src.stats.dropped_samples == 0
    assert len(samples) >= 500
    reference_source = open_source(
        f"sim://?channels=8&rate=1000&user=1&seed=3&chunk={dev.samples_per_frame}&realtime=0")
    with reference_source as ref:
        reference = np.concatenate([ref.read()[0] for _ in
                                    range(len(samples) // dev.samples_per_frame)])
    assert np.std(reference) > 0
    half_step = np.float32(SCALE) / 2 * (1 + 1e-5) + np.abs(reference) * 2e-7
    assert np.all(np.abs(samples - reference) <= half_step)


def test_bit_flips_every_bad_frame_rejected_and_counted():
    with device(bit_error_rate=1e-4) as dev, open_source(f"serial://{dev.path}") as src:
        samples, timestamps = collect(dev, src, 2.0)
        counters = counters_of(samples, dev.history())
        stats = src.stats
        drops = src.drain_drops()
    end = counters[-1] + 1
    records = [r for r in dev.records if r.first_sample < end]
    sent = [r for r in records if r.fate == "sent"]
    clean = [r for r in sent if not r.flipped_bytes]
    header_hit = [r for r in sent if r.flipped_bytes and r.flipped_bytes[0] < 8]
    body_hit = [r for r in dev.records if r.fate == "sent" and r.flipped_bytes
                and r.flipped_bytes[0] >= 8]
    assert len(sent) > 150 and len(body_hit) > 20  # the fault really happened
    # accepted + rejected (+ lost to a hit header) == sent, sample for sample
    assert len(samples) == sum(r.n_samples for r in clean)
    assert stats.dropped_samples == sum(r.n_samples for r in records) - len(samples)
    assert sum(d.count for d in drops) == stats.dropped_samples
    assert stats.corrupt_frames == len(body_hit)
    assert stats.resyncs == len(header_hit)
    assert_no_time_shift(timestamps, counters)


def test_dropped_frames_counted_exactly_and_placed_in_time():
    with device(drop_frames=0.1) as dev, open_source(f"serial://{dev.path}") as src:
        samples, timestamps = collect(dev, src, 2.0)
        counters = counters_of(samples, dev.history())
        stats = src.stats
        drops = src.drain_drops()
        lost_frames = src.lost_frames
    dropped = [r for r in dev.records if r.fate == "dropped" and r.first_sample < counters[-1]]
    assert len(dropped) > 10
    assert stats.dropped_samples == sum(r.n_samples for r in dropped)
    assert lost_frames == len(dropped)
    assert (stats.corrupt_frames, stats.resyncs) == (0, 0)
    assert_no_time_shift(timestamps, counters)
    # each span sits where the lost samples were: it ends one period before the next sample
    for span in drops:
        after = np.searchsorted(timestamps, span.time)
        gap = counters[after] - counters[after - 1] - 1
        assert span.count == gap
        expected = timestamps[after] - gap / RATE
        assert abs(span.time - expected) <= gap / RATE * (MAX_SLEW + MAX_RATE_ERROR) + 1e-9


def test_garbage_is_skipped_and_counted_as_resyncs():
    with device(garbage_rate=0.2) as dev, open_source(f"serial://{dev.path}") as src:
        samples, timestamps = collect(dev, src, 1.5)
        counters = counters_of(samples, dev.history())
        stats = src.stats
    garbage = [r for r in dev.records if r.garbage and r.first_sample <= counters[-1]]
    assert len(garbage) > 10
    assert stats.resyncs == len(garbage)
    assert (stats.dropped_samples, stats.corrupt_frames) == (0, 0)
    np.testing.assert_array_equal(counters, np.arange(len(samples)))


def test_frame_with_wrong_channel_count_is_rejected():
    with device() as dev, open_source(f"serial://{dev.path}") as src:
        read_for(src, 0.3)
        wrong = np.arange(20 * 8, dtype=np.int32).reshape(20, 8)
        dev.inject(codec.encode_data(wrong, sequence=12345, first_sample=10**9, scale=SCALE))
        samples, _ = read_for(src, 0.5)
        stats = src.stats
        assert samples.shape[1] == CHANNELS and len(samples) > 0
    assert (stats.corrupt_frames, stats.dropped_samples, stats.resyncs) == (1, 0, 0)


def test_stall_raises_clear_error_after_delivering_everything():
    with device() as dev, open_source(f"serial://{dev.path}?timeout=0.5") as src:
        before, _ = read_for(src, 0.5)
        dev.stall(30)
        delivered = [before]
        with pytest.raises(SourceError, match="no data for 0.5 s"):
            while True:
                delivered.append(src.read(timeout=0.1)[0])
        delivered = np.concatenate(delivered)
        counters = counters_of(delivered, dev.history())
        assert src.stats.samples == len(delivered) > 0
        np.testing.assert_array_equal(counters, np.arange(len(delivered)))
        with pytest.raises(SourceError):  # and it stays failed
            src.read(timeout=0.1)


def test_disconnect_not_undone_raises_clear_error_after_timeout():
    with device() as dev, open_source(f"serial://{dev.path}?timeout=1") as src:
        before, _ = read_for(src, 0.4)
        dev.disconnect()
        delivered = [before]
        with pytest.raises(SourceError, match="disconnected .* not back within 1 s"):
            for _ in range(100):
                delivered.append(src.read(timeout=0.1)[0])
        delivered = np.concatenate(delivered)
        counters = counters_of(delivered, dev.history())
        np.testing.assert_array_equal(counters, np.arange(len(delivered)))


def test_silent_port_fails_open_with_clear_error(tmp_path):
    import os
    import tty

    master, slave = os.openpty()  # a port where nothing answers
    try:
        tty.setraw(slave)
        src = open_source(f"serial://{os.ttyname(slave)}")
        src.open_timeout = 0.5
        with pytest.raises(SourceError, match="did not answer"):
            src.open()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(SourceError, match="cannot open serial port"):
        open_source(f"serial://{tmp_path}/no-such-port").open()


def test_uri_parameters_are_checked():
    with pytest.raises(ValueError, match="does not take"):
        open_source("serial:///dev/ttyUSB0?speed=3")
    with pytest.raises(ValueError, match="baud"):
        open_source("serial:///dev/ttyUSB0?baud=fast")
    src = open_source("serial:///dev/ttyUSB0?baud=3000000&timeout=1.5&rate=1000&name=Band")
    assert (src.baud, src.timeout, src.rate, src.name) == (3000000, 1.5, 1000, "Band")
    assert "ttyUSB0" in repr(src)


def test_set_rate_at_open():
    with device() as dev, open_source(f"serial://{dev.path}?rate=1000") as src:
        assert src.info.sample_rate == 1000 and dev.sample_rate == 1000
        samples, _ = read_for(src, 0.5)
        assert len(samples) > 0


def test_device_clock_drift_is_estimated():
    """A device crystal 600 ppm fast: the source measures the rate on the host clock."""
    with device(clock_ppm=600) as dev, open_source(f"serial://{dev.path}") as src:
        samples, timestamps = read_for(src, 4.5)
        estimate_ppm = (src.estimated_rate / RATE - 1) * 1e6
        counters = counters_of(samples, dev.history())
    assert abs(estimate_ppm - 600) < 50, estimate_ppm
    assert_no_time_shift(timestamps, counters)
