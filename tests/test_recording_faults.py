"""Damaged files and bad requests a new user meets: truncated recordings, a recording of an
older format killed mid-write, `record` into a missing folder or for no time, non-finite
chunks from a live stream. Real HDF5 files, real processes, real LSL on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pylsl
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingError, RecordingWriter, read_recording, record_source
from emgstream.sources import SourceError, StreamInfo, open_source
from emgstream.sources.lsl import LSLSource

RATE = 2000


def _write(path, seconds=2.0, channels=16):
    emg = np.random.default_rng(0).standard_normal((int(seconds * RATE), channels))
    with RecordingWriter(path, StreamInfo("t", channels, float(RATE))) as w:
        w.append(emg.astype(np.float32), np.arange(len(emg)) / RATE)
    return path


def _cut(path, size):
    cut = path.with_name(f"cut-{size}.h5")
    cut.write_bytes(path.read_bytes()[:size])
    return cut


def _stop_after(source, samples, stop, timeout=30.0):
    """Wait until ``source`` has delivered ``samples`` samples (or ``timeout`` seconds),
    then set ``stop``."""
    deadline = time.monotonic() + timeout
    while source.stats.samples < samples and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()


def _format_1_file(path, killed=False):
    """A recording as format 1 wrote it (superblock 3, SWMR), closed or killed mid-write."""
    code = f"""
import h5py, numpy as np, os, signal
f = h5py.File({str(path)!r}, "w", libver="latest")
g = f.create_group("emg2pose")
g.attrs["sample_rate"] = {float(RATE)}
g.attrs["num_channels"] = 4
ts = g.create_dataset("timeseries", shape=(0,), maxshape=(None,), chunks=(1024,),
                      dtype=[("time", "<f8"), ("emg", "<f4", (4,))])
f.swmr_mode = True
for k in range(20):
    rows = np.zeros(1000, ts.dtype)
    rows["time"] = (k * 1000 + np.arange(1000)) / {RATE}
    rows["emg"] = k
    ts.resize(((k + 1) * 1000,))
    ts[k * 1000:] = rows
    f.flush()
if {killed}:
    os.kill(os.getpid(), signal.SIGKILL)
f.close()
"""
    subprocess.run([sys.executable, "-c", code], timeout=60)
    return path


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.05])
def test_truncated_recording_is_refused_not_read_as_zeros(tmp_path, fraction):
    path = _write(tmp_path / "full.h5")
    size = path.stat().st_size
    cut = _cut(path, int(size * fraction))
    with pytest.raises(RecordingError, match=rf"is truncated: {int(size * fraction)} bytes, "
                                             rf"but the file says it holds {size}"):
        read_recording(cut)
    with pytest.raises(SourceError, match="cannot replay: .* is truncated"):
        open_source(f"replay://{cut}").open()


@pytest.mark.parametrize("size", [30, 100, 2000, 8192])
def test_cut_short_format_1_recording_fails_at_once_in_a_real_run(tmp_path, size):
    """Cut this short, an SWMR-written file hung `run replay://` in h5py's retries (beyond
    Ctrl-C). Now a one-line error, well before the subprocess's timeout."""
    cut = _cut(_format_1_file(tmp_path / "old.h5"), size)
    result = subprocess.run([sys.executable, "-m", "emgstream", "record", f"replay://{cut}",
                             "-o", str(tmp_path / "out.h5")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot replay:"), result.stderr
    assert "truncated" in lines[0] or "cut short" in lines[0]
    assert not (tmp_path / "out.h5").exists()


def test_format_1_recordings_still_read_closed_or_killed(tmp_path):
    for killed in (False, True):
        path = _format_1_file(tmp_path / f"old-{killed}.h5", killed=killed)
        rec = read_recording(path)
        assert rec.n_samples == 20000 and rec.emg[-1, 0] == 19
        np.testing.assert_array_equal(rec.time, np.arange(20000) / RATE)


def test_record_into_a_missing_folder_says_so_in_one_line(tmp_path):
    out = tmp_path / "no" / "such" / "rec.h5"
    result = CliRunner().invoke(main, ["record", "sim://?channels=2&realtime=0", "-o",
                                       str(out), "--duration", "0.1"])
    assert result.exit_code == 2
    assert f"the folder '{out.parent}' does not exist" in result.stderr
    assert "Traceback" not in result.output and not out.parent.exists()
    with pytest.raises(RecordingError, match="the folder .* does not exist"):
        RecordingWriter(out, StreamInfo("t", 2, 100.0))


@pytest.mark.parametrize("duration", ["0", "-1", "nan"])
def test_record_for_no_time_is_refused_before_any_file(tmp_path, duration):
    out = tmp_path / "rec.h5"
    result = CliRunner().invoke(main, ["record", "sim://?channels=2&realtime=0", "-o",
                                       str(out), "--duration", duration])
    assert result.exit_code == 2
    assert f"'--duration': must be a positive number of seconds, got {float(duration):g}" in \
        result.stderr
    assert not out.exists()


def test_non_finite_chunks_are_marked_and_recording_goes_on(tmp_path, unique_id):
    """`record` ended on the first NaN chunk from a live stream; now the chunk is marked
    (dropped span, rejected_samples fault) and every good sample is kept."""
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(unique_id, "EMG", 4, RATE, "float32",
                                                 unique_id))
    path = tmp_path / "nan.h5"
    with LSLSource(source_id=unique_id, timeout=5) as src, \
            RecordingWriter(path, src.info) as writer:
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        values = np.repeat(np.arange(3000, dtype=np.float32)[:, None], 4, axis=1)
        values[1000, 2] = np.nan
        values[1500, 0] = np.inf
        stop = threading.Event()
        result = {}
        recorder = threading.Thread(target=lambda: result.update(
            final=record_source(src, writer, stop=stop)))
        recorder.start()
        t0 = pylsl.local_clock()
        for k in range(0, 3000, 100):  # in real time, so that the recorder reads as it comes
            if k == 2000:  # the bad chunks are behind: what follows must still be recorded
                _stop_after(src, 2000, threading.Event())
            outlet.push_chunk(values[k:k + 100], (t0 + np.arange(k, k + 100) / RATE).tolist())
            time.sleep(100 / RATE)
        _stop_after(src, 3000, stop)
        recorder.join()
        final = result["final"]
    rec = read_recording(path)
    good = np.isfinite(values).all(axis=1)
    kept = np.isin(values[:, 0], rec.emg[:, 0])
    # every stored row is a good sample, in order; the rest are exactly the rejected spans
    assert np.isfinite(rec.emg).all() and np.all(np.diff(rec.emg[:, 0]) > 0)
    rejected = sum(f.count for f in rec.faults if f.kind == "rejected_samples")
    # the inlet regroups samples into chunks of its choosing: the two bad samples may share one
    assert {f.kind for f in rec.faults} == {"rejected_samples"} and 1 <= len(rec.faults) <= 2
    assert rec.n_samples + rejected == 3000 and final.samples == rec.n_samples
    assert not kept[~good].any() and rejected == (~kept).sum() and kept[2000:].all()
    assert [d.count for d in rec.dropped] == [f.count for f in rec.faults]
    # the spans sit where the missing samples were, and cover exactly them (times as the
    # recording has them: the inlet's clock offset is that of the samples around)
    start = t0 + np.median(rec.time - (t0 + rec.emg[:, 0] / RATE))
    marked = np.concatenate([round((d.time - start) * RATE) + np.arange(d.count)
                             for d in rec.dropped])
    np.testing.assert_array_equal(marked, np.flatnonzero(~kept))
    assert final.faults == {"rejected_samples": rejected}


def test_rows_past_the_last_finished_flush_are_not_read(tmp_path):
    """A writer killed between a flush of rows and the flush that records their number
    (or a reader that came in between) leaves rows HDF5 may have half written: an
    incomplete file is read up to ``flushed_samples``; a complete one whole."""
    path = _write(tmp_path / "rec.h5", seconds=1.0, channels=2)
    with h5py.File(path, "r+") as f:  # as the writer leaves it mid-flush
        f["emgstream"].attrs["complete"] = False
        f["emgstream"].attrs["flushed_samples"] = 1500
    rec = read_recording(path)
    assert rec.n_samples == rec.meta["total_samples"] == 1500
    np.testing.assert_array_equal(rec.time, np.arange(1500) / RATE)
    with h5py.File(path, "r+") as f:
        f["emgstream"].attrs["complete"] = True
    assert read_recording(path).n_samples == 2000
