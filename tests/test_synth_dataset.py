"""Synthetic datasets on disk: emg2pose schema with labels, the unseen split, the CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import WindowDataset, WindowSpec, read_recording
from emgstream.synth import (CLASS_NAMES, GESTURES, UNSEEN_GESTURES, SynthConfig,
                             generate_session, make_users, write_dataset)

CONFIG = SynthConfig(n_channels=8, sample_rate=1000.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return write_dataset(root, n_users=2, n_sessions=2, duration_s=6.0, config=CONFIG,
                         seed=9, unseen_duration_s=12.0)


def test_files_and_schema(files):
    assert [p.name for p in files[:4]] == [
        "synth000_s00_gestures.hdf5", "synth000_s00_unseen.hdf5",
        "synth000_s01_gestures.hdf5", "synth000_s01_unseen.hdf5"]
    assert len(files) == 8
    with h5py.File(files[0], "r") as f:
        g = f["emg2pose"]
        assert g["timeseries"].dtype.names == ("time", "joint_angles", "emg")
        assert g["timeseries"].dtype["joint_angles"].shape == (20,)
        assert g.attrs["num_channels"] == 8 and g.attrs["sample_rate"] == 1000.0
    rec = read_recording(files[0])
    assert rec.emg.shape == (6000, 8) and rec.emg.dtype == np.float32
    assert rec.joint_angles.shape == (6000, 20)
    assert rec.labels.dtype == np.int16 and rec.class_names == list(CLASS_NAMES)
    assert rec.meta["user"] == "synth000" and rec.meta["session"] == "0"
    assert rec.meta["stage"] == "gestures" and rec.meta["side"] == "right"
    np.testing.assert_allclose(np.diff(rec.time), 1e-3, atol=1e-9)
    assert any("seed=9" in text for _, text in rec.markers)


def test_file_equals_generated_session(files):
    user = make_users(2, seed=9, config=CONFIG)[1]
    expected = generate_session(user, 1, 6.0)
    rec = read_recording(files[6])  # synth001, session 1, gestures
    np.testing.assert_array_equal(rec.emg, expected.emg)
    np.testing.assert_array_equal(rec.labels, expected.labels)
    np.testing.assert_array_equal(rec.joint_angles, expected.pose)


def test_unseen_gestures_never_in_the_training_split(files):
    unseen = [CLASS_NAMES.index(g) for g in UNSEEN_GESTURES]
    training = [p for p in files if read_recording(p).meta["stage"] == "gestures"]
    held_out = [p for p in files if read_recording(p).meta["stage"] == "unseen"]
    assert len(training) == len(held_out) == 4
    for path in training:
        assert not np.isin(read_recording(path).labels, unseen).any()
    assert any(np.isin(read_recording(p).labels, unseen).any() for p in held_out)
    # and a dataset over everything that excludes them never yields one
    ds = WindowDataset(files, WindowSpec(100, 50), exclude=UNSEEN_GESTURES, pure=False)
    assert not np.isin(ds.window_labels, unseen).any()
    assert set(np.unique(ds.window_labels)) <= set(range(len(GESTURES)))


def test_existing_files_are_not_overwritten(files):
    with pytest.raises(FileExistsError):
        write_dataset(files[0].parent, 1, 1, 1.0, CONFIG, seed=9)


def test_cli_synth(tmp_path):
    result = CliRunner().invoke(main, ["synth", "-o", str(tmp_path), "--users", "1",
                                       "--sessions", "1", "--duration", "2", "--channels", "4",
                                       "--rate", "500", "--seed", "2"])
    assert result.exit_code == 0, result.output
    rec = read_recording(tmp_path / "synth000_s00_gestures.hdf5")
    assert rec.emg.shape == (1000, 4) and rec.sample_rate == 500.0
    again = CliRunner().invoke(main, ["synth", "-o", str(tmp_path), "--users", "1",
                                      "--sessions", "1", "--duration", "2"])
    assert again.exit_code != 0 and "exists" in again.output


def test_cli_import_3dc(tmp_path, shared_dir):
    from emgstream.io import load_3dc

    root = shared_dir / "data" / "3dc"
    result = CliRunner().invoke(main, ["import", "3dc", "--root", str(root), "-o",
                                       str(tmp_path), "--participants", "2"])
    assert result.exit_code == 0, result.output
    written = sorted(tmp_path.glob("*.hdf5"))
    assert len(written) == 8  # 2 blocks x 4 cycles
    rec = read_recording(tmp_path / "Participant2_test_cycle1.hdf5")
    original = next(s for s in load_3dc(root, [2]) if s.session == "test/cycle1")
    np.testing.assert_array_equal(rec.emg, original.emg)
    np.testing.assert_array_equal(rec.labels, original.labels)
    assert rec.class_names == original.class_names and rec.sample_rate == 1000.0
    assert rec.meta["user"] == "Participant2" and rec.meta["session"] == "test/cycle1"
    bad = CliRunner().invoke(main, ["import", "3dc", "--root", str(root), "-o",
                                    str(tmp_path), "--participants", "x"])
    assert bad.exit_code != 0 and "participants" in bad.output
