"""Sustained LSL acquisition and chunk-to-buffer latency (issue benchmarks 3 and 4, LSL part).

An outlet in a separate process pushes a stream on a drift-free schedule (chunk ``k`` is
pushed when its last sample is due, stamped at its due times). This process runs the live
acquisition chain of DESIGN.md:

    LSLSource.read -> StreamingFilter (numba) -> RingBuffer.write -> recorder queue
    recorder thread: RecordingWriter.append (raw samples, crash-safe HDF5)

and checks afterwards that every sample sent was received and recorded, bit for bit
(channel 0 carries the sample index, the others a known noise pattern). Reported per channel count:

- samples sent / received / recorded, samples the source reported lost, max inlet backlog;
- CPU: this process's CPU time / wall (inlet, acquisition and recorder; the outlet process
  is not counted) and the acquisition thread's alone;
- latency from ``read`` returning to the filtered chunk being in the ring (p50, p99, max),
  and the age of the newest sample at that moment (LSL transport included).

    python benchmarks/bench_acquisition.py --minutes 10          # the issue's run
    python benchmarks/bench_acquisition.py --minutes 1 --channels 16,256
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from _common import drain_to_writer

_COUNTER_MOD = 2 ** 24  # float32 holds integers exactly up to here


def _outlet_process(source_id: str, n_channels: int, rate: float, n_total: int, chunk: int,
                    ready, go, result) -> None:
    import pylsl

    info = pylsl.StreamInfo(source_id, "EMG", n_channels, rate, "float32", source_id)
    outlet = pylsl.StreamOutlet(info, chunk_size=chunk, max_buffered=60)
    ready.set()
    while not outlet.have_consumers():
        time.sleep(0.01)
    go.wait()
    noise = _noise(n_channels)
    t0 = pylsl.local_clock()
    sent = 0
    while sent < n_total:
        n = min(chunk, n_total - sent)
        due = t0 + (sent + n - 1) / rate
        delay = due - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)
        index = sent + np.arange(n)
        block = noise[index % len(noise)]
        block[:, 0] = index % _COUNTER_MOD  # as _expected() rebuilds it
        outlet.push_chunk(block, (t0 + index / rate).tolist())
        sent += n
    result.put(sent)
    time.sleep(2.0)  # keep the outlet alive while the inlet drains


def _noise(n_channels: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4096, n_channels)).astype(np.float32) * 50


def _expected(n: int, n_channels: int) -> np.ndarray:
    index = np.arange(n)
    block = _noise(n_channels)[index % 4096]
    block[:, 0] = index % _COUNTER_MOD
    return block


def run(n_channels: int, rate: float, seconds: float, chunk: int, workdir: Path) -> dict:
    from pylsl import local_clock

    from emgstream.dsp import RingBuffer, StreamingFilter, design_filters
    from emgstream.io import RecordingWriter, read_recording
    from emgstream.sources.lsl import LSLSource

    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    source_id = f"bench-acq-{uuid.uuid4().hex[:8]}"
    n_total = int(round(seconds * rate))
    proc = ctx.Process(target=_outlet_process, daemon=True,
                       args=(source_id, n_channels, rate, n_total, chunk, ready, go, result))
    proc.start()
    ready.wait(60)
    path = workdir / f"acq_{n_channels}ch.h5"
    latencies, ages = [], []
    received = 0
    max_backlog = 0
    with LSLSource(source_id=source_id, timeout=30) as source:
        info = source.info
        filt = StreamingFilter(design_filters(rate), n_channels)
        ring = RingBuffer(int(10 * rate), n_channels)
        filt.process(np.zeros((1, n_channels), np.float32))  # compile before timing
        filt.reset()
        chunks: queue.Queue = queue.Queue()
        with RecordingWriter(path, info, overwrite=True,
                             filters={"bandpass": [20, 450], "notch": 50}) as writer:
            recorder = threading.Thread(target=drain_to_writer, args=(writer, chunks))
            recorder.start()
            go.set()
            wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
            idle_deadline = None
            while received < n_total:
                samples, stamps = source.read(0.2)
                t_read = time.perf_counter()
                if len(stamps) == 0:
                    # the outlet has finished; give the transport a few seconds, no more
                    if not proc.is_alive() or not result.empty():
                        idle_deadline = idle_deadline or time.monotonic() + 5
                        if time.monotonic() > idle_deadline:
                            break
                    continue
                filtered = filt.process(samples)
                ring.write(filtered, stamps)
                t_ring = time.perf_counter()
                latencies.append(t_ring - t_read)
                ages.append(local_clock() - stamps[-1])
                chunks.put((samples, stamps))
                received += len(stamps)
                max_backlog = max(max_backlog, source.stats.backlog)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            thread_cpu = time.thread_time() - thread0
            chunks.put(None)
            recorder.join()
        dropped = source.stats.dropped_samples
    sent = result.get(timeout=30)
    proc.join(timeout=30)
    rec = read_recording(path)
    intact = bool(np.array_equal(rec.emg, _expected(rec.n_samples, n_channels)))
    path.unlink()
    lat = np.array(latencies) * 1e6
    age = np.array(ages) * 1e3
    return dict(channels=n_channels, rate=rate, seconds=seconds, sent=sent, received=received,
                recorded=rec.n_samples, intact=intact, dropped=dropped, backlog=max_backlog,
                cpu=100 * cpu / wall, thread_cpu=100 * thread_cpu / wall, chunks=len(lat),
                lat_p50=np.percentile(lat, 50), lat_p99=np.percentile(lat, 99),
                lat_max=lat.max(), age_p50=np.percentile(age, 50),
                age_p99=np.percentile(age, 99))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="streaming time per channel count (default 10)")
    parser.add_argument("--channels", default="16,256", help="comma-separated (16,256)")
    parser.add_argument("--rate", type=float, default=2000.0, help="Hz (2000)")
    parser.add_argument("--chunk", type=int, default=20,
                        help="samples per pushed chunk (20 = 10 ms at 2 kHz)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "tests" /
                                           "lsl_api.cfg"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_channels in (int(c) for c in args.channels.split(",")):
            print(f"streaming {n_channels} ch @ {args.rate:g} Hz for {args.minutes:g} min...",
                  file=sys.stderr)
            rows.append(run(n_channels, args.rate, 60 * args.minutes, args.chunk, Path(tmp)))
    print(f"\nSustained LSL acquisition, {args.minutes:g} min per row, pushed in "
          f"{args.chunk}-sample chunks; chain LSLSource -> StreamingFilter -> RingBuffer -> "
          f"RecordingWriter (recorder thread). CPU = process time / wall of the receiving "
          f"process (outlet process excluded), {os.cpu_count()} cores.\n")
    print("| channels | rate (Hz) | sent | received | recorded | all equal | content intact "
          "| dropped | max backlog | CPU process | CPU acq. thread |")
    print("|---:|---:|---:|---:|---:|:---:|:---:|---:|---:|---:|---:|")
    for r in rows:
        equal = r["sent"] == r["received"] == r["recorded"]
        print(f"| {r['channels']} | {r['rate']:g} | {r['sent']} | {r['received']} | "
              f"{r['recorded']} | {'yes' if equal else 'NO'} | "
              f"{'yes' if r['intact'] else 'NO'} | {r['dropped']} | {r['backlog']} | "
              f"{r['cpu']:.1f} % | {r['thread_cpu']:.1f} % |")
    print("\nLatency from `read` returning to the filtered chunk in the ring buffer "
          "(filter + ring write), and age of the newest sample at that moment "
          "(LSL transport + wait included).\n")
    print("| channels | chunks | p50 (µs) | p99 (µs) | max (µs) | sample age p50 (ms) "
          "| sample age p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['channels']} | {r['chunks']} | {r['lat_p50']:.1f} | {r['lat_p99']:.1f} | "
              f"{r['lat_max']:.0f} | {r['age_p50']:.2f} | {r['age_p99']:.2f} |")


if __name__ == "__main__":
    main()
