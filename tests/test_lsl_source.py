"""LSL inlet against a real outlet on loopback (ResolveScope=link, unique source ids)."""

from __future__ import annotations

import gc
import logging
import threading
import time

import numpy as np
import pylsl
import pytest

from emgstream.sources import SourceError, open_source
from emgstream.sources.lsl import LSLSource

RATE = 1000.0


def _outlet(uid, channels=4, rate=RATE, fmt="float32", labels=True):
    info = pylsl.StreamInfo(uid, "EMG", channels, rate, fmt, uid)
    if labels:
        info.set_channel_labels([f"ch{i}" for i in range(channels)])
        info.set_channel_units(["microvolts"] * channels)
    info.desc().append_child_value("manufacturer", "emgstream-test")
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)


def _collect(src, n_expected, timeout=10.0):
    parts, stamps = [], []
    deadline = time.monotonic() + timeout
    while sum(map(len, stamps)) < n_expected and time.monotonic() < deadline:
        s, t = src.read(0.2)
        parts.append(s)
        stamps.append(t)
    return np.concatenate(parts), np.concatenate(stamps)


def _wait_connected(outlet, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not outlet.have_consumers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outlet.have_consumers()


def test_samples_and_timestamps_arrive_intact(unique_id):
    outlet = _outlet(unique_id)
    with open_source(f"lsl://source_id={unique_id}?timeout=5") as src:
        info = src.info
        assert (info.n_channels, info.sample_rate, info.kind) == (4, RATE, "lsl")
        assert info.channel_names == ("ch0", "ch1", "ch2", "ch3")
        assert info.device_id == unique_id and info.manufacturer == "emgstream-test"
        assert info.units == "microvolts"
        _wait_connected(outlet)
        rng = np.random.default_rng(0)
        sent = rng.standard_normal((1000, 4)).astype(np.float32)
        # 20 ms chunks on a real-time schedule, stamped at their due times
        t0 = pylsl.local_clock()
        pushed = t0 + np.arange(1000) / RATE
        for k in range(0, 1000, 20):
            while pylsl.local_clock() < pushed[k + 19]:
                time.sleep(0.001)
            outlet.push_chunk(sent[k:k + 20], pushed[k:k + 20].tolist())
        got, stamps = _collect(src, 1000)
        assert src.stats.samples == 1000 and src.stats.dropped_samples == 0
    np.testing.assert_array_equal(got, sent)
    assert np.all(np.diff(stamps) > 0)
    # loopback clock offset is ~0: stamps equal the push stamps to well under a millisecond
    np.testing.assert_allclose(stamps, pushed, rtol=0, atol=1e-3)


def test_int16_stream_and_lookup_by_name_and_type(unique_id):
    outlet = _outlet(unique_id, channels=2, fmt="int16", labels=False)
    with LSLSource(name=unique_id, type="EMG", timeout=5) as src:
        assert src.info.channel_names == ("EMG1", "EMG2")
        _wait_connected(outlet)
        sent = np.arange(200, dtype=np.int16).reshape(100, 2)
        outlet.push_chunk(sent)
        got, _ = _collect(src, 100)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, sent.astype(np.float32))


def test_resolve_timeout_names_the_predicate(unique_id):
    src = open_source(f"lsl://name={unique_id}?timeout=0.3")
    with pytest.raises(SourceError, match=rf"no LSL stream matching name='{unique_id}' "
                                          r"found within 0.3 s"):
        src.open()
    assert not src.is_open


@pytest.mark.parametrize("rate, fmt, message", [
    (pylsl.IRREGULAR_RATE, "float32", "irregular rate"),
    (1000.0, "string", "channel format"),
])
def test_unusable_streams_rejected(unique_id, rate, fmt, message):
    info = pylsl.StreamInfo(unique_id, "EMG", 2, rate, fmt, unique_id)
    outlet = pylsl.StreamOutlet(info)  # noqa: F841 (kept alive for the resolve)
    with pytest.raises(SourceError, match=message):
        LSLSource(source_id=unique_id, timeout=5).open()


def test_uri_errors():
    with pytest.raises(ValueError, match="key=value"):
        open_source("lsl://EMG")
    with pytest.raises(ValueError, match="unknown lsl:// parameter"):
        open_source("lsl://name=EMG?timout=3")
    with pytest.raises(ValueError, match="dejitter must be 0 or 1"):
        open_source("lsl://name=EMG?dejitter=yes")
    src = open_source("lsl://type=EMG?name=band&dejitter=1")
    assert src.predicate == "name='band' and type='EMG'"


def test_recovers_when_outlet_comes_back(unique_id, caplog):
    caplog.set_level(logging.INFO, logger="emgstream.sources.lsl")
    outlet = _outlet(unique_id)
    with LSLSource(source_id=unique_id, timeout=5, stall_timeout=0.3) as src:
        _wait_connected(outlet)
        first = np.full((100, 4), 1.0, np.float32)
        t_first = pylsl.local_clock()
        outlet.push_chunk(first, (t_first - (99 - np.arange(100)) / RATE).tolist())
        got, _ = _collect(src, 100)
        np.testing.assert_array_equal(got, first)
        del outlet
        gc.collect()
        # nothing arrives: the stall is logged
        deadline = time.monotonic() + 2
        while "stalled" not in caplog.text and time.monotonic() < deadline:
            assert len(src.read(0.1)[0]) == 0
        assert "stalled" in caplog.text
        assert src.stats.stalls == 1 and src.stats.stalled > 0.3  # for record's status line
        outlet = _outlet(unique_id)   # same source id: liblsl re-resolves it
        second = np.full((100, 4), 2.0, np.float32)
        pushed = threading.Event()

        def push_when_connected():
            _wait_connected(outlet, timeout=15)
            t = pylsl.local_clock()
            outlet.push_chunk(second, (t - (99 - np.arange(100)) / RATE).tolist())
            pushed.set()

        pusher = threading.Thread(target=push_when_connected)
        pusher.start()
        got, stamps = _collect(src, 100, timeout=20)
        pusher.join()
        np.testing.assert_array_equal(got, second)
        stats = src.stats
        assert stats.reconnects == 1 and stats.stalled == 0
        faults = src.drain_faults()  # with their times, for the recording
        assert [f.kind for f in faults] == ["stalls", "reconnects"]
        assert t_first < faults[0].time < faults[1].time <= pylsl.local_clock()
        # the time in between is known to be missing, and reported as a drop
        assert stats.dropped_samples > 0.1 * RATE
        drops = src.drain_drops()
        assert len(drops) == 1 and drops[0].time > t_first
    assert "is back after" in caplog.text


def test_backlog_reported_and_warned(unique_id, caplog):
    outlet = _outlet(unique_id)
    with LSLSource(source_id=unique_id, timeout=5) as src:
        _wait_connected(outlet)
        outlet.push_chunk(np.zeros((3000, 4), np.float32))  # 3 s of data at once
        deadline = time.monotonic() + 5
        while src.stats.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            src.read(0.2)  # reads at most one second's worth
        assert src.stats.backlog > RATE
        assert "behind" in caplog.text


def test_dejitter_smooths_sender_stamps(unique_id):
    outlet = _outlet(unique_id)
    with open_source(f"lsl://source_id={unique_id}?dejitter=1&timeout=5") as src:
        _wait_connected(outlet)
        rng = np.random.default_rng(1)
        true = pylsl.local_clock() - 2.0 + np.arange(2000) / RATE
        jittered = true + rng.uniform(-2e-3, 2e-3, 2000)   # stamped by a jittery sender
        for k in range(0, 2000, 100):
            outlet.push_chunk(np.zeros((100, 4), np.float32), jittered[k:k + 100].tolist())
        _, stamps = _collect(src, 2000)
    raw_error = np.abs(jittered - true).mean()
    assert np.all(np.diff(stamps) >= 0)   # proc_monotonize
    assert np.abs(stamps - true)[500:].mean() < raw_error / 4
