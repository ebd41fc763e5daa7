"""End-to-end latency with the live demo window open against headless, and frames per second.

Three modes on the same stream (the simulated band, paced in real time) with the same
model, one after the other and alternated over ``--repeats`` rounds:

- headless: the in-process :class:`Pipeline` (``emgstream run``, ``demo --headless``);
- process: a :class:`PipelineProcess` without a window, so the cost of the process hop
  itself shows;
- window: the live demo window, whose pipeline runs in a :class:`PipelineProcess`, with
  Qt's own event loop, the window shown (offscreen unless a display is set) and redrawing
  from snapshots on its timer, exactly as ``emgstream demo`` does.

Every hop emits an event (``emit="hop"``), so the latencies are those of every window: from
the arrival of its last sample at the host to its decision, measured by the pipeline where
it runs (the child, for the last two modes).

    python benchmarks/bench_gui.py                      # 3 rounds of 20 s each
    python benchmarks/bench_gui.py --seconds 60 --repeats 5 --model models/default.emgm

Printed: per mode, the median over rounds of latency p50 and p99, frames per second and the
CPU of each process; the ratios to headless (aim for the window: at most 1.2x), both as the
ratio of the medians and as the median of each round's ratio; then what a snapshot costs in
process and across the pipe (time per call, bytes).
"""

from __future__ import annotations

import argparse
import os
import pickle
import threading
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class _Latencies:
    """Subscriber collecting every event's latency (called in the inference thread)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        with self._lock:
            self.values.append(event.latency)

    def since(self, start: int) -> np.ndarray:
        with self._lock:
            return np.array(self.values[start:])


class _Cpu:
    """CPU use in percent of one core between ``begin()`` and ``end()``, of this process
    and (given one) of a PipelineProcess's child."""

    def __init__(self, process=None) -> None:
        self._process = process

    def _child(self) -> float:
        if self._process is None:
            return float("nan")
        self._process.stats  # a reply brings the child's CPU seconds up to date
        return self._process.cpu_seconds

    def begin(self) -> None:
        self._t, self._own, self._other = time.perf_counter(), time.process_time(), self._child()

    def end(self) -> tuple[float, float, float]:
        """``(wall seconds, this process %, child %)``."""
        own, other = time.process_time(), self._child()
        wall = time.perf_counter() - self._t
        return wall, 100 * (own - self._own) / wall, 100 * (other - self._other) / wall


def _snapshot_costs(take, n: int = 60) -> float:
    """Median seconds of ``take()`` called at 30 per second (a viewer's pace)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        take()
        times.append(time.perf_counter() - t)
        time.sleep(max(0.0, 1 / 30 - times[-1]))
    return float(np.median(times))


def _measure(pipeline, latencies: _Latencies, seconds: float, warmup: float,
             process=None) -> dict:
    """Latencies and CPU over ``seconds`` after ``warmup``, then the cost of snapshots."""
    time.sleep(warmup)
    start = len(latencies.values)
    cpu = _Cpu(process)
    cpu.begin()
    time.sleep(seconds)
    lat = latencies.since(start)
    wall, own, child = cpu.end()
    result = {"lat": lat, "fps": float("nan"), "cpu": own, "cpu_child": child,
              "hops_per_s": len(lat) / wall, "skipped": pipeline.stats.skipped_hops,
              "snapshot_s": _snapshot_costs(pipeline.snapshot)}
    if process is not None:  # what one viewer's snapshot costs on the pipe, against the tails
        since = (process._tails[0].end, process._tails[1].end)
        time.sleep(1 / 30)
        delta = process._call("snapshot", since)
        result["delta_bytes"] = len(pickle.dumps(delta, protocol=pickle.HIGHEST_PROTOCOL))
        result["full_bytes"] = len(pickle.dumps(process.snapshot(),
                                                protocol=pickle.HIGHEST_PROTOCOL))
    return result


def run_headless(model, uri: str, config, seconds: float, warmup: float) -> dict:
    """The in-process Pipeline, no window (``emgstream run``, ``demo --headless``)."""
    from emgstream.pipeline import Pipeline
    from emgstream.sources import open_source

    latencies = _Latencies()
    pipeline = Pipeline(open_source(uri), model, config)
    pipeline.subscribe(latencies)
    pipeline.start()
    try:
        return _measure(pipeline, latencies, seconds, warmup)
    finally:
        pipeline.stop()


def run_process(model, uri: str, config, seconds: float, warmup: float) -> dict:
    """The pipeline in a child process (PipelineProcess), no window: the hop's own cost."""
    from emgstream.pipeline import PipelineProcess

    latencies = _Latencies()
    process = PipelineProcess(uri, model, config)
    process.subscribe(latencies)
    process.start()
    try:
        return _measure(process, latencies, seconds, warmup, process)
    finally:
        process.stop()


def run_window(app, model, uri: str, config, seconds: float, warmup: float) -> dict:
    """The live demo window, its pipeline in a child process, as ``emgstream demo`` runs."""
    from PyQt6 import QtCore

    from apps.live_demo import LiveDemoWindow

    window = LiveDemoWindow(model, uri, config=config)
    latencies = _Latencies()
    window.pipeline.subscribe(latencies)
    window.show()
    cpu = _Cpu(window.pipeline)
    marks = {}

    def begin() -> None:
        marks["start"] = len(latencies.values)
        marks["frames"] = window.frames_drawn
        cpu.begin()

    def end() -> None:
        marks["lat"] = latencies.since(marks["start"])
        marks["wall"], marks["cpu"], marks["cpu_child"] = cpu.end()
        marks["fps"] = (window.frames_drawn - marks["frames"]) / marks["wall"]
        marks["skipped"] = window.pipeline.stats.skipped_hops
        window.close()
        app.quit()

    QtCore.QTimer.singleShot(int(warmup * 1000), begin)
    QtCore.QTimer.singleShot(int((warmup + seconds) * 1000), end)
    app.exec()
    return {"lat": marks["lat"], "fps": marks["fps"], "cpu": marks["cpu"],
            "cpu_child": marks["cpu_child"], "hops_per_s": len(marks["lat"]) / marks["wall"],
            "skipped": marks["skipped"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (headless + window)")
    parser.add_argument("--source", default="sim://", help="source URI (default: sim://)")
    parser.add_argument("--model", default=None,
                        help="model file (default: the shipped model, else a random test model)")
    args = parser.parse_args()

    from PyQt6 import QtWidgets

    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import PipelineConfig, default_model_path

    path = args.model or default_model_path()
    if path is not None:
        model, model_name = load_model_file(path), str(path)
    else:
        from emgstream.sources import open_source
        from emgstream.train import make_test_model

        model = make_test_model(classes=open_source(args.source).class_names)
        model_name = "make_test_model (random weights; no shipped model found)"
    config = PipelineConfig(emit="hop", latency_window=100_000)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench_gui"])

    modes = {"headless": lambda: run_headless(model, args.source, config, args.seconds,
                                              args.warmup),
             "process": lambda: run_process(model, args.source, config, args.seconds,
                                            args.warmup),
             "window": lambda: run_window(app, model, args.source, config, args.seconds,
                                          args.warmup)}
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode, run in modes.items():
            results[mode].append(run())

    def median(mode: str, key) -> float:
        return float(np.median([key(r) for r in results[mode]]))

    rows = {}
    for mode in modes:
        rows[mode] = {
            "p50": median(mode, lambda r: np.percentile(r["lat"], 50) * 1e3),
            "p99": median(mode, lambda r: np.percentile(r["lat"], 99) * 1e3),
            "fps": median(mode, lambda r: r["fps"]),
            "cpu": median(mode, lambda r: r["cpu"]),
            "cpu_child": median(mode, lambda r: r["cpu_child"]),
            "hops": median(mode, lambda r: r["hops_per_s"]),
            "skipped": median(mode, lambda r: r["skipped"]),
        }
    print(f"Source {args.source}, model {model_name}; {model.preprocessing.n_channels} ch at "
          f"{model.preprocessing.sample_rate:g} Hz, hop {model.preprocessing.hop} samples; "
          f"{args.repeats} rounds x {args.seconds:g} s, medians over rounds; "
          f"{os.cpu_count()} CPUs; Qt platform {os.environ.get('QT_QPA_PLATFORM')}.\n")
    print("headless: Pipeline in this process. process: PipelineProcess, no window. "
          "window: the live demo window, its pipeline in a PipelineProcess. CPU in % of one "
          "core: the process that holds the window (or the caller), and the pipeline's "
          "child process (its adapter, off here, would be a process of its own).\n")
    print("| mode | latency p50 (ms) | latency p99 (ms) | frames/s | CPU caller / window (%) "
          "| CPU pipeline process (%) | hops/s | skipped hops |")
    print("|---|---|---|---|---|---|---|---|")

    def number(x: float, fmt: str) -> str:
        return "–" if np.isnan(x) else format(x, fmt)

    for mode, r in rows.items():
        print(f"| {mode} | {r['p50']:.2f} | {r['p99']:.2f} | {number(r['fps'], '.1f')} | "
              f"{r['cpu']:.0f} | {number(r['cpu_child'], '.0f')} | {r['hops']:.1f} | "
              f"{r['skipped']:.0f} |")

    # Rounds run back to back, so a round's runs share the machine's load: the median of
    # the per-round ratios is the steadier comparison on a shared machine.
    def paired(mode: str, q: float) -> float:
        return float(np.median([np.percentile(m["lat"], q) / np.percentile(h["lat"], q)
                                for h, m in zip(results["headless"], results[mode])]))

    h = rows["headless"]
    for mode in ("process", "window"):
        m = rows[mode]
        print(f"| {mode} / headless (ratio of medians) | {m['p50'] / h['p50']:.2f}x | "
              f"{m['p99'] / h['p99']:.2f}x | | | | | |")
        print(f"| {mode} / headless (median of per-round ratios) | {paired(mode, 50):.2f}x | "
              f"{paired(mode, 99):.2f}x | | | | | |")

    snapshot_ms = {mode: median(mode, lambda r: r["snapshot_s"] * 1e3)
                   for mode in ("headless", "process")}
    print("\nSnapshots at 30 per second, measured after each run above (medians):\n")
    print("| snapshot | time per call (ms) | bytes over the pipe |")
    print("|---|---|---|")
    print(f"| Pipeline.snapshot() (in process) | {snapshot_ms['headless']:.3f} | – |")
    print(f"| PipelineProcess.snapshot() (round trip, delta since the last) | "
          f"{snapshot_ms['process']:.3f} | {median('process', lambda r: r['delta_bytes']):,.0f} |")
    print(f"| whole display tails, were they sent every frame | – | "
          f"{median('process', lambda r: r['full_bytes']):,.0f} |")
    print(f"| round trip / in process | {snapshot_ms['process'] / snapshot_ms['headless']:.1f}x "
          f"| |")


if __name__ == "__main__":
    main()
