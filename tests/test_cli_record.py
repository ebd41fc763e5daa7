"""``emgstream record`` and ``emgstream devices`` through click's runner."""

from __future__ import annotations

import numpy as np
import pylsl
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingWriter, read_recording
from emgstream.sources import StreamInfo


def test_record_sim_for_a_duration(tmp_path):
    out = tmp_path / "sim.h5"
    result = CliRunner().invoke(main, ["record", "sim://?channels=4&rate=500&realtime=0",
                                       "-o", str(out), "--duration", "1.5", "--user", "u1",
                                       "--session", "s2", "--side", "left"])
    assert result.exit_code == 0, result.output
    assert "RMS µV" in result.output and "wrote 750 samples" in result.output
    rec = read_recording(out)
    assert rec.emg.shape == (750, 4)
    assert (rec.meta["user"], rec.meta["session"], rec.meta["side"]) == ("u1", "s2", "left")
    assert rec.meta["device"]["kind"] == "sim" and rec.meta["complete"] is True
    assert np.all(np.diff(rec.time) > 0)


def test_record_replay_writes_the_raw_samples(tmp_path):
    source = tmp_path / "in.h5"
    emg = np.random.default_rng(0).standard_normal((400, 3)).astype(np.float32) * 30
    with RecordingWriter(source, StreamInfo("in", 3, 1000.0)) as w:
        w.append(emg, np.arange(400) / 1000)
    out = tmp_path / "out.h5"
    result = CliRunner().invoke(main, ["record", f"replay://{source}?speed=0", "-o", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_recording(out).emg, emg)  # unfiltered, complete


def test_record_refuses_existing_file_and_bad_source(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"keep me")
    result = CliRunner().invoke(main, ["record", "sim://?channels=2", "-o", str(out),
                                       "--duration", "0.1"])
    assert result.exit_code != 0 and "--overwrite" in result.output
    assert out.read_bytes() == b"keep me"
    result = CliRunner().invoke(main, ["record", "lsl://name=nobody-here?timeout=0.2",
                                       "-o", str(tmp_path / "y.h5")])
    assert result.exit_code != 0 and "no LSL stream matching name='nobody-here'" in \
        result.output
    assert not (tmp_path / "y.h5").exists()


def test_devices_lists_lsl_stream(unique_id):
    info = pylsl.StreamInfo(unique_id, "EMG", 8, 2000.0, "float32", unique_id)
    outlet = pylsl.StreamOutlet(info)  # noqa: F841 (alive while listing)
    result = CliRunner().invoke(main, ["devices", "--wait", "1.0"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if unique_id in line)
    assert "EMG" in row and " 8 " in row and "2000" in row
    assert "serial ports" in result.output
