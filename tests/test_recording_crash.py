"""Crash safety and clean stops of a real recording process (``emgstream record``)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from emgstream.io import read_recording

RATE = 2000


def _start(path, *extra):
    cmd = [sys.executable, "-m", "emgstream", "record", f"sim://?channels=16&rate={RATE}",
           "-o", str(path), *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    lines: queue.Queue = queue.Queue()
    lines.log = []  # everything the recorder said, for failure messages

    def pump():
        for line in proc.stderr:
            lines.log.append(line)
            lines.put((time.monotonic(), line))
        lines.put((time.monotonic(), None))

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _wait_for(lines, word, timeout=60.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        t, line = lines.get(timeout=deadline - time.monotonic())
        if line is None:
            break
        seen.append(line)
        if word in line:
            return t, line
    raise AssertionError(f"{word!r} never appeared on stderr: {''.join(seen)}")


def _samples_in_status(line):
    return int(line.split(" samples")[0].split()[-1])


def test_kill_9_loses_at_most_the_last_second(tmp_path):
    path = tmp_path / "crash.h5"
    proc, lines = _start(path)
    try:
        started, _ = _wait_for(lines, "recording")
        while time.monotonic() - started < 2.5:
            time.sleep(0.05)
        # the last status line the recorder printed: samples it certainly held by then
        last_status = 0
        while not lines.empty():
            _, line = lines.get()
            if line and "samples" in line:
                last_status = _samples_in_status(line)
        os.kill(proc.pid, signal.SIGKILL)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # plain HDF5, as HDFView, MATLAB or emg2pose's loader open it (no SWMR flag left set)
    with h5py.File(path, "r") as f:
        assert f["emg2pose/timeseries"].shape[0] > 0
    rec = read_recording(path)
    assert rec.meta["complete"] is False
    assert rec.n_samples >= (elapsed - 1.0) * RATE, (rec.n_samples, elapsed, lines.log)
    assert rec.n_samples >= last_status - RATE
    assert rec.n_samples <= (elapsed + 0.1) * RATE
    assert np.all(np.diff(rec.time) > 0)
    np.testing.assert_allclose(np.diff(rec.time), 1 / RATE, rtol=1e-6)
    assert np.isfinite(rec.emg).all() and rec.emg.shape[1] == 16


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_file_cleanly(tmp_path, sig):
    path = tmp_path / "stop.h5"
    proc, lines = _start(path, "--user", "u3")
    try:
        _, status = _wait_for(lines, "samples")
        held = _samples_in_status(status)
        proc.send_signal(sig)
        _, done = _wait_for(lines, "wrote")
        assert proc.wait(timeout=30) == 0, "".join(lines.log)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    rec = read_recording(path)
    assert rec.meta["complete"] is True and rec.meta["user"] == "u3"
    assert rec.n_samples >= held, "".join(lines.log)
    assert f"wrote {rec.n_samples} samples" in done
