"""WindowDataset: label policy, exclusion, IK skipping, stream boundaries, jitter, the live
filters, rotation augmentation, HDF5 files through a multi-worker DataLoader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from emgstream.dsp import filter_offline
from emgstream.io import (ChannelRotation, Compose, LabelledStream, WindowDataset, WindowSpec,
                          read_recording, rotate_channels)
from emgstream.modelfile import Preprocessing

NAMES = ["rest", "fist", "unseen"]


def _stream(labels, channels=3, rate=100.0, pose=None, user="u0", seed=0):
    labels = np.asarray(labels, np.int16)
    emg = np.random.default_rng(seed).normal(size=(len(labels), channels)).astype(np.float32)
    return LabelledStream(emg=emg, sample_rate=rate, labels=labels, class_names=NAMES,
                          pose=pose, user=user, session="0")


def _starts(ds):
    return [int(s) for s in ds._index[:, 1]]


def test_label_is_last_sample_and_pure_windows_only():
    labels = [0] * 10 + [1] * 10
    ds = WindowDataset([_stream(labels)], WindowSpec(4, 1))
    # pure windows: starts 0..6 (rest) and 10..16 (fist)
    assert _starts(ds) == list(range(0, 7)) + list(range(10, 17))
    assert [ds[i]["label"] for i in range(len(ds))] == [0] * 7 + [1] * 7
    mixed = WindowDataset([_stream(labels)], WindowSpec(4, 1), pure=False)
    assert len(mixed) == 17
    assert mixed[7]["label"] == 1 and mixed[6]["label"] == 0  # last sample decides


def test_unlabelled_and_excluded_samples_never_in_a_window():
    labels = [0] * 6 + [-1] * 4 + [1] * 6 + [2] * 6 + [1] * 6
    ds = WindowDataset([_stream(labels)], WindowSpec(3, 1), pure=False, exclude=["unseen"])
    for i in range(len(ds)):
        start = _starts(ds)[i]
        window = np.asarray(labels[start:start + 3])
        assert 2 not in window and window[-1] >= 0
    assert 2 not in ds.window_labels
    assert len(ds) > 0
    with pytest.raises(ValueError, match="not among"):
        WindowDataset([_stream(labels)], WindowSpec(3, 1), exclude=["moonwalk"])


def test_excluded_class_is_dropped_from_class_names_and_labels_renumbered():
    ds = WindowDataset([_stream([0] * 5 + [1] * 5 + [2] * 5)], WindowSpec(3, 1),
                       exclude=["fist"])
    assert ds.class_names == ["rest", "unseen"]
    assert sorted(set(ds.window_labels)) == [0, 1]
    assert ds[len(ds) - 1]["label"] == 1  # the "unseen" windows at the end


def test_windows_never_cross_streams_and_users_are_indexed():
    a = _stream([1] * 10, user="alice")
    b = _stream([1] * 10, user="bob", seed=1)
    ds = WindowDataset([a, b], WindowSpec(5, 5))
    assert len(ds) == 4  # 2 per stream, none straddling
    assert ds.users == ["alice", "bob"]
    assert [ds[i]["user"] for i in range(4)] == [0, 0, 1, 1]
    np.testing.assert_array_equal(ds[2]["emg"], b.emg[0:5].T)


def test_ik_failures_are_skipped_when_pose_is_delivered():
    pose = np.full((20, 20), 0.3)
    pose[12] = 0.0  # one IK failure
    s = _stream([1] * 20, pose=pose)
    ds = WindowDataset([s], WindowSpec(4, 1))
    assert ds.with_pose
    assert all(not (st <= 12 < st + 4) for st in _starts(ds))
    item = ds[0]
    assert item["pose"].shape == (20, 4) and item["pose"].dtype == np.float32
    no_pose = WindowDataset([s], WindowSpec(4, 1), with_pose=False)
    assert "pose" not in no_pose[0] and len(no_pose) == 17


def test_same_filter_as_live_path():
    rate = 1000.0
    s = _stream([0] * 3000, channels=4, rate=rate)
    pre = Preprocessing(sample_rate=rate, n_channels=4, window=200, hop=50)
    ds = WindowDataset([s], WindowSpec.from_preprocessing(pre), pre)
    expected = filter_offline(s.emg, rate, pre)
    start = _starts(ds)[7]
    np.testing.assert_array_equal(ds[7]["emg"], expected[start:start + 200].T)
    assert ds[7]["emg"].dtype == np.float32 and ds[7]["emg"].shape == (4, 200)
    bad = Preprocessing(sample_rate=2000.0, n_channels=4, window=200, hop=50)
    with pytest.raises(ValueError, match="2000"):
        WindowDataset([s], WindowSpec(200, 50), bad)


def test_jitter_stays_valid_and_is_reproducible():
    labels = [0] * 50 + [1] * 50
    ds = WindowDataset([_stream(labels)], WindowSpec(10, 10, jitter=4), seed=3)
    first = [ds[i]["emg"] for i in range(len(ds))]
    again = [ds[i]["emg"] for i in range(len(ds))]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    emg = ds._entries[0].source.emg
    moved = 0
    for i, nominal in enumerate(_starts(ds)):
        start = next(s for s in range(len(emg)) if np.array_equal(emg[s:s + 10].T, first[i]))
        assert abs(start - nominal) <= 4
        assert len(set(labels[start:start + 10])) == 1  # still pure
        assert ds[i]["label"] == labels[start + 9]
        moved += start != nominal
    assert moved > 0
    ds.set_epoch(1)
    assert any(not np.array_equal(ds[i]["emg"], first[i]) for i in range(len(ds)))


def test_rotation_moves_channels_around_the_ring():
    emg = np.arange(12, dtype=np.float32).reshape(4, 3)  # (channels, time)
    np.testing.assert_array_equal(rotate_channels(emg, 1)[1], emg[0])
    np.testing.assert_array_equal(rotate_channels(emg, 1)[0], emg[3])
    np.testing.assert_array_equal(rotate_channels(emg, -1)[3], emg[0])
    np.testing.assert_array_equal(rotate_channels(rotate_channels(emg, 1), -1), emg)
    transform = ChannelRotation(seed=0)
    seen = set()
    for _ in range(60):
        out = transform({"emg": emg, "label": 1})["emg"]
        shift = next(k for k in (-1, 0, 1) if np.array_equal(out, np.roll(emg, k, axis=0)))
        seen.add(shift)
    assert seen == {-1, 0, 1}
    twice = Compose(ChannelRotation((1,)), ChannelRotation((1,)))
    np.testing.assert_array_equal(twice({"emg": emg})["emg"], np.roll(emg, 2, axis=0))


def test_mismatched_streams_and_empty_results_are_refused():
    with pytest.raises(ValueError, match="ch @"):
        WindowDataset([_stream([0] * 10), _stream([0] * 10, channels=4)], WindowSpec(4, 1))
    with pytest.raises(ValueError, match="no window"):
        WindowDataset([_stream([-1] * 10)], WindowSpec(4, 1))
    with pytest.raises(ValueError, match="window"):
        WindowSpec(0, 1)


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    from emgstream.synth import SynthConfig, write_dataset

    root = tmp_path_factory.mktemp("synth")
    config = SynthConfig(n_channels=8, sample_rate=1000.0)
    return write_dataset(root, n_users=2, n_sessions=1, duration_s=8.0, config=config, seed=4)


def test_hdf5_files_lazily_per_worker_through_dataloader(synth_files):
    torch = pytest.importorskip("torch")
    pre = Preprocessing(sample_rate=1000.0, n_channels=8, window=100, hop=100)
    ds = WindowDataset(synth_files, WindowSpec(100, 100), pre)
    assert ds.with_pose and ds._cache == {}
    direct = [ds[i] for i in range(len(ds))]
    pickle.dumps(ds)  # what a spawned worker receives: no h5py handle, no file cache
    assert pickle.loads(pickle.dumps(ds))._cache == {}
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, shuffle=False)
    batches = list(loader)
    emg = torch.cat([b["emg"] for b in batches]).numpy()
    assert emg.shape == (len(ds), 8, 100)
    np.testing.assert_array_equal(emg, np.stack([d["emg"] for d in direct]))
    np.testing.assert_array_equal(torch.cat([b["label"] for b in batches]).numpy(),
                                  [d["label"] for d in direct])
    np.testing.assert_array_equal(torch.cat([b["pose"] for b in batches]).numpy(),
                                  np.stack([d["pose"] for d in direct]))
    assert set(torch.cat([b["user"] for b in batches]).tolist()) == {0, 1}
    # the windows are the filtered file, sliced
    rec = read_recording(synth_files[0])
    filtered = filter_offline(rec.emg, 1000.0, pre)
    np.testing.assert_array_equal(direct[0]["emg"], filtered[_starts(ds)[0]:][:100].T)


def test_emg2pose_dataset_file_loads_unlabelled_with_pose(shared_dir):
    path = shared_dir / "data" / "emg2pose" / "test_data.hdf5"
    rec = read_recording(path)
    with pytest.raises(ValueError, match="no window"):
        WindowDataset([path], WindowSpec(20, 10))  # no labels in Meta's files
    ds = WindowDataset([path], WindowSpec(20, 10), labelled=False)
    assert len(ds) == 9 and ds.with_pose and ds.class_names == []
    item = ds[3]
    assert item["label"] == -1 and item["user"] == 0
    np.testing.assert_array_equal(item["emg"], rec.emg[30:50].T)
    np.testing.assert_array_equal(item["pose"], rec.joint_angles[30:50].T.astype(np.float32))


def test_bounded_file_cache_keeps_the_most_recent_files(synth_files):
    pre = Preprocessing(sample_rate=1000.0, n_channels=8, window=100, hop=100)
    unbounded = WindowDataset(synth_files, WindowSpec(100, 100), pre)
    bounded = WindowDataset(synth_files, WindowSpec(100, 100), pre, max_cached_streams=1)
    streams = bounded._index[:, 0]
    first, last = np.flatnonzero(streams == 0)[0], np.flatnonzero(streams == 1)[0]
    np.testing.assert_array_equal(bounded[first]["emg"], unbounded[first]["emg"])
    assert list(bounded._cache) == [0]
    np.testing.assert_array_equal(bounded[last]["emg"], unbounded[last]["emg"])
    assert list(bounded._cache) == [1]  # the older file was dropped
    np.testing.assert_array_equal(bounded[first]["emg"], unbounded[first]["emg"])  # re-read
    unbounded[last]
    assert sorted(unbounded._cache) == [0, 1]
    with pytest.raises(ValueError, match="max_cached_streams must be None or >= 1, got 0"):
        WindowDataset(synth_files, WindowSpec(100, 100), pre, max_cached_streams=0)
