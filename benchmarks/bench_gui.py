"""End-to-end latency with the live demo window open against headless, and frames per second.

Both modes run the same pipeline on the same stream (the simulated band, paced in real time)
with the same model, in this process, one after the other and alternated over ``--repeats``
rounds. Every hop emits an event (``emit="hop"``), so the latencies are those of every
window: from the arrival of its last sample at the host to its decision. The window mode
runs Qt's own event loop with the window shown (offscreen unless a display is set) and
redrawing from snapshots on its timer, exactly as ``emgstream demo`` does.

    python benchmarks/bench_gui.py                      # 3 rounds of 20 s each
    python benchmarks/bench_gui.py --seconds 60 --repeats 5 --model models/default.emgm

Printed: per mode, the median over rounds of latency p50 and p99, frames per second and
process CPU; then the window/headless ratios (aim: at most 1.2x), both as the ratio of the
medians and as the median of each round's ratio.
"""

from __future__ import annotations

import argparse
import os
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


def _cpu_percent(fn) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return 100.0 * (time.process_time() - cpu) / (time.perf_counter() - wall)


def run_headless(model, uri: str, config, seconds: float, warmup: float) -> dict:
    from emgstream.pipeline import Pipeline
    from emgstream.sources import open_source

    latencies = _Latencies()
    pipeline = Pipeline(open_source(uri), model, config)
    pipeline.subscribe(latencies)
    pipeline.start()
    try:
        time.sleep(warmup)
        start = len(latencies.values)
        t0 = time.perf_counter()
        cpu = _cpu_percent(lambda: time.sleep(seconds))
        lat = latencies.since(start)
        wall = time.perf_counter() - t0
    finally:
        pipeline.stop()
    return {"lat": lat, "fps": float("nan"), "cpu": cpu, "hops_per_s": len(lat) / wall,
            "skipped": pipeline.stats.skipped_hops}


def run_window(app, model, uri: str, config, seconds: float, warmup: float) -> dict:
    from PyQt6 import QtCore

    from apps.live_demo import LiveDemoWindow

    window = LiveDemoWindow(model, uri, config=config)
    latencies = _Latencies()
    window.pipeline.subscribe(latencies)
    window.show()
    marks = {}

    def begin() -> None:
        marks["start"] = len(latencies.values)
        marks["frames"] = window.frames_drawn
        marks["t"] = time.perf_counter()
        marks["cpu"] = time.process_time()

    def end() -> None:
        marks["lat"] = latencies.since(marks["start"])
        wall = time.perf_counter() - marks["t"]
        marks["fps"] = (window.frames_drawn - marks["frames"]) / wall
        marks["cpu_pct"] = 100.0 * (time.process_time() - marks["cpu"]) / wall
        marks["hops_per_s"] = len(marks["lat"]) / wall
        marks["skipped"] = window.pipeline.stats.skipped_hops
        window.close()
        app.quit()

    QtCore.QTimer.singleShot(int(warmup * 1000), begin)
    QtCore.QTimer.singleShot(int((warmup + seconds) * 1000), end)
    app.exec()
    return {"lat": marks["lat"], "fps": marks["fps"], "cpu": marks["cpu_pct"],
            "hops_per_s": marks["hops_per_s"], "skipped": marks["skipped"]}


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

    results: dict[str, list[dict]] = {"headless": [], "window": []}
    for _ in range(args.repeats):
        results["headless"].append(
            run_headless(model, args.source, config, args.seconds, args.warmup))
        results["window"].append(
            run_window(app, model, args.source, config, args.seconds, args.warmup))

    def median(mode: str, key) -> float:
        return float(np.median([key(r) for r in results[mode]]))

    rows = {}
    for mode in ("headless", "window"):
        rows[mode] = {
            "p50": median(mode, lambda r: np.percentile(r["lat"], 50) * 1e3),
            "p99": median(mode, lambda r: np.percentile(r["lat"], 99) * 1e3),
            "fps": median(mode, lambda r: r["fps"]),
            "cpu": median(mode, lambda r: r["cpu"]),
            "hops": median(mode, lambda r: r["hops_per_s"]),
            "skipped": median(mode, lambda r: r["skipped"]),
        }
    print(f"Source {args.source}, model {model_name}; {model.preprocessing.n_channels} ch at "
          f"{model.preprocessing.sample_rate:g} Hz, hop {model.preprocessing.hop} samples; "
          f"{args.repeats} rounds x {args.seconds:g} s, medians over rounds; "
          f"{os.cpu_count()} CPUs; Qt platform {os.environ.get('QT_QPA_PLATFORM')}.\n")
    print("| mode | latency p50 (ms) | latency p99 (ms) | frames/s | process CPU (% of one core) "
          "| hops/s | skipped hops |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in rows.items():
        fps = "–" if np.isnan(r["fps"]) else f"{r['fps']:.1f}"
        print(f"| {mode} | {r['p50']:.2f} | {r['p99']:.2f} | {fps} | {r['cpu']:.0f} | "
              f"{r['hops']:.1f} | {r['skipped']:.0f} |")
    # Rounds run back to back, so a round's two runs share the machine's load: the median of
    # the per-round ratios is the steadier comparison on a shared machine.
    def paired(q: float) -> float:
        return float(np.median([np.percentile(w["lat"], q) / np.percentile(h["lat"], q)
                                for h, w in zip(results["headless"], results["window"])]))

    h, w = rows["headless"], rows["window"]
    print(f"| window / headless (ratio of medians) | {w['p50'] / h['p50']:.2f}x | "
          f"{w['p99'] / h['p99']:.2f}x | | {w['cpu'] / h['cpu']:.2f}x | | |")
    print(f"| window / headless (median of per-round ratios) | {paired(50):.2f}x | "
          f"{paired(99):.2f}x | | | | |")

if __name__ == "__main__":
    main()
