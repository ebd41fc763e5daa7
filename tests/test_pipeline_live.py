"""The live pipeline on real parts: the simulated band, real LSL, real ONNX Runtime."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest

from emgstream.modelfile import ModelFile, ModelFileError, save_model_file
from emgstream.pipeline import (GestureEvent, LSLMarkerOutlet, Pipeline, PipelineConfig,
                                Snapshot)
from emgstream.sources import open_source

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train


@pytest.fixture(scope="module")
def model() -> ModelFile:
    return train.make_test_model(n_channels=16, rate=2000.0)


def _every_hop(**kw) -> PipelineConfig:
    # a large catch-up allowance: on a loaded machine a stall must not skip hops here
    return PipelineConfig(emit="hop", max_catchup_hops=1000, **kw)


def _run(pipeline: Pipeline, seconds: float) -> list[GestureEvent]:
    events: list[GestureEvent] = []
    pipeline.subscribe(events.append)
    with pipeline:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and pipeline.is_running:
            time.sleep(0.05)
    assert pipeline.error is None
    return events


def test_every_hop_is_evaluated_in_order_with_positive_latency(model):
    p = model.preprocessing
    pipeline = Pipeline(open_source("sim://?channels=16&rate=2000"), model, _every_hop())
    events = _run(pipeline, 2.0)
    stats = pipeline.stats
    assert stats.hops >= 20 and stats.skipped_hops == 0
    assert len(events) == stats.hops == stats.events
    index = np.array([e.sample_index for e in events])
    # windows end at window + k * hop: none missing, none repeated
    np.testing.assert_array_equal(index, p.window - 1 + p.hop * np.arange(len(events)))
    # every sample inference saw was evaluated up to the last whole hop
    assert len(events) == (stats.samples - stats.inference_backlog - p.window) // p.hop + 1
    stamps = np.array([e.timestamp for e in events])
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(np.diff(stamps), p.hop / p.sample_rate, rtol=1e-6)
    for e in events:
        assert e.latency > 0 and e.emitted > e.timestamp
        assert len(e.probabilities) == model.n_classes
        assert abs(sum(e.probabilities) - 1.0) < 1e-6
    assert 0 < stats.latency_p50 <= stats.latency_p99
    assert stats.dropped_samples == 0 and stats.rejected_chunks == 0


def test_falling_behind_skips_to_the_newest_window_and_counts(model):
    p = model.preprocessing
    # realtime=0: chunks come as fast as they are read, far faster than inference runs
    source = open_source("sim://?channels=16&rate=2000&realtime=0&chunk=400")
    config = PipelineConfig(emit="hop", max_catchup_hops=2)
    pipeline = Pipeline(source, model, config)
    events = _run(pipeline, 1.0)
    stats = pipeline.stats
    assert stats.skipped_hops > 0
    index = np.array([e.sample_index for e in events])
    assert np.all(np.diff(index) > 0) and np.all((index + 1 - p.window) % p.hop == 0)
    # every hop up to the last one evaluated is either evaluated or counted as skipped
    assert stats.hops + stats.skipped_hops == (index[-1] + 1 - p.window) // p.hop + 1


@pytest.mark.parametrize("uri, stream", [
    ("sim://?channels=8&rate=2000", "8 channels at 2000 Hz"),
    ("sim://?channels=16&rate=1000", "16 channels at 1000 Hz"),
])
def test_mismatched_stream_is_refused_naming_both(model, uri, stream):
    source = open_source(uri)
    pipeline = Pipeline(source, model)
    with pytest.raises(ModelFileError) as err:
        pipeline.start()
    assert stream in str(err.value)
    assert "model expects 16 channels at 2000 Hz" in str(err.value)
    assert not source.is_open


def _lsl_outlet(uid, channels=16, rate=2000.0):
    info = pylsl.StreamInfo(uid, "EMG", channels, rate, "float32", uid)
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)


def test_nan_chunk_over_lsl_is_rejected_and_the_stream_goes_on(model, unique_id, tmp_path):
    from emgstream.io import read_recording

    outlet = _lsl_outlet(unique_id)
    source = open_source(f"lsl://source_id={unique_id}?timeout=5")
    pipeline = Pipeline(source, model, _every_hop())
    events: list[GestureEvent] = []
    pipeline.subscribe(events.append)
    rng = np.random.default_rng(0)
    with pipeline:
        pipeline.start_recording(tmp_path / "rec.h5")
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = pylsl.local_clock()
        for k in range(75):  # 1.5 s in 20 ms chunks, the 30th poisoned
            chunk = (rng.standard_normal((40, 16)) * 50).astype(np.float32)
            if k == 30:
                chunk[7, 3] = np.nan
            outlet.push_chunk(chunk, t0 + (k * 40 + np.arange(40)) / 2000.0)
            time.sleep(0.02)
        time.sleep(0.3)
        assert pipeline.is_running
        stats = pipeline.stats
    assert pipeline.error is None
    # the inlet regroups samples into its own chunks: the one holding the NaN is refused
    assert stats.rejected_chunks == 1 and 1 <= stats.rejected_samples < 200
    # the stream went on: samples after the bad chunk were filtered and evaluated
    assert stats.samples == 75 * 40 - stats.rejected_samples
    assert events and events[-1].sample_index > 40 * 31
    assert all(np.isfinite(e.probabilities).all() for e in events)
    # recorded as `record` does: the chunk marked (dropped span, rejected_samples), not stored
    rec = read_recording(tmp_path / "rec.h5")
    assert rec.n_samples == stats.samples and np.isfinite(rec.emg).all()
    assert [(f.kind, f.count) for f in rec.faults] == [("rejected_samples",
                                                       stats.rejected_samples)]
    assert [d.count for d in rec.dropped] == [stats.rejected_samples]


def test_stop_joins_every_thread_and_is_idempotent(model, tmp_path):
    baseline = set(threading.enumerate())
    pipeline = Pipeline(open_source("sim://"), model)
    pipeline.start()
    pipeline.start_recording(tmp_path / "rec.h5", user="u0")
    time.sleep(0.5)
    assert len(set(threading.enumerate()) - baseline) >= 3  # acquisition, inference, recorder
    assert "running" in repr(pipeline)
    pipeline.stop()
    pipeline.stop()
    assert set(threading.enumerate()) == baseline
    assert not pipeline.is_running and "stopped" in repr(pipeline)
    with pytest.raises(RuntimeError, match="starts once"):
        pipeline.start()


def test_recording_holds_the_raw_samples_the_pipeline_saw(model, tmp_path):
    from emgstream.io import read_recording

    pipeline = Pipeline(open_source("sim://"), model)
    with pipeline:
        pipeline.start_recording(tmp_path / "rec.h5", user="u7")
        time.sleep(0.6)
        path = pipeline.stop_recording()
    rec = read_recording(path)
    assert rec.n_channels == 16 and rec.sample_rate == 2000.0
    assert rec.emg.shape[0] == pipeline.stats.recorded_samples > 0
    assert np.all(np.diff(rec.time) > 0)


def test_snapshot_is_a_copy_for_viewers(model):
    with Pipeline(open_source("sim://"), model, PipelineConfig(display_seconds=0.5)) as pipeline:
        time.sleep(1.2)
        snap = pipeline.snapshot()
    assert isinstance(snap, Snapshot)
    assert snap.samples.shape == (1000, 16) and snap.timestamps.shape == (1000,)
    assert snap.raw.shape == (1000, 16) and snap.raw_timestamps.shape == (1000,)
    assert snap.rms.shape == (16,) and np.all(snap.rms > 0)
    assert snap.probabilities.shape == (model.n_classes,)
    assert abs(snap.probabilities.sum() - 1) < 1e-6
    assert snap.class_names == tuple(model.class_names)
    assert snap.stats.hops > 0 and snap.stats.effective_rate > 1000
    snap.samples[:] = 0  # a copy: the pipeline's ring is untouched
    assert np.all(pipeline.snapshot().rms > 0)


def test_after_hop_wakes_when_a_hop_is_done_not_at_its_timeout(model):
    # the pipeline process builds snapshots right after a hop (_remote._serve): the wait must
    # end on the inference thread's notification, with the hop already counted
    with Pipeline(open_source("sim://"), model, _every_hop()) as pipeline:
        time.sleep(0.5)
        for _ in range(5):
            before = pipeline.stats.hops
            t0 = time.monotonic()
            pipeline._after_hop(timeout=10.0)
            assert time.monotonic() - t0 < 5.0, "woken by the timeout, not by a hop"
            assert pipeline.stats.hops > before
    # a stopped pipeline does no hops: the wait ends at its timeout
    t0 = time.monotonic()
    pipeline._after_hop(timeout=0.2)
    assert time.monotonic() - t0 >= 0.2


def test_info_is_the_checked_stream_description_read_only(model):
    source = open_source("sim://?channels=16&rate=2000")
    pipeline = Pipeline(source, model)
    with pytest.raises(RuntimeError, match="started"):
        pipeline.info
    with pipeline:
        info = pipeline.info
        assert info == source.info
        assert (info.n_channels, info.sample_rate, info.kind) == (16, 2000.0, "sim")
        with pytest.raises(AttributeError):
            pipeline.info = info
    assert pipeline.info is info  # still there after stop, when the source is closed


def _write_mains_recording(path, model, seconds: float = 3.0, mains: float = 50.0):
    """A recording of noise plus a strong mains sine on every channel; returns the raw EMG."""
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    p = model.preprocessing
    n = int(seconds * p.sample_rate)
    t = np.arange(n) / p.sample_rate
    rng = np.random.default_rng(4)
    emg = (rng.standard_normal((n, p.n_channels)) * 10
           + 200 * np.sin(2 * np.pi * mains * t)[:, None]).astype(np.float32)
    with RecordingWriter(path, StreamInfo("mains", p.n_channels, p.sample_rate)) as writer:
        for k in range(0, n, 250):
            writer.append(emg[k:k + 250], 10.0 + t[k:k + 250])
    return emg


def test_snapshot_raw_tail_keeps_the_mains_the_filter_removes(model, tmp_path):
    from scipy.signal import welch

    p = model.preprocessing
    emg = _write_mains_recording(tmp_path / "mains.h5", model)
    config = PipelineConfig(display_seconds=1.0, max_catchup_hops=100_000)
    with Pipeline(open_source(f"replay://{tmp_path / 'mains.h5'}?speed=0"), model,
                  config) as pipeline:
        assert pipeline.wait(30), "the pipeline did not end with the replay"
        snap = pipeline.snapshot()
    n = int(p.sample_rate)
    assert snap.raw.shape == snap.samples.shape == (n, p.n_channels)
    # the raw tail is exactly what the source delivered, newest last
    np.testing.assert_array_equal(snap.raw, emg[-n:])
    np.testing.assert_array_equal(snap.raw_timestamps, snap.timestamps)
    freqs, raw_power = welch(snap.raw, fs=p.sample_rate, nperseg=512, axis=0)
    _, filtered_power = welch(snap.samples, fs=p.sample_rate, nperseg=512, axis=0)
    raw_power, filtered_power = raw_power.mean(axis=1), filtered_power.mean(axis=1)
    at_mains = np.argmin(np.abs(freqs - 50.0))
    assert np.argmax(raw_power) == at_mains
    assert np.argmax(filtered_power) != at_mains  # the notch took it out
    assert filtered_power[at_mains] < 1e-3 * raw_power[at_mains]


@pytest.mark.slow
def test_reset_while_paused_zeroes_the_reported_adaptation_stats(model):
    """The adapter's child imports torch (seconds), hence slow. After a reset the stats (and
    snapshots) report zero counts at once, though the adapter is paused, and count again
    once adaptation resumes."""
    pytest.importorskip("torch", reason="needs the adapt extra (torch)")
    with Pipeline(open_source("sim://"), model, PipelineConfig(adapt=True)) as pipeline:

        def windows_seen() -> int:
            stats = pipeline.stats.adaptation
            return 0 if stats is None else stats.windows_seen

        deadline = time.monotonic() + 90.0
        while windows_seen() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert windows_seen() > 0, pipeline.adaptation_error
        pipeline.stop_adaptation()
        time.sleep(0.5)  # the paused adapter's last reports arrive
        assert windows_seen() > 0
        pipeline.reset_adaptation()
        assert windows_seen() == 0  # immediately, not when the adapter answers
        stats = pipeline.snapshot().stats.adaptation
        assert stats.windows_seen == stats.teacher_updates == stats.pseudo_labels_accepted == 0
        time.sleep(1.0)  # the adapter's own post-reset report says the same
        assert windows_seen() == 0 and pipeline.adaptation_error is None
        pipeline.start_adaptation()
        deadline = time.monotonic() + 30.0
        while windows_seen() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert windows_seen() > 0


def _constant_graph(n_channels: int, window: int, logits: list[float]) -> bytes:
    """A real ONNX graph whose logits ignore the input: (batch, C, W) -> constant."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    k = len(logits)
    nodes = [
        helper.make_node("ReduceMean", ["emg", "axes"], ["mean"], keepdims=0),  # (B, C)
        helper.make_node("Mul", ["mean", "zero"], ["zeroed"]),
        helper.make_node("MatMul", ["zeroed", "w"], ["embedding"]),  # (B, K)
        helper.make_node("Add", ["embedding", "bias"], ["logits"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("w", TensorProto.FLOAT, [n_channels, k], [0.0] * (n_channels * k)),
        helper.make_tensor("bias", TensorProto.FLOAT, [k], logits),
    ]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info(
            "emg", TensorProto.FLOAT, ["batch", n_channels, window])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", k])],
        inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def test_model_swap_mid_stream_changes_outputs_without_a_gap(model):
    p = model.preprocessing
    target = [0.0, 0.0, 9.0, 0.0, 0.0]  # class 2 with p ~ 0.9995 whatever the input
    constant = _constant_graph(p.n_channels, p.window, target)
    pipeline = Pipeline(open_source("sim://"), model, _every_hop(smoothing="none", debounce=1,
                                                                  threshold=0.0))
    events: list[GestureEvent] = []
    pipeline.subscribe(events.append)
    with pipeline:
        time.sleep(0.8)
        pipeline.swap_model(constant)
        time.sleep(0.5)
    before = [e for e in events if e.model_version == 0]
    after = [e for e in events if e.model_version == 1]
    assert len(before) >= 5 and len(after) >= 5
    assert pipeline.stats.model_version == 1
    index = np.array([e.sample_index for e in events])
    np.testing.assert_array_equal(np.diff(index), p.hop)  # no hop lost at the swap
    assert [e.model_version for e in events] == sorted(e.model_version for e in events)
    expected = np.exp(target) / np.exp(target).sum()
    for e in after:
        np.testing.assert_allclose(e.probabilities, expected, rtol=1e-5)
    # the random source model does not produce that output
    assert not any(np.allclose(e.probabilities, expected, rtol=1e-3) for e in before)


def test_swap_refuses_a_model_of_another_shape(model):
    other = train.make_test_model(n_channels=8)
    with Pipeline(open_source("sim://"), model) as pipeline:
        with pytest.raises(ModelFileError, match="8 ch"):
            pipeline.swap_model(other)
        with pytest.raises(ModelFileError, match="is not an ONNX model"):
            pipeline.swap_model(b"not an onnx graph")
        assert pipeline.is_running


def test_failing_subscriber_does_not_stop_inference(model):
    calls = []

    def broken(event):
        calls.append(event)
        raise RuntimeError("subscriber bug")

    with Pipeline(open_source("sim://"), model, _every_hop()) as pipeline:
        unsubscribe = pipeline.subscribe(broken)
        time.sleep(0.8)
        assert pipeline.is_running and len(calls) >= 3
        unsubscribe()
        n = len(calls)
        time.sleep(0.2)
    assert len(calls) == n
    assert pipeline.stats.hops > n


def test_lsl_marker_outlet_publishes_event_json(model, unique_id):
    import json

    with LSLMarkerOutlet(unique_id, source_id=unique_id) as outlet:
        found = pylsl.resolve_byprop("source_id", unique_id, timeout=5)
        assert found and found[0].type() == "Markers"
        inlet = pylsl.StreamInlet(found[0])
        inlet.open_stream(timeout=5)
        with Pipeline(open_source("sim://"), model, _every_hop()) as pipeline:
            pipeline.subscribe(outlet)
            time.sleep(1.0)
        received = []
        while True:
            sample, stamp = inlet.pull_sample(timeout=0.5)
            if sample is None:
                break
            received.append((json.loads(sample[0]), stamp))
    assert len(received) >= 5
    first, stamp = received[0]
    assert {"gesture", "confidence", "sample_index", "latency_ms"} <= set(first)
    assert stamp == pytest.approx(first["timestamp"], abs=1e-3)


@pytest.mark.parametrize("adapt", [False, True])
def test_live_path_imports_no_torch(model, tmp_path, adapt):
    """Inference never imports torch; adaptation keeps it in its child process."""
    path = save_model_file(tmp_path / "m.emgm", model)
    code = f"""
import sys, time
from emgstream.modelfile import load_model_file
from emgstream.pipeline import Pipeline, PipelineConfig
from emgstream.sources import open_source
events = []
with Pipeline(open_source("sim://"), load_model_file({str(path)!r}),
              PipelineConfig(emit="hop", adapt={adapt})) as p:
    p.subscribe(events.append)
    time.sleep(0.6)
    assert p.adaptation_running == {adapt}
    # with adaptation, wait for the adapter's stats to reach this process: unpickling them
    # must not import torch either
    deadline = time.monotonic() + 90
    while {adapt} and p.stats.adaptation is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {adapt} or p.stats.adaptation is not None, "no adaptation stats arrived"
assert events, "no events"
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PyQt6"))
print("HEAVY", heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_replay_to_the_end_equals_offline_inference(model, tmp_path):
    """Live path == offline path: same causal filter, same windows, same probabilities."""
    import onnxruntime as ort

    from emgstream.dsp import filter_offline
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    p = model.preprocessing
    n = 3 * int(p.sample_rate) + 17
    rng = np.random.default_rng(3)
    emg = (rng.standard_normal((n, 16)) * 40 + 300).astype(np.float32)  # DC offset too
    emg[:, 5] *= 4
    info = StreamInfo("rec", 16, p.sample_rate)
    with RecordingWriter(tmp_path / "rec.h5", info, user="u0") as writer:
        for k in range(0, n, 333):
            writer.append(emg[k:k + 333], 100.0 + np.arange(k, min(n, k + 333)) / p.sample_rate)
    config = PipelineConfig(emit="hop", smoothing="none", debounce=1, threshold=0.0,
                            max_catchup_hops=100_000)
    pipeline = Pipeline(open_source(f"replay://{tmp_path / 'rec.h5'}?speed=0"), model, config)
    events: list[GestureEvent] = []
    pipeline.subscribe(events.append)
    with pipeline:
        assert pipeline.wait(30), "the pipeline did not end with the replay"
        assert not pipeline.is_running
    assert pipeline.error is None
    ends = np.arange(p.window, n + 1, p.hop)
    assert [e.sample_index for e in events] == list(ends - 1)
    filtered = filter_offline(emg, p.sample_rate, p)
    windows = np.stack([filtered[e - p.window:e].T for e in ends])
    session = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"emg": windows})[0].astype(np.float64)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    live = np.array([e.probabilities for e in events])
    np.testing.assert_allclose(live, expected, rtol=1e-4, atol=1e-6)
