"""``emgstream play``: a recording re-published as an LSL stream, markers beside it."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time

import click

from ._types import SECONDS


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="LSL stream name.", show_default="the file's stem")
@click.option("--stream", default=None, metavar="NAME", show_default="the only one",
              help="XDF files: the signal stream to play, when the file holds several.")
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Playback speed (1 = real time; 0 = as fast as the network takes it).")
@click.option("--loop", is_flag=True, help="Start again at the end, time running on.")
@click.option("--source-id", default=None, help="LSL source id.",
              show_default="emgstream-play-NAME")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds.",
              show_default="the end of the file, or Ctrl-C")
def play(file: str, name: str | None, stream: str | None, speed: float, loop: bool,
         source_id: str | None, duration: float | None) -> None:
    """Play FILE (our HDF5, an emg2pose file, or XDF) as an LSL stream, for LSL tools
    (LabRecorder, MNE-LSL's StreamLSL) and for `emgstream run lsl://name=NAME`.

    The stream has the file's channel labels, units and rate in its metadata, and its samples
    come on the drift-free schedule of replay://, stamped with the times they are due. The
    file's markers and each change of its labels (the class name) go out on a marker
    stream NAME-markers (type Markers) at the times of their samples.
    """
    from firmware_bridge.lsl_outlet import make_marker_outlet, make_outlet, push_chunk

    from ..sources import SourceError
    from ..sources.replay import ReplaySource

    try:
        src = ReplaySource(file, speed=speed, loop=loop, stream=stream).open()
    except (SourceError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        info = dataclasses.replace(src.info, name=name or src.info.name)
        source_id = source_id or f"emgstream-play-{info.name}"
        outlet = make_outlet(info, source_id, model="recording")
        markers = make_marker_outlet(f"{info.name}-markers", f"{source_id}-markers") \
            if src.marker_count else None
        click.echo(f"playing {file} as LSL stream {info.name!r} ({info.n_channels} ch @ "
                   f"{info.sample_rate:g} Hz, {src.length / info.sample_rate:.1f} s"
                   f"{', looping' if loop else ''})"
                   + (f" with {src.marker_count} markers on {info.name + '-markers'!r}"
                      if markers else "") + "; Ctrl-C to stop", err=True)
        sent_markers = 0
        end = None if duration is None else time.monotonic() + duration
        while not (stop.is_set() or src.finished or (end and time.monotonic() >= end)):
            before = src.position
            samples, stamps = src.read(timeout=0.1)
            push_chunk(outlet, samples, stamps)
            if markers is not None:
                for t, text in src.markers_between(before, src.position):
                    markers.push_sample([text], t)
                    sent_markers += 1
    finally:
        src.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"played {src.position} samples ({src.position / info.sample_rate:.2f} s) "
               f"and {sent_markers} markers", err=True)
