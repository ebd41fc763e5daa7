"""Recording round trip, validation of untrusted files, SWMR reads, emg2pose compatibility."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from emgstream.io import Recording, RecordingError, RecordingWriter, read_recording
from emgstream.sources import DroppedSpan, FaultEvent, StreamInfo

CLASSES = ["rest", "fist", "open"]


def _info(channels=4, rate=500.0):
    return StreamInfo("test", channels, rate, kind="sim", device_id="dev-1")


def _chunks(rng, total, channels, max_chunk=37, t0=100.0, rate=500.0):
    i = 0
    while i < total:
        n = int(rng.integers(1, max_chunk))
        n = min(n, total - i)
        yield (rng.standard_normal((n, channels)).astype(np.float32) * 50,
               t0 + (i + np.arange(n)) / rate,
               rng.uniform(-1, 1, (n, 20)),
               rng.integers(-1, len(CLASSES), n).astype(np.int16))
        i += n


def test_round_trip_all_fields(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rec.h5"
    parts = list(_chunks(rng, 1234, 4))
    with RecordingWriter(path, _info(), user="u7", session="s3", stage="fist", side="left",
                         with_pose=True, class_names=CLASSES,
                         filters={"bandpass": [20, 450]}) as w:
        for samples, ts, pose, lab in parts:
            w.append(samples, ts, joint_angles=pose, labels=lab)
        w.add_marker(100.5, "cue: fist ✊")
        w.add_dropped(101.0, 7)
        w.add_fault(101.5, "corrupt_frames", 2)
        assert "1234 samples" in repr(w)
    rec = read_recording(path)
    assert isinstance(rec, Recording)
    np.testing.assert_array_equal(rec.emg, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(rec.time, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(rec.joint_angles, np.concatenate([p[2] for p in parts]))
    np.testing.assert_array_equal(rec.labels, np.concatenate([p[3] for p in parts]))
    assert rec.emg.dtype == np.float32 and rec.labels.dtype == np.int16
    assert rec.class_names == CLASSES
    assert rec.markers == [(100.5, "cue: fist ✊")]
    assert rec.dropped == [DroppedSpan(101.0, 7)]
    assert rec.faults == [FaultEvent(101.5, "corrupt_frames", 2)]
    assert rec.sample_rate == 500.0 and rec.n_channels == 4
    m = rec.meta
    assert (m["user"], m["session"], m["stage"], m["side"]) == ("u7", "s3", "fist", "left")
    assert m["num_channels"] == 4 and m["filename"] == "rec"
    assert m["device"]["device_id"] == "dev-1" and m["filters"] == {"bandpass": [20, 450]}
    assert m["complete"] is True and m["format_version"] == 2
    # start/end are Unix seconds of the first and last sample
    assert m["end"] - m["start"] == pytest.approx(rec.time[-1] - rec.time[0], abs=1e-6)
    assert "1234 samples" in repr(rec) and "pose" in repr(rec)
    stream = rec.to_stream()
    assert stream.n_channels == 4 and stream.user == "u7"


def test_layout_is_emg2pose(tmp_path):
    path = tmp_path / "rec.h5"
    with RecordingWriter(path, _info(16, 2000.0), with_pose=True) as w:
        w.append(np.ones((10, 16), np.float32), np.arange(10) / 2000, np.zeros((10, 20)))
    with h5py.File(path, "r") as f:
        ts = f["emg2pose/timeseries"]
        assert ts.dtype.names == ("time", "joint_angles", "emg")
        assert ts.dtype["time"] == np.float64
        assert ts.dtype["joint_angles"].shape == (20,)
        assert ts.dtype["emg"].shape == (16,) and ts.dtype["emg"].base == np.float32
        assert ts.maxshape == (None,) and ts.chunks is not None
        attrs = f["emg2pose"].attrs
        assert isinstance(attrs["sample_rate"], np.floating)
        assert isinstance(attrs["num_channels"], np.integer)
        json.loads(f["emgstream"].attrs["device"])


def test_subrange_read(tmp_path):
    path = tmp_path / "rec.h5"
    x = np.arange(400, dtype=np.float32).reshape(100, 4)
    with RecordingWriter(path, _info(), class_names=CLASSES) as w:
        w.append(x, np.arange(100.0), labels=np.arange(100) % 3)
    rec = read_recording(path, start=10, stop=30)
    np.testing.assert_array_equal(rec.emg, x[10:30])
    np.testing.assert_array_equal(rec.labels, np.arange(10, 30) % 3)
    assert rec.meta["total_samples"] == 100 and rec.meta["start_index"] == 10
    with pytest.raises(RecordingError, match="outside"):
        read_recording(path, start=50, stop=200)


def test_refuses_existing_file(tmp_path):
    path = tmp_path / "rec.h5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        RecordingWriter(path, _info())
    assert path.read_bytes() == b"precious"
    with RecordingWriter(path, _info(), overwrite=True) as w:
        w.append(np.zeros((3, 4), np.float32), np.arange(3.0))
    assert read_recording(path).n_samples == 3


def test_bad_chunks_rejected_nothing_lost(tmp_path):
    path = tmp_path / "rec.h5"
    good = np.ones((50, 4), np.float32)
    with RecordingWriter(path, _info(), class_names=CLASSES) as w:
        w.append(good, np.arange(50.0))
        w.flush()
        bad = good.copy()
        bad[3, 2] = np.nan
        with pytest.raises(RecordingError, match=r"non-finite sample at row 3, channel 2"):
            w.append(bad, np.arange(50.0, 100.0))
        with pytest.raises(RecordingError, match=r"shape \(n, 4\), got \(5, 3\)"):
            w.append(np.ones((5, 3), np.float32), np.arange(5.0))
        with pytest.raises(RecordingError, match="5 timestamps"):
            w.append(np.ones((5, 4), np.float32), np.arange(4.0))
        with pytest.raises(RecordingError, match=r"labels must lie in \[-1, 2\]"):
            w.append(np.ones((2, 4), np.float32), np.arange(2.0), labels=np.array([0, 3]))
        with pytest.raises(RecordingError, match="with_pose=False"):
            w.append(np.ones((2, 4), np.float32), np.arange(2.0), joint_angles=np.zeros((2, 20)))
        w.append(good, np.arange(50.0, 100.0))
    rec = read_recording(path)
    assert rec.n_samples == 100 and np.isfinite(rec.emg).all()
    assert (rec.labels == -1).all()


def test_pose_required_when_declared(tmp_path):
    with RecordingWriter(tmp_path / "p.h5", _info(), with_pose=True) as w:
        with pytest.raises(RecordingError, match="no joint_angles"):
            w.append(np.ones((2, 4), np.float32), np.arange(2.0))


def _emg2pose_fixture(path, n=300, channels=16, with_pose=True):
    """A file as Meta's tooling writes it: contiguous compound dataset, no extras."""
    rng = np.random.default_rng(1)
    fields = [("time", "<f8")]
    if with_pose:
        fields.append(("joint_angles", "<f8", (20,)))
    fields.append(("emg", "<f4", (channels,)))
    data = np.zeros(n, np.dtype(fields))
    data["time"] = 1670313313.0 + np.arange(n) / 2000
    data["emg"] = rng.standard_normal((n, channels))
    if with_pose:
        data["joint_angles"] = rng.uniform(-1, 1, (n, 20))
    with h5py.File(path, "w") as f:
        g = f.create_group("emg2pose")
        g.create_dataset("timeseries", data=data)
        g.attrs.update(filename="2022-x_left", session="2022-x", stage="Fingers", user="abc",
                       side="left", sample_rate=2000.0, num_channels=np.int64(channels),
                       start=data["time"][0], end=data["time"][-1])
    return data


def test_generated_emg2pose_file_loads_unchanged(tmp_path):
    path = tmp_path / "meta.hdf5"
    data = _emg2pose_fixture(path)
    before = path.read_bytes()
    rec = read_recording(path)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(rec.emg, data["emg"])
    np.testing.assert_array_equal(rec.joint_angles, data["joint_angles"])
    np.testing.assert_array_equal(rec.time, data["time"])
    assert rec.labels is None and rec.class_names == [] and rec.markers == []
    assert rec.meta["device"] is None and rec.meta["user"] == "abc"


def test_fields_read_by_name_not_position(tmp_path):
    path = tmp_path / "reordered.hdf5"
    dt = np.dtype([("emg", "<f4", (3,)), ("time", "<f8")])
    data = np.zeros(5, dt)
    data["emg"] = np.arange(15).reshape(5, 3)
    data["time"] = np.arange(5) + 0.5
    with h5py.File(path, "w") as f:
        f.create_group("emg2pose").create_dataset("timeseries", data=data)
        f["emg2pose"].attrs["sample_rate"] = 100.0
    rec = read_recording(path)
    np.testing.assert_array_equal(rec.emg, data["emg"])
    np.testing.assert_array_equal(rec.time, data["time"])
    assert rec.joint_angles is None


def test_shared_emg2pose_fixture(shared_dir):
    rec = read_recording(shared_dir / "data" / "emg2pose" / "test_data.hdf5")
    assert rec.emg.shape == (100, 16) and rec.emg.dtype == np.float32
    assert rec.joint_angles.shape == (100, 20)
    assert rec.sample_rate == 2000.0 and rec.meta["side"] == "right"
    assert rec.labels is None and rec.dropped == [] and rec.meta["filters"] is None


@pytest.mark.parametrize("corrupt, message", [
    ("not_hdf5", "cannot open"),
    ("no_group", "no group 'emg2pose'"),
    ("no_emg", "no field 'emg'"),
    ("bad_pose", "joint_angles"),
    ("bad_rate", "sample_rate"),
    ("channel_mismatch", "num_channels=8"),
    ("nan", "non-finite 'emg' at sample 2"),
    ("labels_range", r"labels must lie in \[-1, 1\]"),
    ("bad_device_json", "not JSON"),
])
def test_malformed_files_clear_errors(tmp_path, corrupt, message):
    path = tmp_path / "bad.h5"
    if corrupt == "not_hdf5":
        path.write_bytes(b"\x00" * 100)
    else:
        with h5py.File(path, "w") as f:
            if corrupt == "no_group":
                f.create_group("other")
            else:
                fields = [("time", "<f8")]
                if corrupt == "bad_pose":
                    fields.append(("joint_angles", "<f8", (7,)))
                if corrupt != "no_emg":
                    fields.append(("emg", "<f4", (4,)))
                data = np.zeros(5, fields)
                if corrupt == "nan":
                    data["emg"][2, 1] = np.nan
                g = f.create_group("emg2pose")
                g.create_dataset("timeseries", data=data)
                g.attrs["sample_rate"] = -1.0 if corrupt == "bad_rate" else 100.0
                g.attrs["num_channels"] = 8 if corrupt == "channel_mismatch" else 4
                ours = f.create_group("emgstream")
                if corrupt == "labels_range":
                    lab = ours.create_dataset("labels", data=np.array([0, 1, 5, 0, 0], "i2"))
                    lab.attrs["class_names"] = json.dumps(["a", "b"])
                if corrupt == "bad_device_json":
                    ours.attrs["device"] = "{not json"
    with pytest.raises(RecordingError, match=message):
        read_recording(path)


def test_missing_file():
    with pytest.raises(RecordingError, match="does not exist"):
        read_recording("/nonexistent/rec.h5")


def test_another_process_reads_what_was_flushed_while_writing(tmp_path):
    path = tmp_path / "live.h5"
    w = RecordingWriter(path, _info(), flush_interval=0.3)
    try:
        w.append(np.ones((100, 4), np.float32), np.arange(100.0))
        w.flush()
        code = textwrap.dedent(f"""
            from emgstream.io import read_recording
            rec = read_recording({str(path)!r})
            print(rec.n_samples, rec.meta["complete"])
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        assert out == ["100", "False"]
        w.append(np.ones((50, 4), np.float32), np.arange(100.0, 150.0))
        time.sleep(0.35)
        w.maybe_flush()   # what a recorder loop waiting on a stalled source calls
        # a fresh reader sees the rows flushed by time alone
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        assert out == ["150", "False"]
    finally:
        w.close()
    assert read_recording(path).meta["complete"] is True
