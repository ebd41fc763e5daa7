"""Recordings are untrusted: one crafted HDF5 file per attack, each refused in one line
before the reader touches another file or allocates what the file does not hold."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from emgstream.io import RecordingError, read_recording

_ROW = np.dtype([("time", "<f8"), ("emg", "<f4", (4,))])


def _rows(n: int = 10) -> np.ndarray:
    rows = np.zeros(n, _ROW)
    rows["time"] = np.arange(n) / 100.0
    rows["emg"] = 7.0
    return rows


def _group(f: h5py.File) -> h5py.Group:
    g = f.create_group("emg2pose")
    g.attrs["sample_rate"] = 100.0
    g.attrs["num_channels"] = 4
    return g


def _refused(path, message: str) -> None:
    with pytest.raises(RecordingError, match=message) as info:
        read_recording(path)
    assert "\n" not in str(info.value), str(info.value)


@pytest.fixture
def other(tmp_path, watch_reads):
    """A valid recording elsewhere, the file the crafted ones point at, watched for reads."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("timeseries", data=_rows())
    return watch_reads(path)


def _external_link(path):
    with h5py.File(path, "w") as f:
        f["emg2pose"] = h5py.ExternalLink("other.h5", "/emg2pose")


def _virtual(path):
    layout = h5py.VirtualLayout(shape=(10,), dtype=_ROW)
    layout[:] = h5py.VirtualSource("other.h5", "emg2pose/timeseries", shape=(10,), dtype=_ROW)
    with h5py.File(path, "w") as f:
        _group(f).create_virtual_dataset("timeseries", layout)


def _external_storage(path):
    # the raw rows of other.h5's dataset, at their offset in that file
    with h5py.File(path.parent / "other.h5", "r") as f:
        offset = f["emg2pose/timeseries"].id.get_offset()
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("timeseries", shape=(10,), dtype=_ROW,
                                 external=[("other.h5", offset, 10 * _ROW.itemsize)])


_POINTERS = {
    "external link": (_external_link, r"'emg2pose' is an external link to 'other\.h5'"),
    "virtual dataset": (_virtual, r"'emg2pose/timeseries' is a virtual dataset mapping "
                                  r"\['other\.h5'\]"),
    "external storage": (_external_storage, r"'emg2pose/timeseries' keeps its data in the "
                                            r"external file\(s\) \['other\.h5'\]"),
}


@pytest.mark.parametrize("kind", list(_POINTERS))
def test_pointers_to_other_files_really_read_them(tmp_path, monkeypatch, other, kind):
    """The attacks are real: HDF5 itself follows each pointer into other.h5."""
    monkeypatch.chdir(tmp_path)  # external storage is resolved from the working directory
    path = tmp_path / "crafted.h5"
    _POINTERS[kind][0](path)
    other.arm()
    with h5py.File(path, "r") as f:
        assert (f["emg2pose/timeseries"][()]["emg"] == 7.0).all()
    assert other.was_read


@pytest.mark.parametrize("kind", list(_POINTERS))
def test_pointers_to_other_files_refused_before_any_read(tmp_path, monkeypatch, other, kind):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "crafted.h5"
    _POINTERS[kind][0](path)
    other.arm()  # crafting may have read it
    _refused(path, _POINTERS[kind][1] + "; a recording must hold its data itself")
    assert not other.was_read


def test_soft_link_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("data", data=_rows())
        f["emg2pose/timeseries"] = h5py.SoftLink("/emg2pose/data")
    _refused(path, r"'emg2pose/timeseries' is a soft link to '/emg2pose/data'")


def test_declared_shape_beyond_the_file_refused(tmp_path):
    """A billion rows (24 GB) declared and never written: a 10 kB file."""
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("timeseries", shape=(10**9,), chunks=(1024,), dtype=_ROW)
    t0 = time.perf_counter()
    _refused(path, r"'emg2pose/timeseries' declares \(1000000000,\) rows of 24 bytes "
                   r"\(24000000000 bytes\) in a file of \d+ bytes")
    assert time.perf_counter() - t0 < 5.0


def test_huge_chunks_refused(tmp_path):
    """Ten rows in one gzip chunk of 4 M rows: reading row 0 would inflate 100 MB."""
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("timeseries", data=_rows(), maxshape=(None,),
                                 chunks=(1 << 22,), compression="gzip")
    _refused(path, r"'emg2pose/timeseries' has chunks of \(4194304,\) rows \(100663296 "
                   r"bytes\), more than 16777216")


def _with_extras(path, **extras):
    """A valid file plus ``extras``: attrs of emg2pose (``user=...``) or emgstream
    (``device=...``), or ``markers=`` / ``dropped=`` structured arrays."""
    with h5py.File(path, "w", libver="latest") as f:  # dense attributes: no 64 kB limit
        g = _group(f)
        g.create_dataset("timeseries", data=_rows())
        ours = f.create_group("emgstream")
        for key, value in extras.items():
            if key in ("markers", "dropped"):
                ours.create_dataset(key, data=value)
            elif key in ("device", "filters"):
                ours.attrs[key] = value
            else:
                g.attrs[key] = value


def test_absurdly_long_string_attribute_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    _with_extras(path, user="u" * (2 << 20))
    _refused(path, r"attribute emg2pose/'user' is 2097152 bytes, at most 1048576")


def test_absurdly_long_fixed_size_attribute_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    _with_extras(path, session=np.zeros(1 << 18, np.float64))  # 2 MiB
    _refused(path, r"attribute emg2pose/'session' is 2097152 bytes, at most 1048576")


def test_too_many_attributes_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    _with_extras(path, **{f"a{i}": i for i in range(300)})
    _refused(path, r"'emg2pose' has 302 attributes, at most 256")


def test_deeply_nested_json_attribute_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    _with_extras(path, device="[" * 100_000)
    _refused(path, r"attribute emgstream/device nests its JSON deeper than the parser follows")


def test_absurdly_long_string_field_refused(tmp_path):
    """One marker whose text field is 1 MB: the format's markers hold at most 1024 bytes."""
    path = tmp_path / "crafted.h5"
    markers = np.zeros(1, [("time", "<f8"), ("text", "S1000000")])
    _with_extras(path, markers=markers)
    _refused(path, r"field 'text' of 'emgstream/markers' holds strings of 1000000 bytes, "
                   r"at most 1024")


@pytest.mark.parametrize("name, dtype, message", [
    ("markers", [("time", "S8"), ("text", "S16")], r"emgstream/markers must be a 1-D compound"),
    ("markers", [("time", "<f8"), ("text", "<f8")], r"emgstream/markers must be a 1-D compound"),
    ("dropped", [("time", "<f8"), ("count", "<f8")], r"emgstream/dropped must be a 1-D compound"),
    ("dropped", [("time", "<f8"), ("count", "<i8", (3,))],
     r"emgstream/dropped must be a 1-D compound"),
])
def test_compound_fields_of_the_wrong_type_refused(tmp_path, name, dtype, message):
    path = tmp_path / "crafted.h5"
    _with_extras(path, **{name: np.zeros(2, dtype)})
    _refused(path, message)


def test_timeseries_fields_of_the_wrong_type_refused(tmp_path):
    path = tmp_path / "crafted.h5"
    rows = np.zeros(3, [("time", "<f8"), ("emg", "S16")])
    with h5py.File(path, "w") as f:
        _group(f).create_dataset("timeseries", data=rows)
    _refused(path, r"field 'emg' must be a numeric \(channels,\) array")


def test_a_real_recording_passes_every_check(tmp_path):
    """The bounds leave our own files alone: labels, markers, dropped spans, device JSON."""
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    path = tmp_path / "ours.h5"
    info = StreamInfo("band", 4, 100.0, channel_names=[f"ch{i}" for i in range(4)])
    with RecordingWriter(path, info, user="u0", class_names=["rest", "fist"]) as w:
        w.append(np.ones((50, 4), np.float32), np.arange(50) / 100.0,
                 labels=np.ones(50, np.int16))
        w.add_marker(0.1, "x" * 1023)
        w.add_dropped(0.2, 3)
    rec = read_recording(path)
    assert rec.n_samples == 50 and rec.markers[0][1] == "x" * 1023
    assert json.dumps(rec.meta["device"]["channel_names"]) == '["ch0", "ch1", "ch2", "ch3"]'
