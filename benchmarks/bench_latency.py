"""Live-path benchmarks: end-to-end latency, onset-to-detection, batch inference throughput.

1. End-to-end latency (host arrival of a window's last sample -> its decision), p50 / p99 /
   max over every hop after a warm-up, on ``sim://`` in real time at 16 channels, 2 kHz,
   with the model's hop (20 ms for the shipped and test models); without and with online
   adaptation running in the same process.
2. Onset-to-detection on the simulated band's ground truth (user 0 on session 2, the demo's
   wearer: a session the shipped model never trained on): for each gesture onset, the
   time from the onset (LSL time of its first sample) to the emission of the first event
   naming that gesture before the next change; median, p90 and the fraction detected. Needs
   a model trained on the simulator's gestures (the shipped model); skipped otherwise.
   The same decisions replayed offline over more onsets (``--replay-users``, default the
   training users 0-3 on session 2, 120 s each): the model file's graph in ONNX Runtime on
   every hop's window of the live filter chain, then the pipeline's own decision state
   machine; delays in stream time (the pipeline's ~1 ms of compute not included).
3. Offline batch inference throughput (batch 64) in windows per second, ONNX Runtime
   against torch eager on the same weights, same thread count, as a ratio.

All timings are medians of the runs in this process; the machine is shared, so compare the
rows of one run with each other. Example::

    python benchmarks/bench_latency.py --seconds 30 --onset-seconds 45
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _common import median_seconds


def _load_model(path: str | None):
    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import default_model_path

    path = path or default_model_path()
    if path is not None:
        return load_model_file(path), str(path)
    from emgstream.train import make_test_model

    return make_test_model(), "make_test_model() (random weights: no shipped model found)"


def _latency_run(model, seconds: float, warmup: float, adapt: bool, nice: int,
                 realtime: int = 0) -> dict:
    from emgstream.pipeline import Pipeline, PipelineConfig
    from emgstream.sources import open_source

    p = model.preprocessing
    uri = f"sim://?channels={p.n_channels}&rate={p.sample_rate:g}"
    latencies: list[float] = []
    started = []

    def on_event(event):
        if started and warmup <= event.emitted - started[0] < warmup + seconds:
            latencies.append(event.latency)

    adapt_config = None
    if adapt and model.provenance.get("trained") is False:
        from emgstream.adapt import OnlineConfig

        # an untrained model is never confident: accept every pseudo-label so that the
        # adapter really trains at every call (the heaviest load it can put on the cores)
        adapt_config = OnlineConfig(xi=0.0, n_consecutive=1)
    # swaps every 2 s (the default is 5 s) so that session builds fall inside the window
    config = PipelineConfig(emit="hop", adapt=adapt, adapt_nice=nice, adapt_swap_seconds=2.0,
                            realtime_priority=realtime, adapt_config=adapt_config)
    pipeline = Pipeline(open_source(uri), model, config)
    pipeline.subscribe(on_event)
    from pylsl import local_clock

    with pipeline:
        if adapt:  # measure while the adapter trains, not while its process starts
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and pipeline.adaptation_error is None:
                a = pipeline.stats.adaptation
                if a is not None and a.steps > 0:
                    break
                time.sleep(0.2)
        before = pipeline.stats
        swaps0, skipped0 = before.model_version, before.skipped_hops
        started.append(local_clock())
        cpu0 = time.process_time()
        pipeline.wait(seconds + warmup)
        stats = pipeline.stats
    cpu = (time.process_time() - cpu0) / (seconds + warmup)
    lat = np.array(latencies) * 1e3
    return {"hops": len(lat), "p50": np.percentile(lat, 50), "p99": np.percentile(lat, 99),
            "max": lat.max(), "skipped": stats.skipped_hops - skipped0, "cpu": cpu,
            "swaps": stats.model_version - swaps0, "adapt_error": pipeline.adaptation_error,
            "adaptation": stats.adaptation}


def bench_latency(model, seconds: float, warmup: float) -> None:
    p = model.preprocessing
    print(f"\n## End-to-end latency: sim:// real time, {p.n_channels} ch @ {p.sample_rate:g} Hz,"
          f" window {p.window} ({p.window / p.sample_rate * 1e3:.0f} ms), hop {p.hop} "
          f"({p.hop / p.sample_rate * 1e3:.0f} ms), {seconds:g} s after {warmup:g} s warm-up, "
          f"{os.cpu_count()} cores\n")
    rows = []
    try:
        from emgstream.adapt import OnlineAdapter  # noqa: F401
        have_adapter = True
    except ImportError:
        have_adapter = False
    for realtime in (0, 10):
        label = ", SCHED_FIFO 10" if realtime else ""
        rows.append((f"no adaptation{label}",
                     _latency_run(model, seconds, warmup, False, 0, realtime)))
        if have_adapter:
            rows.append((f"online adaptation (nice 10){label}",
                         _latency_run(model, seconds, warmup, True, 10, realtime)))
    print("| run | hops | p50 ms | p99 ms | max ms | skipped hops | model swaps in the window | "
          "CPU of the pipeline process (cores) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['hops']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.1f} | "
              f"{r['skipped']} | {r['swaps']} | {r['cpu']:.2f} |")
    print(f"\nload average during the runs: {os.getloadavg()[0]:.1f} (1 min)")
    base = {name: r for name, r in rows if name.startswith("no adaptation")}
    for name, r in rows:
        if name.startswith("online"):
            ref = base[name.replace("online adaptation (nice 10)", "no adaptation")]
            print(f"\n{name}: p99 {r['p99'] / ref['p99']:.2f}x the same run without adaptation"
                  + (f"; adaptation failed: {r['adapt_error']}" if r["adapt_error"] else "")
                  + (f"; adapter: {r['adaptation']}" if r["adaptation"] is not None else ""))
    if not have_adapter:
        print("\nonline adaptation: not measured (emgstream.adapt.OnlineAdapter not available)")


def _sim_recording(user: int, session: int, seconds: float, p):
    """Raw samples (T, C) and per-sample labels of the simulated band, generated offline."""
    from emgstream.sources import open_source

    uri = (f"sim://?channels={p.n_channels}&rate={p.sample_rate:g}&realtime=0"
           f"&chunk={int(p.sample_rate)}&user={user}&session={session}")
    parts, labels = [], []
    with open_source(uri) as source:
        names = source.class_names
        for _ in range(int(seconds)):
            samples, _ = source.read(1.0)
            parts.append(samples)
            labels.append(source.last_labels.copy())
    return np.concatenate(parts), np.concatenate(labels), names


def _windows(x, p):
    """Filtered windows (n, C, window) ending every hop, and the index of each last sample."""
    from emgstream.dsp import filter_offline

    filtered = filter_offline(x, p.sample_rate, p)
    ends = np.arange(p.window, len(filtered) + 1, p.hop)
    return np.stack([filtered[e - p.window:e].T for e in ends]), ends - 1


def _probabilities(model, windows) -> np.ndarray:
    """(n, classes) softmax of the model file's graph on ``windows`` (ONNX Runtime)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run([model.output_names[0]],
                                         {model.input_name: windows[i:i + 256]})[0]
                             for i in range(0, len(windows), 256)])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def _offline_accuracy(model, windows, labels) -> float:
    return float((_probabilities(model, windows).argmax(1) == labels).mean())


def _reference_model(p, seconds: float = 180.0):
    """A within-user reference: log-RMS of the last 200 ms per channel, then LDA, fitted on
    the simulated user 0's session 1 and written as an ONNX graph. It is not the project's
    model: it isolates the pipeline's own onset delay from the shipped model's accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from emgstream.modelfile import ModelFile

    x, labels, names = _sim_recording(0, 1, seconds, p)
    windows, last = _windows(x, p)
    tail = int(0.2 * p.sample_rate)
    feats = np.log(np.mean(np.square(windows[:, :, -tail:], dtype=np.float64), axis=2) + 1e-6)
    y = labels[last]
    k = len(names)
    present = [c for c in range(k) if (y == c).any()]
    means = np.zeros((k, p.n_channels))
    means[present] = [feats[y == c].mean(0) for c in present]
    within = sum(np.cov(feats[y == c].T) * ((y == c).sum() - 1) for c in present)
    cov = within / (len(feats) - len(present)) + 1e-3 * np.eye(p.n_channels)
    inv = np.linalg.inv(cov)
    weight = inv @ means.T
    prior = np.maximum(np.bincount(y, minlength=k), 1) / len(y)
    bias = -0.5 * np.sum(means @ inv * means, axis=1) + np.log(prior)
    bias[[c for c in range(k) if c not in present]] = -1e9
    const = [numpy_helper.from_array(np.array([p.window - tail], np.int64), "start"),
             numpy_helper.from_array(np.array([p.window], np.int64), "stop"),
             numpy_helper.from_array(np.array([2], np.int64), "time_axis"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array(weight.astype(np.float32), "weight"),
             numpy_helper.from_array(bias.astype(np.float32), "bias")]
    nodes = [helper.make_node("Slice", ["emg", "start", "stop", "time_axis"], ["tail"]),
             helper.make_node("Mul", ["tail", "tail"], ["power"]),
             helper.make_node("ReduceMean", ["power", "time_axis"], ["mean_power"],
                              keepdims=0),
             helper.make_node("Add", ["mean_power", "eps"], ["floored"]),
             helper.make_node("Log", ["floored"], ["embedding"]),
             helper.make_node("MatMul", ["embedding", "weight"], ["scores"]),
             helper.make_node("Add", ["scores", "bias"], ["logits"])]
    graph = helper.make_graph(
        nodes, "logrms_lda",
        [helper.make_tensor_value_info("emg", TensorProto.FLOAT,
                                       ["batch", p.n_channels, p.window])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                       ["batch", p.n_channels])], const)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return ModelFile(architecture={"name": "logrms-lda-reference"}, preprocessing=p,
                     class_names=list(names), onnx=proto.SerializeToString(), weights={},
                     provenance={"recipe": "bench_latency reference (sim user 0, session 1)",
                                 "trained": True})


#: (smoothing, smoothing_hops, debounce) rows; the first is PipelineConfig's default
_DECISIONS = (("ema", 5, 3), ("ema", 3, 2), ("none", 1, 3), ("majority", 5, 3))
_ONSET_SESSION = 2  # the shipped model trained on sessions 0 and 1 (models/default.toml)


def bench_onset(model, seconds: float, recording: str | None, threshold: float) -> None:
    """Median time from each gesture onset to the first event naming it, before the next
    change of gesture; per decision setting. Delays are measured in stream samples plus the
    event's own latency: ``(event.sample_index - onset_index) / rate + event.latency``."""
    from emgstream.pipeline import Pipeline, PipelineConfig
    from emgstream.sources import open_source

    p = model.preprocessing
    if recording is None:
        uri = f"sim://?channels={p.n_channels}&rate={p.sample_rate:g}&session={_ONSET_SESSION}"
        names = open_source(uri).class_names
        what = f"sim:// user 0, session {_ONSET_SESSION} (its ground truth)"
    else:
        from emgstream.io import read_recording

        rec = read_recording(recording)
        if rec.labels is None:
            raise SystemExit(f"{recording} has no labels")
        uri = f"replay://{recording}?speed=1"
        names = list(rec.class_names)
        seconds = min(seconds, rec.emg.shape[0] / rec.sample_rate)
        what = f"replay of {recording} (its labels)"
    print(f"\n## Onset to detection: {what}, real time, {seconds:g} s per row, threshold "
          f"{threshold:g}\n")
    shared = set(names) & set(model.class_names)
    if len(shared) < 2 or model.provenance.get("trained") is False:
        print(f"skipped: the model ({model.provenance.get('recipe', '?')}) is not trained on "
              f"the stream's gestures {names}")
        return
    if recording is None and list(names) == list(model.class_names):
        x, labels, _ = _sim_recording(0, _ONSET_SESSION, min(seconds, 60.0), p)
        windows, last = _windows(x, p)
        recipe = model.provenance.get("recipe")
        name = recipe if isinstance(recipe, str) else model.architecture.get("name", "?")
        print(f"model: {name}; offline accuracy per hop on this stream's first "
              f"{min(seconds, 60.0):g} s: {_offline_accuracy(model, windows, labels[last]):.1%}"
              "\n")
    rows = []
    for smoothing, hops, debounce in _DECISIONS:
        source = open_source(uri)
        events = []
        config = PipelineConfig(smoothing=smoothing, smoothing_hops=hops, debounce=debounce,
                                threshold=threshold)
        with Pipeline(source, model, config) as pipeline:
            pipeline.subscribe(events.append)
            pipeline.wait(seconds)
            snap = pipeline.snapshot()
        last = snap.stats.samples - 1  # index of the last sample the pipeline took
        if recording is None:
            # (lsl_time, class) at every change -> sample index (sim stamps are 1/rate apart)
            t0 = snap.timestamps[-1] - last / p.sample_rate
            changes = [(round((t - t0) * p.sample_rate), c) for t, c in source.transitions]
        else:
            labels = rec.labels
            edges = np.flatnonzero(np.diff(labels, prepend=-2))
            changes = [(int(i), int(labels[i])) for i in edges]
        gestures = [(i, names[c] if c >= 0 and names[c] in shared else None)
                     for i, c in changes]
        scored = _score_onsets(gestures, [(e.sample_index, e.gesture, e.latency)
                                          for e in events], last, p.sample_rate)
        rows.append((smoothing, hops, debounce, *scored, len(events)))
    _print_onset_table(rows)


def bench_onset_replay(model, users: list[int], seconds: float, threshold: float) -> None:
    """Onset to detection replayed offline: every hop's window through ONNX Runtime, then
    the pipeline's decision state machine (``Decider``), per decision setting."""
    from emgstream.pipeline import PipelineConfig
    from emgstream.pipeline import Decider

    p = model.preprocessing
    runs = []
    for user in users:
        x, labels, names = _sim_recording(user, _ONSET_SESSION, seconds, p)
        if list(names) != list(model.class_names):
            print(f"\nreplay skipped: the model's classes are not the simulator's {names}")
            return
        windows, last = _windows(x, p)
        runs.append((_probabilities(model, windows), last, labels))
    hop_accuracy = np.mean([(pr.argmax(1) == lab[last]).mean() for pr, last, lab in runs])
    print(f"\n## Onset to detection replayed offline: sim:// users "
          f"{','.join(map(str, users))}, session {_ONSET_SESSION}, {seconds:g} s each, "
          f"threshold {threshold:g}\n\nper-hop accuracy (label of each window's last "
          f"sample, every hop): {hop_accuracy:.1%}\n")
    rows = []
    for smoothing, hops, debounce in _DECISIONS:
        config = PipelineConfig(smoothing=smoothing, smoothing_hops=hops, debounce=debounce,
                                threshold=threshold)
        delays, n_onsets, wrong, n_events = [], 0, 0, 0
        for probs, last, labels in runs:
            decider = Decider(config, len(model.class_names))
            events = []
            for i, row in enumerate(probs):
                stable, _, _, changed = decider.update(row)
                if changed:
                    events.append((last[i], model.class_names[stable], 0.0))
            edges = np.flatnonzero(np.diff(labels.astype(np.int64), prepend=-2))
            # onsets before the first full window cannot be detected in time: not scored
            gestures = [(int(i), model.class_names[labels[i]]
                         if i >= p.window and labels[i] >= 0 else None) for i in edges]
            d, n, w = _score_onsets(gestures, events, last[-1], p.sample_rate)
            delays += d
            n_onsets, wrong, n_events = n_onsets + n, wrong + w, n_events + len(events)
        rows.append((smoothing, hops, debounce, delays, n_onsets, wrong, n_events))
    _print_onset_table(rows)


def _score_onsets(gestures, events, last: int, rate: float):
    """Onset-to-detection of one stream. ``gestures``: (sample index, class name or None
    where not scored) at every change of label; ``events``: (sample index, gesture,
    latency s) of every event; ``last``: index of the last sample taken. A gesture (not
    rest) is scored when the next change comes by ``last``: the delay to the first event
    naming it before that change, and the events naming another gesture meanwhile.
    Returns (delays ms, onsets, wrong events)."""
    delays, n_onsets, wrong = [], 0, 0
    for (onset, name), (end, _) in zip(gestures, gestures[1:]):
        if name is None or name == "rest" or end > last:
            continue  # unlabelled or unknown to the model, rest, or cut by the stop
        n_onsets += 1
        during = [(i, g, lat) for i, g, lat in events if onset <= i < end]
        hit = next(((i, lat) for i, g, lat in during if g == name), None)
        wrong += sum(g != name for _, g, _ in during)
        if hit is not None:
            delays.append(((hit[0] - onset) / rate + hit[1]) * 1e3)
    return delays, n_onsets, wrong


def _print_onset_table(rows) -> None:
    print("| decision | onsets | detected | median ms | p90 ms | events | wrong events "
          "during a gesture |")
    print("|---|---|---|---|---|---|---|")
    for smoothing, hops, debounce, delays, n, wrong, n_events in rows:
        d = np.array(delays)
        med, p90 = (np.median(d), np.percentile(d, 90)) if len(d) else (np.nan, np.nan)
        print(f"| {smoothing} {hops} hops, debounce {debounce} | {n} | {len(d)} "
              f"({len(d) / max(n, 1):.0%}) | {med:.0f} | {p90:.0f} | {n_events} | {wrong} |")


def bench_throughput(model, batch: int, repeats: int) -> None:
    import onnxruntime as ort
    import torch

    from emgstream.nn import load_model

    p = model.preprocessing
    x = np.random.default_rng(0).standard_normal(
        (batch, p.n_channels, p.window)).astype(np.float32) * 50
    net = load_model(model).eval()
    graph = model.onnx
    with torch.inference_mode():
        reference = net(torch.from_numpy(x[:8]))[0].numpy()
    probe = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    gap = float(np.abs(probe.run([model.output_names[0]], {model.input_name: x[:8]})[0]
                       - reference).max())
    if gap > 1e-3:
        from emgstream.nn import export_onnx

        print(f"warning: the model file's ONNX graph disagrees with its own weights (logits "
              f"differ by up to {gap:.3g}); timing a graph re-exported from the weights so "
              "that both sides compute the same function")
        graph = export_onnx(net)
    print(f"\n## Batch inference throughput: batch {batch}, ({p.n_channels}, {p.window}) "
          f"windows, median of {repeats}\n")
    print("| threads | ONNX Runtime windows/s | torch eager windows/s | ratio ORT/torch |")
    print("|---|---|---|---|")
    for threads in sorted({1, os.cpu_count() or 1}):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(graph, sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)

        def run_ort():
            return sess.run([model.output_names[0]], {model.input_name: x})[0]

        def run_torch():
            with torch.inference_mode():
                return net(xt)[0].numpy()

        np.testing.assert_allclose(run_ort(), run_torch(), rtol=1e-3, atol=1e-3)
        t_ort, t_torch = median_seconds(run_ort, repeats), median_seconds(run_torch, repeats)
        print(f"| {threads} | {batch / t_ort:,.0f} | {batch / t_torch:,.0f} | "
              f"{t_torch / t_ort:.2f}x |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="model file (default: the shipped model, else a test model)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="measured seconds per latency run (default 30)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    parser.add_argument("--onset-seconds", type=float, default=45.0,
                        help="seconds of stream per onset-to-detection row (default 45)")
    parser.add_argument("--recording", default=None,
                        help="labelled HDF5 recording to replay for onset-to-detection "
                             "(default: the simulator's ground truth)")
    parser.add_argument("--replay-users", default="0,1,2,3",
                        help="simulated users whose session 2 is replayed offline for "
                             "onset-to-detection (default 0,1,2,3; empty: none)")
    parser.add_argument("--replay-seconds", type=float, default=120.0,
                        help="seconds per replayed user (default 120)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="confidence threshold for onset-to-detection (default 0.5)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", choices=["latency", "onset", "throughput"], default=None)
    args = parser.parse_args(argv)
    model, described = _load_model(args.model)
    print(f"# bench_latency\n\nmodel: {described}\n{model!r}\npython {sys.version.split()[0]}")
    if args.only in (None, "latency"):
        bench_latency(model, args.seconds, args.warmup)
    if args.only in (None, "onset"):
        bench_onset(model, args.onset_seconds, args.recording, args.threshold)
        users = [int(u) for u in args.replay_users.split(",") if u.strip()]
        if users and args.recording is None and model.provenance.get("trained") is not False:
            bench_onset_replay(model, users, args.replay_seconds, args.threshold)
        if args.recording is None:
            print("\nthe same on a within-user reference model (log-RMS + LDA, see "
                  "_reference_model), to separate the pipeline's delay from model accuracy:")
            bench_onset(_reference_model(model.preprocessing), args.onset_seconds, None,
                        args.threshold)
    if args.only in (None, "throughput"):
        bench_throughput(model, args.batch, args.repeats)


if __name__ == "__main__":
    main()
