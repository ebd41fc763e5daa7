"""The simulated band behind ``sim://``: real-time pacing, ground truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from pylsl import local_clock
from scipy import signal

from emgstream.sources import open_source
from emgstream.sources.sim import SimSource


def _read_samples(source, n):
    chunks, stamps, labels = [], [], []
    while sum(len(c) for c in chunks) < n:
        x, t = source.read(0.2)
        if len(x):
            chunks.append(x)
            stamps.append(t)
            labels.append(source.last_labels.copy())
    return np.concatenate(chunks), np.concatenate(stamps), np.concatenate(labels)


def test_realtime_schedule_never_runs_ahead_and_keeps_rate():
    with open_source("sim://?channels=8&rate=1000&chunk=20") as source:
        start = local_clock()
        delivered = 0
        while delivered < 1500:
            x, t = source.read(0.2)
            now = local_clock()
            delivered += len(x)
            # a real band cannot deliver a sample before its time has come
            assert t.size == 0 or t[-1] <= now + 1e-4
        elapsed = local_clock() - start
    assert x.dtype == np.float32 and t.dtype == np.float64 and x.shape[1] == 8
    assert elapsed >= 1.5 - 0.02
    assert elapsed < 1.5 * 1.25  # drift-free: a slow wake-up is made up, not accumulated


def test_timestamps_contiguous_on_lsl_clock():
    with open_source("sim://?channels=4&rate=2000&realtime=0&chunk=33") as source:
        before = local_clock()
        _, stamps, _ = _read_samples(source, 3000)
    assert abs(stamps[0] - before) < 1.0
    np.testing.assert_allclose(np.diff(stamps), 1 / 2000, atol=1e-9)


def test_ground_truth_labels_and_transitions():
    uri = "sim://?channels=16&rate=2000&realtime=0&hold=0.5&rest=0.25"
    with open_source(uri) as source:
        names = source.class_names
        _, stamps, labels = _read_samples(source, 2000 * 4)
        transitions = list(source.transitions)
    assert names[0] == "rest" and len(names) >= 12
    assert labels.dtype == np.int16
    assert 0 in labels and len(np.unique(labels)) >= 4
    assert labels.min() >= 0 and labels.max() < len(names)
    # every change of label is listed, with the time of its first sample
    changes = np.flatnonzero(np.diff(labels, prepend=-1))
    assert [(stamps[i], labels[i]) for i in changes] == transitions


def test_gestures_change_the_signal():
    with open_source("sim://?channels=16&rate=2000&realtime=0&hold=1&rest=1") as source:
        emg, _, labels = _read_samples(source, 2000 * 8)
    sos = [signal.butter(4, [20, 450], "bandpass", fs=2000, output="sos")]
    sos += [signal.tf2sos(*signal.iirnotch(f, 30, fs=2000)) for f in (50, 60, 100, 120, 150, 180)]
    emg = signal.sosfilt(np.concatenate(sos), emg, axis=0)
    emg = emg[2000:]  # past the filter's start-up
    labels = labels[2000:]
    # rest well away from any movement (a release is labelled rest and still active)
    near_gesture = np.convolve(labels > 0, np.ones(2001), mode="same") > 0
    rms_rest = np.sqrt(np.mean(emg[~near_gesture] ** 2, axis=0))
    rms_active = np.sqrt(np.mean(emg[labels > 0] ** 2, axis=0))
    assert rms_active.max() > 2 * rms_rest.max()


def test_deterministic_by_seed():
    def take(seed):
        with open_source(f"sim://?channels=4&realtime=0&seed={seed}&user=1") as source:
            return _read_samples(source, 1000)[0]

    np.testing.assert_array_equal(take(3), take(3))
    assert not np.array_equal(take(3), take(4))


@pytest.mark.parametrize("uri, message", [
    ("sim://?channels=0", "channels"),
    ("sim://?rate=abc", "rate"),
    ("sim://?bogus=1", "bogus"),
    ("sim://?realtime=maybe", "realtime"),
    ("sim://?user=-1", "user"),
])
def test_bad_parameters_name_the_problem(uri, message):
    with pytest.raises(ValueError, match=message):
        open_source(uri)


def test_read_before_open_is_an_error():
    with pytest.raises(Exception, match="not open"):
        SimSource().read()
