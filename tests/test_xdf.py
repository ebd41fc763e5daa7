"""XDF: a file this test writes byte by byte (as LabRecorder lays one out) read through
``read_xdf``, ``replay://`` and ``import xdf``; our HDF5 -> ``to-xdf`` -> pyxdf and back; and
crafted files refused with one line before pyxdf sees them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingError, RecordingWriter, read_recording, read_xdf
from emgstream.sources import StreamInfo, open_source

_OFFSET = 0.25  # the recording host's clock is this far ahead of the amplifier's


def _n(value: int) -> bytes:
    """XDF variable-length integer, in the smallest width LabRecorder would use."""
    return bytes((1, value)) if value < 256 else b"\x04" + struct.pack("<I", value)


def _chunk(tag: int, body: bytes, stream: int | None = None) -> bytes:
    head = struct.pack("<H", tag) + (b"" if stream is None else struct.pack("<I", stream))
    return _n(len(head) + len(body)) + head + body


def _header(name, kind, channels, rate, fmt, labels=(), unit="") -> bytes:
    desc = "".join(f"<channel><label>{label}</label><unit>{unit}</unit></channel>"
                   for label in labels)
    return (f"<?xml version='1.0'?><info><name>{name}</name><type>{kind}</type>"
            f"<channel_count>{channels}</channel_count><nominal_srate>{rate}</nominal_srate>"
            f"<channel_format>{fmt}</channel_format><source_id>{name}-1</source_id>"
            f"<desc><acquisition><manufacturer>acme</manufacturer></acquisition>"
            f"<channels>{desc}</channels></desc></info>").encode()


def _int16_samples(values: np.ndarray, first_stamp: float) -> bytes:
    """Only the first sample stamped; the rest follow at the nominal rate (flag 0)."""
    out = [_n(len(values)), b"\x08", struct.pack("<d", first_stamp),
           values[0].astype("<i2").tobytes()]
    out += [b"\x00" + row.astype("<i2").tobytes() for row in values[1:]]
    return b"".join(out)


def _strings(markers) -> bytes:
    out = [_n(len(markers))]
    for t, text in markers:
        out += [b"\x08", struct.pack("<d", t), _n(len(text.encode())), text.encode()]
    return b"".join(out)


_AMP = np.arange(600 * 3, dtype=np.int16).reshape(600, 3) % 997 - 400
_MARKERS = [(10.4, "start ✋"), (11.7, "stop")]


def _labrecorder_file(path):
    """An amplifier (int16, 3 ch, 250 Hz, in two chunks), an accelerometer (2 ch, 50 Hz), a
    marker stream, clock offsets and a boundary chunk, as LabRecorder writes them."""
    parts = [b"XDF:", _chunk(1, b"<?xml version='1.0'?><info><version>1.0</version></info>"),
             _chunk(2, _header("Amp", "EMG", 3, 250, "int16", ("F1", "F2", "F3"),
                               "microvolts"), 1),
             _chunk(2, _header("Accel", "Accelerometer", 2, 50, "float32"), 2),
             _chunk(2, _header("Cues", "Markers", 1, 0, "string"), 3)]
    for stream in (1, 2, 3):
        parts.append(_chunk(4, struct.pack("<dd", 9.0, _OFFSET), stream))
    parts.append(_chunk(3, _int16_samples(_AMP[:300], 10.0), 1))
    parts.append(_chunk(3, _n(2) + b"".join(b"\x08" + struct.pack("<d", 10.0 + k / 50)
                                            + struct.pack("<2f", k, -k) for k in range(2)), 2))
    parts.append(_chunk(5, bytes(range(16))))  # boundary
    parts.append(_chunk(3, _int16_samples(_AMP[300:], 10.0 + 300 / 250), 1))
    parts.append(_chunk(3, _strings(_MARKERS), 3))
    for stream in (1, 2, 3):
        parts.append(_chunk(4, struct.pack("<dd", 13.0, _OFFSET), stream))
    path.write_bytes(b"".join(parts))
    return path


def test_reads_a_labrecorder_layout(tmp_path):
    path = _labrecorder_file(tmp_path / "session.xdf")
    with pytest.raises(RecordingError, match=r"found 2 \('Amp', 'Accel'\); choose one with "
                                             r"stream=NAME"):
        read_xdf(path)
    rec = read_xdf(path, stream="Amp")
    np.testing.assert_array_equal(rec.emg, _AMP.astype(np.float32))
    # delta-compressed stamps rebuilt, then moved onto the recording host's clock
    expected = 10.0 + _OFFSET + np.arange(600) / 250
    np.testing.assert_allclose(rec.time, expected, rtol=0, atol=1e-9)
    assert rec.meta["device"]["channel_names"] == ["F1", "F2", "F3"]
    assert (rec.meta["device"]["manufacturer"], rec.sample_rate) == ("acme", 250.0)
    assert [text for _, text in rec.markers] == ["start ✋", "stop"]
    np.testing.assert_allclose([t for t, _ in rec.markers],
                               [t + _OFFSET for t, _ in _MARKERS], atol=1e-9)
    assert rec.dropped == []


def test_replay_and_import_of_an_xdf_file(tmp_path):
    path = _labrecorder_file(tmp_path / "session.xdf")
    with open_source(f"replay://{path}?stream=Amp&speed=0") as src:
        assert src.info.channel_names == ("F1", "F2", "F3") and src.info.sample_rate == 250
        parts = []
        while not src.finished:
            parts.append(src.read(0.1)[0])
        np.testing.assert_array_equal(np.concatenate(parts), _AMP.astype(np.float32))
        # each marker at the sample nearest its time, stamped on the replay's schedule
        at = [(t - src.start_time) * 250 for t, _ in src.markers_between(0, 600)]
        np.testing.assert_allclose(at, [100, 425], atol=1e-6)
    result = CliRunner().invoke(main, ["import", "xdf", str(path), "-o", str(tmp_path / "h5"),
                                       "--stream", "Amp"])
    assert result.exit_code == 0, result.output
    rec = read_recording(tmp_path / "h5" / "session.hdf5")
    np.testing.assert_array_equal(rec.emg, _AMP.astype(np.float32))
    assert [text for _, text in rec.markers] == ["start ✋", "stop"]
    assert rec.meta["device"]["channel_names"] == ["F1", "F2", "F3"]


def test_replay_refuses_stream_for_hdf5_and_names_missing_stream(tmp_path):
    path = _labrecorder_file(tmp_path / "session.xdf")
    with pytest.raises(Exception, match=r"no stream named 'EEG'; it holds 'Amp', 'Accel', "
                                        r"'Cues'"):
        open_source(f"replay://{path}?stream=EEG").open()
    with pytest.raises(Exception, match=r"stream 'Cues' is string at 0 Hz; expected numbers"):
        read_xdf(path, stream="Cues")


def test_our_recording_round_trips_through_xdf(tmp_path):
    import pyxdf

    n = 1200
    emg = (np.random.default_rng(3).standard_normal((n, 4)) * 40).astype(np.float32)
    times = 500.0 + np.arange(n) / 1000.0
    labels = np.repeat(np.array([0, 1, 0], np.int16), n // 3)
    info = StreamInfo("band", 4, 1000.0, channel_names=("a", "b", "c", "d"))
    with RecordingWriter(tmp_path / "ours.h5", info, user="ann", session="s2",
                         class_names=["rest", "fist"]) as w:
        w.append(emg, times, labels=labels)
        w.add_marker(500.6, "cue")
    runner = CliRunner()
    result = runner.invoke(main, ["to-xdf", str(tmp_path / "ours.h5"), "-o",
                                  str(tmp_path / "ours.xdf")])
    assert result.exit_code == 0, result.output
    # a third-party reader opens it: pyxdf with its defaults
    streams, _ = pyxdf.load_xdf(str(tmp_path / "ours.xdf"))
    by_name = {s["info"]["name"][0]: s for s in streams}
    emg_stream = by_name["band"]
    assert emg_stream["info"]["type"][0] == "EMG"
    channels = emg_stream["info"]["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in channels] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(emg_stream["time_series"], emg)
    assert [m[0] for m in by_name["band-markers"]["time_series"]] == ["rest", "fist", "cue",
                                                                       "rest"]
    result = runner.invoke(main, ["import", "xdf", str(tmp_path / "ours.xdf"), "-o",
                                  str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    back = read_recording(tmp_path / "back" / "ours.hdf5")
    np.testing.assert_array_equal(back.emg, emg)
    # pyxdf smooths the stamps with a line fit: exact ones come back to float round-off
    np.testing.assert_allclose(back.time, times, rtol=0, atol=1e-9)
    assert (back.meta["user"], back.meta["session"]) == ("ann", "s2")
    assert [(round(t, 6), text) for t, text in back.markers] == [
        (500.0, "rest"), (500.4, "fist"), (500.6, "cue"), (500.8, "rest")]
    result = runner.invoke(main, ["to-xdf", str(tmp_path / "ours.h5"), "-o",
                                  str(tmp_path / "ours.xdf")])
    assert result.exit_code == 1 and "exists" in result.output


def _crafted(*chunks: bytes) -> bytes:
    return b"XDF:" + _chunk(2, _header("Amp", "EMG", 2, 100, "float32"), 1) + b"".join(chunks)


@pytest.mark.parametrize("body, message", [
    (b"NOTXDF", r"not an XDF file"),
    (_crafted(b"\x04" + struct.pack("<I", 10**9) + b"\x03\x00"),
     r"declares 1000000000 bytes; expected 2 to"),
    (_crafted(b"\x03"), r"bad chunk length at byte \d+: expected a variable-length integer"),
    (_crafted(_chunk(3, b"\x04" + struct.pack("<I", 10**9) + b"\x00" * 64, 1)),
     r"declares 1000000000 samples of 2 channels; its \d+ bytes hold at most 7"),
    (_crafted(_chunk(3, _n(1) + b"\x08" + struct.pack("<d", float("nan")) + b"\x00" * 8, 1)),
     r"non-finite or cut timestamp"),
    (_crafted(_chunk(3, _n(1) + b"\x00" + b"\x00" * 12, 1)),
     r"is 15 bytes but its 1 samples take 11"),
    (_crafted(_chunk(4, struct.pack("<dd", 1.0, float("inf")), 1)),
     r"must hold two finite doubles"),
    (_crafted(_chunk(3, _n(1) + b"\x00" * 9, 7)), r"stream 7, which has no header before it"),
    (b"XDF:" + _chunk(2, b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><info>&a;</info>", 1),
     r"declares a document type; XDF headers have none"),
    (b"XDF:" + _chunk(2, b"<a>" * 100 + b"</a>" * 100, 1), r"nests deeper than 64 elements"),
    (b"XDF:" + _chunk(2, _header("Amp", "EMG", 100000, 100, "float32"), 1),
     r"declares 100000 channels; expected 1 to 4096"),
    (b"XDF:" + _chunk(2, _header("Amp", "EMG", 2, "nan", "float32"), 1),
     r"declares a rate of nan Hz"),
    (b"XDF:" + _chunk(2, _header("Cues", "Markers", 1, 0, "string"), 1)
     + _chunk(3, _n(1) + b"\x00\x04" + struct.pack("<I", 1 << 20) + b"x" * (1 << 20), 1),
     r"a string value of 1048576 bytes .* at most 65536"),
    (b"XDF:" + _chunk(2, b"<info><name>Amp</name><channel_count>2</channel_count>"
                         b"<channel_format>float32</channel_format></info>", 1),
     r"a stream header lacks info/nominal_srate"),
    (_crafted(_chunk(6, b"<info><sample_count>many</sample_count></info>", 1)),
     r"gives sample_count 'many'; expected a whole number"),
], ids=["magic", "chunk-length", "length-width", "sample-count", "nan-stamp", "overrun",
        "clock-offset", "no-header", "entity", "nesting", "channels", "rate", "long-string",
        "header-field", "footer-count"])
def test_crafted_files_are_refused_in_one_line(tmp_path, body, message):
    path = tmp_path / "crafted.xdf"
    path.write_bytes(body)
    with pytest.raises(RecordingError, match=message):
        read_xdf(path)
    result = CliRunner().invoke(main, ["import", "xdf", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
