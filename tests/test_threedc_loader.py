"""The 3DC loader: on the shared files, and on small fake trees for the error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emgstream.io import LabelledStream, THREEDC_CLASSES, load_3dc


def _fake_tree(root: Path, participant: int = 1, rows: int = 7, blocks=("train", "test")):
    """A tiny 3DC-layout tree; file (cycle c, class k) holds the value 100*c + k."""
    for block in blocks:
        folder = root / f"Participant{participant}" / block / "EMG"
        folder.mkdir(parents=True)
        for c in range(4):
            for k in range(11):
                value = 100 * c + k + (1000 if block == "test" else 0)
                data = np.full((rows + k, 10), value, dtype=int)
                np.savetxt(folder / f"3dc_EMG_gesture_{c}_{k}.txt", data, fmt="%d",
                           delimiter=",")
    return root


def test_shared_participant_streams(shared_dir):
    root = shared_dir / "data" / "3dc"
    streams = load_3dc(root, participants=[2])
    assert len(streams) == 8  # 2 blocks x 4 cycles
    assert len(THREEDC_CLASSES) == 11
    for s in streams:
        assert isinstance(s, LabelledStream)
        assert s.sample_rate == 1000.0
        assert s.n_channels == 10
        assert s.emg.dtype == np.float32
        assert s.user == "Participant2"
        assert s.class_names == list(THREEDC_CLASSES)
        # labels run 0..10 in class order, each a single contiguous run
        changes = np.flatnonzero(np.diff(s.labels)) + 1
        runs = np.split(s.labels, changes)
        assert [int(r[0]) for r in runs] == list(range(11))
        assert 11 * 1000 < len(s.labels) < 11 * 8000  # about 5 s a gesture
    assert [s.session for s in streams] == [f"{b}/cycle{c}" for b in ("train", "test")
                                            for c in range(4)]


def test_shared_blocks_are_separate(shared_dir):
    root = shared_dir / "data" / "3dc"
    train = load_3dc(root, participants=["Participant3"], blocks=("train",))
    test = load_3dc(root, participants=[3], blocks=("test",))
    assert {s.meta["block"] for s in train} == {"train"}
    assert {s.meta["block"] for s in test} == {"test"}
    # same cycle index in the two blocks is a different recording
    assert not np.array_equal(train[0].emg[:1000], test[0].emg[:1000])
    # the file contents come through unchanged (integer counts)
    first = np.loadtxt(root / "Participant3" / "train" / "EMG" / "3dc_EMG_gesture_0_0.txt",
                       delimiter=",")
    np.testing.assert_array_equal(train[0].emg[:len(first)], first.astype(np.float32))


def test_fake_tree_order_and_spans(tmp_path):
    root = _fake_tree(tmp_path)
    streams = load_3dc(root)
    assert len(streams) == 8
    s = streams[5]  # test block, cycle 1
    assert s.session == "test/cycle1"
    for k, (a, b) in enumerate(s.meta["gesture_spans"]):
        assert b - a == 7 + k
        assert (s.labels[a:b] == k).all()
        assert (s.emg[a:b] == 1000 + 100 + k).all()


def test_participant_selection_errors(tmp_path):
    root = _fake_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="Participant4"):
        load_3dc(root, participants=[4])
    with pytest.raises(ValueError, match="blocks"):
        load_3dc(root, blocks=("val",))
    with pytest.raises(ValueError, match="participant"):
        load_3dc(root, participants=["bob"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_3dc(tmp_path / "nowhere")


def test_missing_and_malformed_files(tmp_path):
    root = _fake_tree(tmp_path)
    folder = root / "Participant1" / "train" / "EMG"
    (folder / "3dc_EMG_gesture_2_7.txt").unlink()
    with pytest.raises(FileNotFoundError, match="3dc_EMG_gesture_2_7"):
        load_3dc(root)
    # the other block still loads on its own
    assert len(load_3dc(root, blocks=("test",))) == 4

    np.savetxt(folder / "3dc_EMG_gesture_2_7.txt", np.zeros((5, 9), int), fmt="%d",
               delimiter=",")
    with pytest.raises(ValueError, match="9 columns, expected 10"):
        load_3dc(root, blocks=("train",))

    (folder / "3dc_EMG_gesture_2_7.txt").write_text("1,2,3,4,5,6,7,8,9,10\n1,2,3\n")
    with pytest.raises(ValueError, match="comma-separated integers"):
        load_3dc(root, blocks=("train",))

    (folder / "3dc_EMG_gesture_2_7.txt").write_text("1,2,3,4,5,6,7,8,9,x\n")
    with pytest.raises(ValueError, match="gesture_2_7"):
        load_3dc(root, blocks=("train",))
