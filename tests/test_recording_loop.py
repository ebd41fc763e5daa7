"""The reusable recording loop: LSL source -> writer, with drops and stop conditions."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl

from emgstream.io import RecordingWriter, RecordStatus, read_recording, record_source
from emgstream.sources.lsl import LSLSource
from emgstream.sources.replay import ReplaySource

RATE = 1000.0


def test_lsl_gap_is_recorded_as_dropped(tmp_path, unique_id):
    info = pylsl.StreamInfo(unique_id, "EMG", 3, RATE, "float32", unique_id)
    outlet = pylsl.StreamOutlet(info)
    path = tmp_path / "gap.h5"
    statuses: list[RecordStatus] = []
    with LSLSource(source_id=unique_id, timeout=5) as src:
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = pylsl.local_clock()
        index = np.r_[0:300, 500:800]   # samples 300..499 never sent
        values = np.repeat(index[:, None], 3, axis=1).astype(np.float32)
        for k in range(0, 600, 50):
            outlet.push_chunk(values[k:k + 50], (t0 + index[k:k + 50] / RATE).tolist())
        with RecordingWriter(path, src.info) as writer:
            final = record_source(src, writer, duration=0.6, on_status=statuses.append,
                                  status_interval=0.05)
    rec = read_recording(path)
    np.testing.assert_array_equal(rec.emg, values)
    assert final.samples == 600 and final.dropped == 200
    assert len(rec.dropped) == 1
    assert rec.dropped[0].count == 200
    assert abs(rec.dropped[0].time - (t0 + 300 / RATE)) < 1e-3  # loopback clock offset
    assert statuses and statuses[-1].samples == 600
    assert statuses[-1].rms.shape == (3,)


def test_stop_event_and_end_of_replay(tmp_path):
    from emgstream.sources import StreamInfo

    source = tmp_path / "src.h5"
    with RecordingWriter(source, StreamInfo("s", 2, RATE)) as w:
        w.append(np.ones((3000, 2), np.float32), np.arange(3000) / RATE)
    # a replay that ends stops the loop by itself
    with ReplaySource(source, speed=0) as src, \
            RecordingWriter(tmp_path / "all.h5", src.info) as writer:
        assert record_source(src, writer).samples == 3000
    # a stop event ends an endless one
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    with ReplaySource(source, loop=True) as src, \
            RecordingWriter(tmp_path / "stopped.h5", src.info) as writer:
        status = record_source(src, writer, stop=stop)
    timer.join()
    n = read_recording(tmp_path / "stopped.h5").n_samples
    assert n == status.samples and 0.2 * RATE < n < 1.0 * RATE
