"""``emgstream demo``: the live window on a simulated band and the shipped model."""

from __future__ import annotations

import click


@click.command()
@click.option("--source", "source_uri", default="sim://", show_default=True, metavar="URI",
              help="Where the EMG comes from: sim://, lsl://name=NAME, "
                   "serial:///dev/ttyUSB0, replay://FILE.h5.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Model file (.emgm). Default: the shipped model.")
@click.option("--headless", is_flag=True,
              help="No window: print each gesture event as one JSON line on stdout.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Stop after this many seconds (default: run until "
                                      "the window is closed or Ctrl-C).")
@click.option("--record-dir", type=click.Path(file_okay=False), default="recordings",
              show_default=True, help="Where the window's record button writes HDF5 files.")
def demo(source_uri: str, model_path: str | None, headless: bool, duration: float | None,
         record_dir: str) -> None:
    """Open the live demo window: traces, spectrum, RMS around the band, the recognised
    gesture, stream health and online personalization.

    With no options it streams the simulated wristband through the shipped model, so it
    works on a fresh install. Use --source for a real band, e.g.

        emgstream demo --source lsl://name=MyBand

    and --headless on a machine without a display (events as JSON lines; the statistics
    go to stderr when it stops).
    """
    import time

    t0 = time.perf_counter()
    from emgstream.pipeline import default_model_path

    if model_path is None:
        model_path = str(default_model_path())
    if headless:
        _run_headless(source_uri, model_path, duration, t0)
        return
    try:
        from apps.live_demo import run_demo_window
    except ImportError as err:
        raise click.ClickException(
            f"the window needs PyQt6 and pyqtgraph ({err}); install them with "
            "'pip install emgstream[gui]' or use --headless") from err
    code = run_demo_window(source_uri, model_path, duration=duration, record_dir=record_dir,
                           started_at=t0)
    if code:
        raise SystemExit(code)


def _run_headless(source_uri: str, model_path: str, duration: float | None,
                  t0: float) -> None:
    import threading
    import time

    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import JsonLinesWriter, Pipeline, PipelineConfig
    from emgstream.sources import open_source

    pipeline = Pipeline(open_source(source_uri), load_model_file(model_path), PipelineConfig())
    first = threading.Event()
    pipeline.subscribe(JsonLinesWriter())
    pipeline.subscribe(lambda event: first.set())
    pipeline.start()
    try:
        deadline = None if duration is None else time.monotonic() + duration
        if first.wait(timeout=duration):
            click.echo(f"first gesture {time.perf_counter() - t0:.2f} s after start", err=True)
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.stop()
    click.echo(repr(pipeline.snapshot().stats), err=True)
