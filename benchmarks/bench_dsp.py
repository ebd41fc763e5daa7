"""DSP benchmarks: streaming filter against scipy, ring buffer, numba compile time.

    python benchmarks/bench_dsp.py [--repeats 30] [--skip-compile]

Prints markdown tables. Times are medians over ``--repeats`` runs of a batch of
consecutive chunks (the per-chunk time is the batch time divided by the chunks in it),
so timer overhead does not count; the compared runs take turns within each repeat.
Throughput counts channel-samples (one value each). The scipy baseline is the call a
user would write per chunk: ``y, zi = sosfilt(sos, chunk, axis=0, zi=zi)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import signal

from emgstream.dsp import RingBuffer, StreamingFilter, design_filters

CHUNKS = (1, 8, 20, 100, 2000)
CHANNELS = (16, 256)
RATE = 2000.0
# A timed batch holds about this many samples, in 2 to 200 chunks: enough to dwarf the
# timer, few enough that the chunks stay in cache as a freshly received chunk would.
_TARGET_BATCH_SAMPLES = 4000
_MAX_BATCH_CHUNKS = 200


def _chunks(n_channels, chunk, rng):
    n_chunks = min(_MAX_BATCH_CHUNKS, max(2, _TARGET_BATCH_SAMPLES // chunk))
    x = rng.normal(0.0, 50.0, (n_chunks * chunk, n_channels)).astype(np.float32)
    return [np.ascontiguousarray(x[i:i + chunk]) for i in range(0, len(x), chunk)]


def _medians_per_chunk(runs, chunks, repeats):
    """Median µs per chunk of each ``run(chunks)``; the runs take turns in every repeat so
    that load from other processes hits them alike."""
    for run in runs.values():
        run(chunks)  # warm-up: compilation, caches
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(chunks)
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) / len(chunks) * 1e6 for name, t in times.items()}


def bench_filter(repeats):
    sos = design_filters(RATE)
    rng = np.random.default_rng(0)
    print("## Streaming filter: numba StreamingFilter vs scipy.signal.sosfilt with carried zi\n")
    print(f"{sos.shape[0]} sections (4th-order Butterworth 20-450 Hz band-pass + 50 Hz notch), "
          f"rate {RATE:g} Hz; median µs per chunk over {repeats} repeats; "
          "Msamples/s counts channel-samples.\n")
    print("| channels | chunk | scipy µs | numba µs | numba out= µs | scipy Msamples/s "
          "| numba Msamples/s | speed-up (numba/scipy) | speed-up with out= |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_channels in CHANNELS:
        for chunk in CHUNKS:
            chunks = _chunks(n_channels, chunk, rng)
            zi0 = signal.sosfilt_zi(sos)[:, :, None] * chunks[0][0].astype(float)[None, None]

            def run_scipy(chunks):
                zi = zi0
                for c in chunks:
                    _, zi = signal.sosfilt(sos, c, axis=0, zi=zi)

            f = StreamingFilter(sos, n_channels)

            def run_numba(chunks):
                for c in chunks:
                    f.process(c)

            out = np.empty((chunk, n_channels), np.float32)

            def run_numba_out(chunks):
                for c in chunks:
                    f.process(c, out=out)

            t = _medians_per_chunk({"scipy": run_scipy, "numba": run_numba,
                                    "out": run_numba_out}, chunks, repeats)
            t_scipy, t_numba, t_out = t["scipy"], t["numba"], t["out"]
            values = chunk * n_channels
            print(f"| {n_channels} | {chunk} | {t_scipy:.2f} | {t_numba:.2f} | {t_out:.2f} "
                  f"| {values / t_scipy:.2f} | {values / t_numba:.2f} "
                  f"| {t_scipy / t_numba:.1f}x | {t_scipy / t_out:.1f}x |")
    print()


def bench_ring(repeats):
    rng = np.random.default_rng(1)
    capacity = 8192
    print("## Ring buffer: write + read_since per chunk\n")
    print(f"capacity {capacity} samples; one write then one read_since of the same chunk; "
          f"median µs per chunk over {repeats} repeats.\n")
    print("| channels | chunk | write µs | read_since µs | write + read_since µs |")
    print("|---:|---:|---:|---:|---:|")
    for n_channels in CHANNELS:
        for chunk in CHUNKS:
            chunks = _chunks(n_channels, chunk, rng)
            ts = np.arange(chunk, dtype=np.float64)
            rb = RingBuffer(capacity, n_channels)

            def run_write(chunks):
                for c in chunks:
                    rb.write(c, ts)

            def run_both(chunks):
                counter = rb.total_written
                for c in chunks:
                    rb.write(c, ts)
                    _, _, counter, _ = rb.read_since(counter)

            def run_read(chunks):
                # the reader is always one chunk behind: read what one write added
                total = rb.total_written
                for _ in chunks:
                    rb.read_since(total - chunk)

            t = _medians_per_chunk({"write": run_write, "read": run_read, "both": run_both},
                                   chunks, repeats)
            print(f"| {n_channels} | {chunk} | {t['write']:.2f} | {t['read']:.2f} "
                  f"| {t['both']:.2f} |")
    print()


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from emgstream.dsp import RingBuffer, StreamingFilter, design_filters
t1 = time.perf_counter()
f = StreamingFilter(design_filters(2000.0), 16)
f.process(np.zeros((20, 16), np.float32))
rb = RingBuffer(100, 16)
rb.write(np.zeros((20, 16), np.float32), np.zeros(20))
rb.read_since(0)
rb.latest(10)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def bench_compile():
    print("## numba first call (fresh process)\n")
    print("First StreamingFilter.process + RingBuffer write/read_since/latest in a new "
          "process: with an empty on-disk cache (compiles) and again with the cache filled.\n")
    print("| cache | import emgstream.dsp s | first calls s |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty (compile)", "filled (load)"):
            res = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True)
            t_import, t_first = map(float, res.stdout.split())
            print(f"| {label} | {t_import:.2f} | {t_first:.2f} |")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed repeats per cell; the median is reported (default 30)")
    parser.add_argument("--skip-compile", action="store_true",
                        help="skip the first-call (compile) measurement in a subprocess")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    bench_filter(args.repeats)
    bench_ring(args.repeats)
    if not args.skip_compile:
        bench_compile()


if __name__ == "__main__":
    main()
