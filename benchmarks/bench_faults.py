"""The faults of issue 15, each once, measured: what a real band and a real disk do to a
recording (markdown table).

Serial faults use the band of ``tests/spec_band.py``, written from PROTOCOL.md alone, on a
real pseudo-terminal, recorded through ``serial://`` with ``record_source`` into HDF5 for a
few seconds; then the band falls silent and the host drains. Columns:

- *sent*: good samples the band put on the wire (a perfect host records exactly these);
- *recorded*: rows in the file (``twice``: rows of a sample stored twice);
- *counted bad*: what the file says went wrong: dropped samples and fault rows by kind;
- *time shift*: spread (max - min) of recorded time minus the sample's true time (the band's
  schedule on the LSL clock); for the clock map alone, the worst error after it settled.

The other rows say what a user meets (exit status, message, what the file holds). Run it on
other code to compare (the band and this script only use what both versions have)::

    python benchmarks/bench_faults.py --save after.json
    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_faults.py --save before.json
    python benchmarks/bench_faults.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(_ROOT / "tests"))  # the band lives with the tests; appended: no shadowing
os.environ.setdefault("LSLAPICFG", str(_ROOT / "tests" / "lsl_api.cfg"))  # loopback only

RATE = 1000
#: Subprocesses start here: ``python -m``/``-c`` put their working folder first on the path,
#: which in a checkout would import its emgstream instead of the one under measurement.
_ELSEWHERE = tempfile.gettempdir()
COLUMNS = ("fault", "sent", "recorded", "counted bad", "time shift", "outcome")


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:90]}"


def _file_counts(rec) -> str:
    parts = []
    dropped = sum(d.count for d in rec.dropped)
    if dropped:
        parts.append(f"dropped {dropped} in {len(rec.dropped)} spans")
    kinds: dict = {}
    for fault in getattr(rec, "faults", []):
        kinds[fault.kind] = kinds.get(fault.kind, 0) + fault.count
    parts += [f"{kind} {count}" for kind, count in sorted(kinds.items())]
    return ", ".join(parts) or "nothing"


def serial_case(name: str, faults, seconds: float = 2.5, actions=None) -> dict:
    from emgstream.io import read_recording
    from spec_band import SpecBand, record_band

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with SpecBand(folder / "band", rate=RATE, per_frame=10, faults=faults) as band:
            todo = list(actions(band)) if actions else []
            todo.append((seconds, band.hush))
            outcome = "recorded to the end"
            try:
                record_band(band, folder / "rec.h5", seconds + 0.6, actions=todo)
            except Exception as err:  # the old code ended here: what did the file keep?
                outcome = f"record ended: {_first_line(err)}"
            rec = read_recording(folder / "rec.h5")
        _, truth, exact = band.truth(rec.emg)
    sent = sum(f.n for f in band.frames if f.fate in ("sent", "duplicated"))
    twice = int(exact.sum() - len(np.unique(truth[exact])))
    recorded = f"{rec.n_samples}" + (f" ({twice} twice)" if twice else "") + \
        (f" ({(~exact).sum()} not sent)" if not exact.all() else "")
    error = rec.time[exact] - truth[exact]
    shift = _seconds(np.ptp(error)) if error.size else "-"
    return dict(fault=name, sent=str(sent), recorded=recorded, **{
        "counted bad": _file_counts(rec), "time shift": shift, "outcome": outcome})


def _seconds(x: float) -> str:
    if x >= 86400:
        return f"{x / 86400:.1f} days"
    return f"{x * 1e3:.2f} ms" if x < 1 else f"{x:.1f} s"


def clock_case() -> dict:
    """The clock map on 90 s of simulated arrivals with a 1.5 s host stall at 10 s (the
    scenario of tests/test_serial_faults.py, counters from 0 so old code runs it too)."""
    from emgstream.sources.serial import _DeviceClock
    from spec_band import worst_clock_error

    worst = worst_clock_error(_DeviceClock(2000.0))
    return dict(fault="clock map, 90 s simulated, 1.5 s host stall then burst", sent="-",
                recorded="-", **{"counted bad": "-", "time shift": _seconds(worst),
                                 "outcome": "worst timestamp error after the first 5 s"})


def _run(args, timeout=60, **kw) -> tuple[int | None, str, float]:
    """(exit status or None if it hung, stderr, seconds) of ``python -m emgstream ARGS``."""
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "emgstream", *args], capture_output=True,
                             text=True, timeout=timeout, cwd=_ELSEWHERE, **kw)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - t0
    return out.returncode, out.stderr, time.monotonic() - t0


def _row(fault, outcome, **cells) -> dict:
    row = dict.fromkeys(COLUMNS, "-")
    row.update(fault=fault, outcome=outcome, **cells)
    return row


def _said(status, stderr, seconds) -> str:
    """Exit status and the error line (click's usage lines aside), or the traceback's size."""
    if status is None:
        return f"hung (killed after {seconds:.0f} s)"
    lines = stderr.strip().splitlines()
    if "Traceback" in stderr:
        return f"exit {status} after {seconds:.1f} s: a {len(lines)}-line traceback ending " \
               f"{lines[-1][:100]}"
    errors = [line for line in lines if line.startswith("Error")]
    return f"exit {status} after {seconds:.1f} s" + (f": {errors[-1]}" if errors else "")


def truncated_case(folder: Path, fraction: float) -> dict:
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    path = folder / f"full-{fraction}.h5"
    emg = np.random.default_rng(0).standard_normal((20000, 16)).astype(np.float32)
    with RecordingWriter(path, StreamInfo("t", 16, 2000.0)) as writer:
        writer.append(emg, np.arange(20000) / 2000.0)
    cut = folder / f"cut-{fraction}.h5"
    cut.write_bytes(path.read_bytes()[:int(path.stat().st_size * fraction)])
    code = (f"from emgstream.io import read_recording\nr = read_recording({str(cut)!r})\n"
            f"print(r.n_samples, int((r.emg == 0).all(1).sum()))")
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=20, cwd=_ELSEWHERE)
        said = (f"read {out.stdout.split()[0]} samples, {out.stdout.split()[1]} of them all "
                f"zeros" if out.returncode == 0 else
                f"refused after {time.monotonic() - t0:.1f} s: "
                f"{out.stderr.strip().splitlines()[-1].split(': ', 1)[-1]}")
    except subprocess.TimeoutExpired:
        said = "read_recording hung (killed after 20 s)"
    return _row(f"recording truncated to {fraction:.0%} of its bytes, read", said, sent="20000")


def cut_short_case(folder: Path) -> dict:
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    path = folder / "short.h5"
    with RecordingWriter(path, StreamInfo("t", 16, 2000.0)) as writer:
        writer.append(np.ones((20000, 16), np.float32), np.arange(20000) / 2000.0)
    cut = folder / "cut-2000.h5"
    cut.write_bytes(path.read_bytes()[:2000])
    said = _said(*_run(["record", f"replay://{cut}", "-o", str(folder / "out.h5")],
                       timeout=20))
    return _row("recording cut to 2000 bytes, `record replay://` of it", said)


def kill_case(folder: Path) -> dict:
    path = folder / "killed.h5"
    log = folder / "killed.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "emgstream", "record",
                                 "sim://?channels=16&rate=2000", "-o", str(path)],
                                stderr=stderr, stdout=subprocess.DEVNULL, cwd=_ELSEWHERE)
        deadline = time.monotonic() + 60
        while "samples" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    code = (f"import h5py\nwith h5py.File({str(path)!r}, 'r') as f:\n"
            f"    print(f['emg2pose/timeseries'].shape[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=_ELSEWHERE)
    said = (f"plain h5py.File(path, 'r') opens it" if out.returncode == 0 else
            f"plain h5py refuses: {out.stderr.strip().splitlines()[-1].split(': ', 1)[-1]}")
    recorded = out.stdout.strip() if out.returncode == 0 else "-"
    return _row("`record` killed with kill -9 after ~2.5 s", said, recorded=recorded)


def record_cli_cases(folder: Path) -> list[dict]:
    rows = []
    out = folder / "no" / "such" / "rec.h5"
    said = _said(*_run(["record", "sim://?channels=2&realtime=0", "-o", str(out),
                        "--duration", "0.1"]))
    rows.append(_row("`record -o` into a folder that does not exist", said))
    out = folder / "zero.h5"
    said = _said(*_run(["record", "sim://?channels=2&realtime=0", "-o", str(out),
                        "--duration", "0"]))
    left = f"; left {out.stat().st_size} byte file" if out.exists() else "; no file"
    rows.append(_row("`record --duration 0`", said + left))
    return rows


def nan_case(folder: Path) -> dict:
    """A live LSL stream sends one chunk with a NaN after 1 s; 3 s are recorded."""
    import pylsl

    from emgstream.io import RecordingWriter, read_recording, record_source
    from emgstream.sources.lsl import LSLSource

    uid = f"bench-faults-{os.getpid()}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(uid, "EMG", 4, 2000, "float32", uid))
    path = folder / "nan.h5"
    outcome = "recorded to the end"
    with LSLSource(source_id=uid, timeout=5) as src, \
            RecordingWriter(path, src.info) as writer:
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        stop = threading.Event()

        def push():
            t0 = pylsl.local_clock()
            for k in range(30):
                chunk = np.ones((200, 4), np.float32)
                if k == 10:
                    chunk[50, 1] = np.nan
                outlet.push_chunk(chunk, (t0 + (k * 200 + np.arange(200)) / 2000).tolist())
                time.sleep(max(0.0, t0 + (k + 1) * 0.1 - pylsl.local_clock()))
            time.sleep(0.3)
            stop.set()

        pusher = threading.Thread(target=push)
        pusher.start()
        try:
            record_source(src, writer, stop=stop)
        except Exception as err:
            outcome = f"record ended: {_first_line(err)}"
        pusher.join()
    rec = read_recording(path)
    return _row("a chunk with a NaN from a live LSL stream, `record`", outcome, sent="6000",
                recorded=str(rec.n_samples), **{"counted bad": _file_counts(rec)})


def calibrate_cases(folder: Path) -> list[dict]:
    rows = []
    env = {**os.environ, "EMGSTREAM_HOME": str(folder / "home")}
    for duration in ("1", "0"):
        out = folder / f"cal-{duration}.emgm"
        status, stderr, seconds = _run(
            ["calibrate", "sim://?user=3&realtime=0", "--user", "x", "--duration", duration,
             "-o", str(out)], timeout=600, env=env)
        guard = stderr.count("adaptation guard")
        said = _said(status, stderr, seconds)
        said += f"; {guard} guard warnings; model {'written' if out.exists() else 'not written'}"
        rows.append(_row(f"`calibrate --duration {duration}` (shipped model)", said))
    return rows


def run_case() -> dict:
    """`run`'s pipeline (shipped model) on an LSL stream missing every other 0.2 s."""
    import pylsl

    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import Pipeline
    from emgstream.sources import open_source

    warnings = []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    handler = Catch()
    logging.getLogger("emgstream.pipeline").addHandler(handler)
    uid = f"bench-faults-run-{os.getpid()}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(uid, "EMG", 16, 2000, "float32", uid))
    pipeline = Pipeline(open_source(f"lsl://source_id={uid}?timeout=5"),
                        load_model_file(_ROOT / "models" / "default.emgm"))
    with pipeline:
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = pylsl.local_clock()
        for k in range(20):  # 4 s: 400 samples sent, 400 missing, ...
            index = 2 * k * 400 + np.arange(400)
            outlet.push_chunk(np.ones((400, 16), np.float32), (t0 + index / 2000).tolist())
            time.sleep(max(0.0, t0 + (k + 1) * 0.2 - pylsl.local_clock()))
        stats = pipeline.stats
    logging.getLogger("emgstream.pipeline").removeHandler(handler)
    said = (f"{len(warnings)} warnings" + (f": {warnings[0][:110]}" if warnings else
                                           " (gestures emitted silently)"))
    return _row("`run` on a stream losing half its samples", said, sent="8000",
                recorded=str(stats.samples),
                **{"counted bad": f"dropped {stats.dropped_samples}"})


def measure(folder: Path) -> list[dict]:
    from spec_band import Faults

    rows = [
        serial_case("counter crosses 2^63", Faults(counter_base=2**63 - 500)),
        serial_case("first counter after START is 123456789, not 0",
                    Faults(counter_base=123_456_789)),
        serial_case("3 frames sent twice", Faults(duplicate={40, 41, 90})),
        serial_case("2 torn counters (+2^32, -2^32) as the counter passes 2^32",
                    Faults(counter_base=2**32 - 600, torn={55: 2**32, 65: -2**32})),
        serial_case("1 frame in int16 on an int24 stream", Faults(wrong_format={50})),
        serial_case("band restarts, counter from 0 after 0.3 s", Faults(restart=(0.8, 0.3))),
        serial_case("band pauses 2.5 s", Faults(pause=(0.6, 2.5)), seconds=4.0),
        serial_case("band unplugged for 1.2 s, plugged back", Faults(), seconds=4.0,
                    actions=lambda band: [(1.0, band.unplug), (2.2, band.replug)]),
        serial_case("host stops reading 1.2 s, frames come in a burst",
                    Faults(burst=(1.0, 1.2)), seconds=5.0),
        clock_case(),
    ]
    return rows + [truncated_case(folder, 0.5), truncated_case(folder, 0.9),
                   cut_short_case(folder), kill_case(folder), *record_cli_cases(folder),
                   nan_case(folder), *calibrate_cases(folder), run_case()]


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print the before/after table of two saved runs, measure nothing")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        header = ["fault"] + [f"{c} (before → after)" for c in COLUMNS[1:]]
        rows = [[a["fault"]] + [b[c] if b[c] == a[c] else f"{b[c]} → {a[c]}"
                                for c in COLUMNS[1:]] for b, a in zip(before, after)]
        print(_table(header, rows))
        return
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(Path(folder))
    # temporary paths say nothing: FILE stands for them
    rows = [{k: re.sub(r"'?/tmp/[^ ']*'?", "FILE", v) for k, v in row.items()} for row in rows]
    print(_table(COLUMNS, [[row[c] for c in COLUMNS] for row in rows]))
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
