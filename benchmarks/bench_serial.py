"""Sustained acquisition through the virtual serial wristband (issue benchmark 3, serial part).

A virtual device (``firmware_bridge.virtual_device``) in a separate process streams DATA
frames over a real pseudo-terminal on its drift-free schedule. This process runs the live
acquisition chain of DESIGN.md on it:

    SerialSource.read (pyserial + codec, reader thread) -> StreamingFilter (numba)
        -> RingBuffer.write -> recorder queue
    recorder thread: RecordingWriter.append (raw samples, crash-safe HDF5)

After the run the device stops sending and the host drains; then samples acquired by the
device, sent on the wire (a device drops frames when its TX buffer of 64 kB is full because
the host did not read), received and recorded must be equal, nothing may be reported lost, and the recording must
hold the sent samples in order, any gap exactly a reported loss (channel 0 carries the
device's sample counter). CPU is this
process's CPU time over wall time (host side: reader thread, decoding, filtering, recording);
the device process is reported apart.

    python benchmarks/bench_serial.py --minutes 10                  # the issue's run
    python benchmarks/bench_serial.py --minutes 1 --channels 16,256
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
from pathlib import Path

import numpy as np
from _common import drain_to_writer

_COUNTER_MOD = 2 ** 22  # channel 0 in counts: exact through int24 and float32


def _signal(first: int, n: int, n_channels: int, scale: float) -> np.ndarray:
    """µV: channel 0 the sample counter, the rest a fixed pseudo-random pattern."""
    counter = first + np.arange(n)
    out = np.empty((n, n_channels))
    out[:, 0] = (counter % _COUNTER_MOD) * scale
    out[:, 1:] = ((counter[:, None] * 7919 + np.arange(1, n_channels) * 104729) % 4096
                  - 2048) * scale * 100
    return out


def _device_process(n_channels: int, rate: int, tx_buffer: int, paths, stop, result) -> None:
    from firmware_bridge.codec import ADS1299_SCALE
    from firmware_bridge.virtual_device import VirtualDevice

    def signal(first, n):
        return _signal(first, n, n_channels, ADS1299_SCALE)

    cpu0 = time.process_time()
    with VirtualDevice(n_channels=n_channels, sample_rate=rate, signal=signal,
                       tx_buffer=tx_buffer) as device:
        paths.put(device.path)
        stop.wait()
        device.stall(3600)  # send nothing more; the host drains what is in flight
        time.sleep(2.0)
        per_frame = device.samples_per_frame
        lost = device.lost_by["dropped"] + device.lost_by["overflow"]
        result.put(dict(sent=device.frames_sent * per_frame,
                        acquired=(device.frames_sent + lost) * per_frame,
                        frames=device.frames_sent, per_frame=device.samples_per_frame,
                        device_cpu=time.process_time() - cpu0))


def run(n_channels: int, rate: int, seconds: float, tx_buffer: int, workdir: Path) -> dict:
    from emgstream.dsp import RingBuffer, StreamingFilter, design_filters
    from emgstream.io import RecordingWriter, read_recording
    from emgstream.sources.serial import SerialSource

    ctx = mp.get_context("spawn")
    paths, stop, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_device_process, args=(n_channels, rate, tx_buffer, paths, stop, result),
                       daemon=True)
    proc.start()
    port = paths.get(timeout=120)
    path = workdir / f"serial_{n_channels}ch.h5"
    received = 0
    max_backlog = 0
    # Compile and import everything before the stream starts: a first numba call or an h5py
    # import holds the GIL long enough to starve the reader thread of a 256-channel stream.
    filt = StreamingFilter(design_filters(rate), n_channels)
    filt.process(np.zeros((1, n_channels), np.float32))
    filt.reset()
    ring = RingBuffer(int(10 * rate), n_channels)
    ring.write(np.zeros((1, n_channels), np.float32), np.zeros(1))
    ring = RingBuffer(int(10 * rate), n_channels)
    with SerialSource(port, timeout=5) as source:
        info = source.info
        chunks: queue.Queue = queue.Queue()
        with RecordingWriter(path, info, overwrite=True,
                             filters={"bandpass": [20, 450], "notch": 50}) as writer:
            recorder = threading.Thread(target=drain_to_writer, args=(writer, chunks))
            recorder.start()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            end = time.monotonic() + seconds
            quiet_since = None
            while True:
                if time.monotonic() >= end and not stop.is_set():
                    stop.set()
                samples, stamps = source.read(0.2)
                if len(stamps) == 0:
                    if stop.is_set():
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > 1.0:
                            break
                    continue
                quiet_since = None
                ring.write(filt.process(samples), stamps)
                chunks.put((samples, stamps))
                received += len(stamps)
                max_backlog = max(max_backlog, source.stats.backlog)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            chunks.put(None)
            recorder.join()
        stats = source.stats
        scale = source.device.scale
        rate_est = source.estimated_rate
    device = result.get(timeout=30)
    proc.join(timeout=30)
    rec = read_recording(path)
    # rows are the sent samples in order; any gap is exactly a reported loss
    counters = np.rint(rec.emg[:, 0] / np.float32(scale)).astype(np.int64)
    counters += np.cumsum(np.diff(counters, prepend=counters[:1]) < 0) * _COUNTER_MOD
    intact = bool(np.all(np.diff(counters) > 0)
                  and counters[-1] + 1 - rec.n_samples == stats.dropped_samples)
    path.unlink()
    return dict(channels=n_channels, rate=rate, seconds=seconds, sent=device["sent"],
                tx_kib=tx_buffer // 1024,
                acquired=device["acquired"],
                per_frame=device["per_frame"], received=received, recorded=rec.n_samples,
                intact=intact, dropped=stats.dropped_samples, corrupt=stats.corrupt_frames,
                resyncs=stats.resyncs, backlog=max_backlog, cpu=100 * cpu / wall,
                device_cpu=100 * device["device_cpu"] / wall,
                rate_est=rate_est)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="streaming time per channel count (default 10)")
    parser.add_argument("--channels", default="16,256", help="comma-separated (16,256)")
    parser.add_argument("--rate", type=int, default=2000, help="Hz (2000)")
    parser.add_argument("--tx-buffer", default="64",
                        help="device TX buffer in KiB, comma-separated to compare (64)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_channels in (int(c) for c in args.channels.split(",")):
            for kib in (int(k) for k in args.tx_buffer.split(",")):
                print(f"streaming {n_channels} ch @ {args.rate} Hz over a pty for "
                      f"{args.minutes:g} min, device TX buffer {kib} KiB...", file=sys.stderr)
                rows.append(run(n_channels, args.rate, 60 * args.minutes, kib * 1024,
                                Path(tmp)))
    print(f"\nSustained serial acquisition through the virtual wristband on a pseudo-terminal, "
          f"{args.minutes:g} min per row, int24 frames; chain SerialSource -> StreamingFilter "
          f"-> RingBuffer -> RecordingWriter (recorder thread). CPU = process time / wall; "
          f"host = the receiving process, device = the virtual device process; "
          f"{os.cpu_count()} cores.\n")
    print("| channels | rate (Hz) | samples/frame | TX buffer (KiB) | acquired | sent | received | recorded | all equal "
          "| content intact | dropped | corrupt | resyncs | max backlog | CPU host | CPU device "
          "| estimated rate (Hz) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        equal = r["acquired"] == r["sent"] == r["received"] == r["recorded"]
        print(f"| {r['channels']} | {r['rate']} | {r['per_frame']} | {r['tx_kib']} | "
              f"{r['acquired']} | "
              f"{r['sent']} | "
              f"{r['received']} | {r['recorded']} | {'yes' if equal else 'NO'} | "
              f"{'yes' if r['intact'] else 'NO'} | {r['dropped']} | {r['corrupt']} | "
              f"{r['resyncs']} | {r['backlog']} | {r['cpu']:.1f} % | {r['device_cpu']:.1f} % | "
              f"{r['rate_est']:.3f} |")


if __name__ == "__main__":
    main()
