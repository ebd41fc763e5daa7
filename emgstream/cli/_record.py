"""``emgstream record`` and ``emgstream devices``."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import click

from ._types import SECONDS


@click.command()
@click.argument("source")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write (emg2pose layout).")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds of data.",
              show_default="until Ctrl-C")
@click.option("--user", default="", metavar="NAME",
              help="Who wears the band, stored in the file.")
@click.option("--session", default="", help="Session id stored in the file.")
@click.option("--stage", default="", help="Stage (gesture group) stored in the file.")
@click.option("--side", type=click.Choice(["left", "right"]), default=None,
              help="Hand the band is worn on.")
@click.option("--overwrite", is_flag=True, help="Replace FILE if it exists.")
@click.option("--quiet", is_flag=True, help="No live status line.")
@click.option("--markers", "marker_uris", multiple=True, metavar="URI",
              help="Also record this LSL marker stream (e.g. lsl://type=Markers, or the "
                   "stream of run --lsl-markers) into the file's markers, on the same clock "
                   "as the samples. Repeatable.")
def record(source: str, output: str, duration: float | None, user: str, session: str,
           stage: str, side: str | None, overwrite: bool, quiet: bool,
           marker_uris: tuple[str, ...]) -> None:
    """Record SOURCE (a URI such as lsl://name=EMG, serial:///dev/ttyUSB0,
    replay://rec.h5, sim://?channels=16) to FILE.

    Raw, unfiltered samples are written with their LSL timestamps, a record of dropped
    samples and of faults (bad frames, resyncs, device restarts, stalls, reconnects, chunks
    with non-finite values, which are marked instead of stored). The file is flushed every
    half second and readable while recording; Ctrl-C or SIGTERM finishes it cleanly, and a
    killed recording keeps all but its last second. A status line on stderr shows the
    effective rate, drops, faults, elapsed time and the RMS level of each channel, or how long
    the source has been silent while it is waited for.
    """
    from pathlib import Path

    from ..io.recording import RecordingWriter, record_source
    from ..sources import MarkerInlet, SourceError, open_source

    # bad arguments are refused before the device is opened or a file is made
    folder = Path(output).parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder {str(folder)!r} does not exist",
                                 param_hint="-o/--output")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    status_line = None if quiet else _StatusLine()
    markers = contextlib.ExitStack()
    try:
        inlets = [markers.enter_context(MarkerInlet(uri)) for uri in marker_uris]
        with open_source(source) as src:
            info = src.info
            click.echo(f"recording {info.name!r}: {info.n_channels} ch @ "
                       f"{info.sample_rate:g} Hz -> {output}", err=True)
            with RecordingWriter(output, info, user=user, session=session, stage=stage,
                                 side=side or "", overwrite=overwrite) as writer:
                final = record_source(src, writer, duration=duration, stop=stop,
                                      on_status=status_line, markers=inlets)
    except (SourceError, ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    finally:
        markers.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if status_line is not None:
            status_line.end()
    faults = "".join(f", {kind} {count}" for kind, count in sorted(final.faults.items()))
    click.echo(f"wrote {final.samples} samples ({final.samples / info.sample_rate:.2f} s, "
               f"{final.dropped} dropped{faults}) to {output}", err=True)
    for inlet in inlets:
        click.echo(f"recorded {inlet.received} markers of {inlet.name!r}", err=True)


class _StatusLine:
    """Rewrites one stderr line: elapsed, rate, drops, faults, backlog, per-channel RMS (µV);
    while the source is silent, how long it has been."""

    # faults always shown (0 says "none"), then those shown once they occur
    _ALWAYS = (("corrupt_frames", "bad frames"), ("resyncs", "resyncs"),
               ("restarts", "restarts"))
    _ONCE_SEEN = (("duplicate_frames", "duplicates"), ("stalls", "stalls"),
                  ("reconnects", "reconnects"), ("rejected_samples", "rejected"))

    def __init__(self) -> None:
        self._shown = False

    def __call__(self, status) -> None:
        import numpy as np

        faults = "  ".join(f"{label} {status.faults.get(kind, 0)}"
                           for kind, label in self._ALWAYS + self._ONCE_SEEN
                           if (kind, label) in self._ALWAYS or status.faults.get(kind))
        if status.stalled:
            tail = f"NO DATA for {status.stalled:.1f} s: waiting for the source to come back"
        else:
            rms = status.rms
            if len(rms) <= 16:
                levels = " ".join(f"{v:.0f}" for v in rms)
            else:
                levels = f"min {rms.min():.0f} median {np.median(rms):.0f} max {rms.max():.0f}"
            tail = f"RMS µV: {levels}"
        line = (f"{status.elapsed:7.1f} s  {status.rate:8.1f} Hz  {status.samples} samples  "
                f"dropped {status.dropped}  {faults}  backlog {status.backlog}  {tail}")
        sys.stderr.write("\r\x1b[2K" + line if sys.stderr.isatty() else line + "\n")
        sys.stderr.flush()
        self._shown = True

    def end(self) -> None:
        if self._shown and sys.stderr.isatty():
            sys.stderr.write("\n")


@click.command()
@click.option("--wait", type=float, default=1.0, show_default=True, metavar="S",
              help="Seconds to look for LSL streams.")
def devices(wait: float) -> None:
    """List the LSL streams visible on this network and the serial ports of this machine."""
    import pylsl
    from serial.tools import list_ports

    streams = pylsl.resolve_streams(wait_time=wait)
    click.echo(f"LSL streams ({len(streams)}):")
    rows = [("name", "type", "channels", "rate", "source id", "host")]
    rows += [(s.name(), s.type(), str(s.channel_count()), f"{s.nominal_srate():g}",
              s.source_id(), s.hostname()) for s in streams]
    if streams:
        _table(rows)
    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    click.echo(f"serial ports ({len(ports)}):")
    if ports:
        _table([("device", "description", "hardware id")] +
               [(p.device, p.description or "", p.hwid or "") for p in ports])


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
