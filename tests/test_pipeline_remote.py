"""The pipeline in a child process (PipelineProcess): a real spawned process running a real
Pipeline on the simulated band with a real ONNX model; events, snapshots, calls, errors
with their in-process messages, a killed child, and nothing left after stop."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emgstream.io import RecordingWriter, read_recording
from emgstream.modelfile import ModelFile, ModelFileError, save_model_file
from emgstream.pipeline import (GestureEvent, Pipeline, PipelineConfig, PipelineProcess,
                                PipelineProcessError)
from emgstream.sources import StreamInfo, open_source

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train

_SIM = "sim://?hold=1.0&rest=0.6"


@pytest.fixture(scope="module")
def model() -> ModelFile:
    return train.make_test_model(n_channels=16, rate=2000.0,
                                 classes=open_source(_SIM).class_names)


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory) -> Path:
    return save_model_file(tmp_path_factory.mktemp("model") / "test.emgm", model)


def _wait(until, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(0.01)
    return until()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class _Events:
    def __init__(self) -> None:
        self.items: list[GestureEvent] = []
        self.threads: set[str] = set()

    def __call__(self, event: GestureEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.items.append(event)


@pytest.fixture(scope="module")
def shared(model_path):
    """One started process for the tests that only look (a spawn costs seconds)."""
    threads_before = set(threading.enumerate())
    events = _Events()
    config = PipelineConfig(emit="hop", max_catchup_hops=1000, display_seconds=1.0)
    process = PipelineProcess(_SIM, model_path, config)
    process.subscribe(events)
    process.start()
    yield process, events, threads_before
    process.stop()


def test_events_arrive_with_the_childs_latencies(shared, model):
    process, events, _ = shared
    assert process.is_running and process.error is None
    assert _wait(lambda: len(events.items) >= 20, 10.0), process.stats.summary()
    got = list(events.items)
    p = model.preprocessing
    index = np.array([e.sample_index for e in got])
    # every hop, in order, none lost on the way between the processes
    np.testing.assert_array_equal(np.diff(index), p.hop)
    assert index[0] == p.window - 1
    for e in got:
        assert 0 < e.latency < 1.0 and e.emitted > e.timestamp
        assert len(e.probabilities) == model.n_classes
    assert events.threads == {"emgstream-pipeline-reader"}
    stats = process.stats
    assert stats.hops >= len(got) and stats.events >= len(got)
    assert 0 < stats.latency_p50 <= stats.latency_p99 < 1.0
    assert process.info.n_channels == 16 and process.info.kind == "sim"
    assert f"pid {process.pid}" in repr(process) and "running" in repr(process)


def test_snapshots_hold_contiguous_tails_of_the_expected_shapes(shared, model):
    process, _, _ = shared
    rate = model.preprocessing.sample_rate
    display = int(process.config.display_seconds * rate)
    assert _wait(lambda: process.stats.samples > display + rate, 10.0)
    first = process.snapshot()
    time.sleep(0.1)
    second = process.snapshot()
    for snap in (first, second):
        assert snap.samples.shape == (display, 16) and snap.samples.dtype == np.float32
        assert snap.raw.shape == (display, 16) and snap.raw.dtype == np.float32
        assert snap.timestamps.shape == snap.raw_timestamps.shape == (display,)
        assert snap.rms.shape == (16,) and np.all(snap.rms > 0)
        assert snap.probabilities.shape == (model.n_classes,)
        assert snap.class_names == tuple(model.class_names)
        assert len(snap.channel_names) == 16 and snap.sample_rate == rate
        # the tails are put together from deltas: no sample missing or repeated
        for stamps in (snap.timestamps, snap.raw_timestamps):
            np.testing.assert_allclose(np.diff(stamps), 1 / rate, rtol=1e-6)
    # the second continues the first: the samples they share are the same
    new = int(round((second.timestamps[-1] - first.timestamps[-1]) * rate))
    assert 0 < new < display
    np.testing.assert_array_equal(second.samples[:-new], first.samples[new:])
    np.testing.assert_array_equal(second.raw[:-new], first.raw[new:])
    # a copy: changing it changes nothing the next snapshot shows
    second.samples[:] = np.nan
    assert np.all(np.isfinite(process.snapshot().samples))
    assert process.cpu_seconds > 0


def test_calls_reach_the_childs_pipeline(shared, model, tmp_path):
    process, _, _ = shared
    version = process.stats.model_version
    process.swap_model(model)
    assert _wait(lambda: process.stats.model_version > version, 5.0)
    with pytest.raises(ModelFileError, match="preprocessing and classes must be equal"):
        process.swap_model(train.make_test_model(n_channels=16, rate=2000.0,
                                                 classes=["a", "b"]))
    assert not process.adaptation_running and process.adaptation_error is None
    with pytest.raises(RuntimeError, match="nothing to save"):
        process.save_personalized(tmp_path / "x.emgm", "ann")
    path = tmp_path / "rec.h5"
    process.start_recording(path, user="ann")
    assert process.stats.recording == str(path)
    with pytest.raises(RuntimeError, match="already recording"):
        process.start_recording(tmp_path / "other.h5")
    time.sleep(0.5)
    assert process.stop_recording() == path
    rec = read_recording(path)
    assert rec.n_channels == 16 and rec.meta["user"] == "ann" and rec.emg.shape[0] > 500


def _in_process_error(uri: str, model: ModelFile) -> BaseException:
    try:
        Pipeline(open_source(uri), model).start().stop()
    except Exception as err:
        return err
    raise AssertionError(f"{uri} started in-process")


@pytest.mark.parametrize("uri", ["sim://?channels=8", "nosuch://x", "sim://?bogus=1"])
def test_start_errors_have_their_in_process_type_and_message(uri, model, model_path):
    expected = _in_process_error(uri, model)
    process = PipelineProcess(uri, model_path)
    with pytest.raises(type(expected)) as raised:
        process.start()
    assert str(raised.value) == str(expected)
    assert not process.is_running and not _alive(process.pid)
    if uri == "sim://?channels=8":
        assert "8 channels" in str(raised.value) and "16 channels" in str(raised.value)


def test_a_broken_model_file_is_refused_before_any_process(tmp_path):
    bad = tmp_path / "bad.emgm"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a zip archive"):
        PipelineProcess(_SIM, bad)


def test_a_finite_stream_ends_the_child_pipeline(model, tmp_path):
    rate, n = 2000.0, 3000
    path = tmp_path / "short.h5"
    with RecordingWriter(path, StreamInfo("short", 16, rate)) as writer:
        writer.append(np.random.default_rng(0).normal(0, 20, (n, 16)).astype(np.float32),
                      10.0 + np.arange(n) / rate)
    with PipelineProcess(f"replay://{path}?speed=0", model) as process:
        assert process.wait(20.0)
        assert not process.is_running and process.error is None
        assert process.stats.samples == n
    assert process.stats.samples == n  # kept after stop


def _stall_error(run) -> str:
    """The error a pipeline ends with when its serial band stops sending, path made generic;
    ``run(uri)`` starts one on the URI and returns it."""
    from firmware_bridge.virtual_device import VirtualDevice

    with VirtualDevice(n_channels=16, sample_rate=2000) as device:
        pipeline = run(f"serial://{device.path}?timeout=0.5")
        try:
            assert _wait(lambda: pipeline.stats.hops > 3, 10.0)
            device.stall(30)
            assert pipeline.wait(10.0) and not pipeline.is_running
            error = pipeline.error
        finally:
            pipeline.stop()
    return f"{type(error).__name__}: {error}".replace(device.path, "<device>")


def test_an_unplugged_source_ends_the_child_with_the_in_process_error(model, model_path):
    remote = _stall_error(lambda uri: PipelineProcess(uri, model_path).start())
    local = _stall_error(lambda uri: Pipeline(open_source(uri), model).start())
    assert remote == local
    assert remote.startswith("SourceError") and "no data for 0.5 s" in remote


def test_a_stuck_call_times_out_and_a_killed_child_is_reported(model_path):
    process = PipelineProcess(_SIM, model_path, call_timeout=1.0).start()
    try:
        process.snapshot()
        os.kill(process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(PipelineProcessError, match=r"did not answer stats\(\) within 1 s"):
                process.stats
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert process.is_running
        t0 = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        assert _wait(lambda: not process.is_running, 2.0)
        assert isinstance(process.error, PipelineProcessError)
        assert "killed by signal 9" in str(process.error)
        assert time.monotonic() - t0 < 2.0
        # calls fail at once, saying why; the last snapshot stays for the viewer
        with pytest.raises(PipelineProcessError, match="killed by signal 9"):
            process.start_adaptation()
        assert process.snapshot().samples.shape[1] == 16
        assert not process.adaptation_running
    finally:
        t0 = time.monotonic()
        process.stop()
    assert time.monotonic() - t0 < 2.0
    assert not _alive(process.pid)


def test_stop_leaves_no_process_or_thread(shared):
    process, _, threads_before = shared
    pid = process.pid
    assert _alive(pid)
    process.stop()
    assert not process.is_running
    assert multiprocessing.active_children() == []
    assert not _alive(pid)
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left after stop: {left}"
    assert process.stats.hops > 0  # the stats it had when it stopped
    process.stop()  # idempotent
