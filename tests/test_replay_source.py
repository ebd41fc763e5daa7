"""Replay of emg2pose-layout recordings: content, drift-free timing, speed, loop, labels."""

from __future__ import annotations

import numpy as np
import pytest
from pylsl import local_clock

from emgstream.io import RecordingWriter
from emgstream.sources import SourceError, StreamInfo, open_source
from emgstream.sources.replay import ReplaySource

RATE = 2000.0


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec.h5"
    rng = np.random.default_rng(3)
    emg = rng.standard_normal((1000, 3)).astype(np.float32)
    labels = (np.arange(1000) // 250 % 3).astype(np.int16)
    info = StreamInfo("band", 3, RATE, channel_names=("a", "b", "c"), device_id="x9")
    with RecordingWriter(path, info, class_names=["rest", "fist", "open"]) as w:
        w.append(emg, 5.0 + np.arange(1000) / RATE, labels=labels)
    return path, emg, labels


def _read_all(src, limit=100_000):
    parts, stamps = [], []
    while not src.finished and sum(map(len, parts)) < limit:
        s, t = src.read(0.5)
        parts.append(s)
        stamps.append(t)
    return np.concatenate(parts), np.concatenate(stamps)


def test_as_fast_as_possible_delivers_file_exactly(recording):
    path, emg, labels = recording
    with open_source(f"replay://{path}?speed=0&chunk=7") as src:
        assert src.info.channel_names == ("a", "b", "c")
        assert src.info.device_id == "x9" and src.info.kind == "replay"
        assert src.info.sample_rate == RATE
        samples, stamps = _read_all(src)
        np.testing.assert_array_equal(samples, emg)
        np.testing.assert_allclose(np.diff(stamps), 1 / RATE, rtol=1e-6)
        assert src.finished and src.stats.samples == 1000
        assert src.read(0.01)[0].shape == (0, 3)
        np.testing.assert_array_equal(src.labels_for(stamps), labels)
        assert src.class_names == ["rest", "fist", "open"]


def test_real_time_is_drift_free(recording):
    path, emg, _ = recording
    with ReplaySource(path, loop=True) as src:   # 0.5 s file, looped for 1.5 s
        t0 = src.start_time
        chunks, stamps = [], []
        while local_clock() - t0 < 1.5:
            s, t = src.read(0.1)
            chunks.append(s)
            stamps.append(t)
        returned = local_clock()
        samples, stamps = np.concatenate(chunks), np.concatenate(stamps)
    n = len(stamps)
    # every sample stamped at its due time: no accumulated drift, no gaps, loops seamless
    np.testing.assert_allclose(stamps, t0 + np.arange(n) / RATE, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(samples, np.tile(emg, (n // 1000 + 1, 1))[:n])
    # what was delivered is what was due when the last read returned, within a few ms
    assert abs(n - (returned - t0) * RATE) <= 0.005 * RATE + src._chunk_size
    assert stamps[-1] <= returned


def test_speed_ten_is_ten_times_faster(recording):
    path, _, _ = recording
    with ReplaySource(path, speed=10, loop=True) as src:
        t0 = src.start_time
        n = 0
        while local_clock() - t0 < 0.3:
            s, t = src.read(0.1)
            n += len(s)
        elapsed = local_clock() - t0
    assert abs(n - elapsed * RATE * 10) <= 0.005 * RATE * 10 + src._chunk_size
    assert n > 0.28 * RATE * 10


def test_labels_follow_loops(recording):
    path, _, labels = recording
    with ReplaySource(path, speed=0, loop=True, chunk=300) as src:
        got, stamps = [], []
        for _ in range(5):
            s, t = src.read(0.1)
            got.append(src.last_labels)
            stamps.append(t)
        stamps = np.concatenate(stamps)
        expected = np.tile(labels, 2)[:1500]
        np.testing.assert_array_equal(np.concatenate(got), expected)
        np.testing.assert_array_equal(src.labels_for(stamps), expected)
        assert not src.finished


def test_replays_emg2pose_dataset_file(shared_dir):
    path = shared_dir / "data" / "emg2pose" / "test_data.hdf5"
    with open_source(f"replay://{path}?speed=inf") as src:
        assert src.info.n_channels == 16 and src.info.sample_rate == 2000.0
        samples, _ = _read_all(src)
        assert samples.shape == (100, 16)
        with pytest.raises(SourceError, match="no labels"):
            src.labels_for(np.zeros(1))


def test_bad_uri_and_file(tmp_path):
    with pytest.raises(ValueError, match="unknown replay:// parameter"):
        open_source("replay://x.h5?sped=2")
    with pytest.raises(ValueError, match="speed must be"):
        open_source("replay://x.h5?speed=-1")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"replay://{tmp_path / 'missing.h5'}").open()
    empty = tmp_path / "empty.h5"
    RecordingWriter(empty, StreamInfo("e", 2, 100.0)).close()
    with pytest.raises(SourceError, match="no samples"):
        ReplaySource(empty).open()


def test_big_files_are_read_in_blocks(recording, monkeypatch):
    import emgstream.sources.replay as replay

    path, emg, labels = recording
    monkeypatch.setattr(replay, "_BLOCK_BYTES", 3 * 4 * 128)   # 128-sample blocks
    with ReplaySource(path, speed=0, loop=True, chunk=100) as src:
        samples = np.concatenate([src.read(0.1)[0] for _ in range(25)])
        stamps = np.arange(2500) / RATE + src.start_time
        np.testing.assert_array_equal(src.labels_for(stamps), np.tile(labels, 3)[:2500])
    np.testing.assert_array_equal(samples, np.tile(emg, (3, 1))[:2500])
