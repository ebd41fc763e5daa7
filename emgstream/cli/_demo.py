"""``emgstream demo``: the live window on a simulated band and the shipped model."""

from __future__ import annotations

import click

from ..sources.sim import DEMO_URI


@click.command()
@click.option("--source", "source_uri", default=DEMO_URI, show_default=True, metavar="URI",
              help="Where the EMG comes from: sim:// (default: a simulated user the "
                   "shipped model knows, on a new session), lsl://name=NAME, "
                   "serial:///dev/ttyUSB0, replay://FILE.h5.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Model file (.emgm). Default: the shipped model.")
@click.option("--headless", is_flag=True,
              help="No window: print each gesture event as one JSON line on stdout.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Stop after this many seconds (default: run until "
                                      "the window is closed or Ctrl-C).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Confidence below which no gesture is shown (default: the pipeline's).")
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Save a picture of the window when --duration ends (for docs).")
@click.option("--record-dir", type=click.Path(file_okay=False), default="recordings",
              show_default=True, help="Where the window's record button writes HDF5 files.")
@click.option("--user", default="", metavar="NAME",
              help="Who wears the band: start from their personalized model of MODEL when "
                   "one was saved (calibrate, run --adapt, the window's save button).")
def demo(source_uri: str, model_path: str | None, headless: bool, duration: float | None,
         threshold: float | None, screenshot: str | None, record_dir: str, user: str) -> None:
    """Open the live demo window: traces, spectrum, RMS around the band, the recognised
    gesture, stream health and online personalization.

    With no options it streams the simulated wristband through the shipped model, so it
    works on a fresh install. Use --source for a real band, e.g.

        emgstream demo --source lsl://name=MyBand

    and --headless on a machine without a display (events as JSON lines; the statistics
    go to stderr when it stops).
    """
    import os
    import sys
    import time

    t0 = time.perf_counter()
    from emgstream.pipeline import PipelineConfig, default_model_path, personal_model_path

    config = PipelineConfig() if threshold is None else PipelineConfig(threshold=threshold)
    if model_path is None:
        shipped = default_model_path()
        if shipped is None:
            raise click.ClickException(
                "the shipped model (models/default.emgm) is not installed; "
                "pass one with --model FILE")
        model_path = str(shipped)
    if screenshot is not None and (headless or duration is None):
        raise click.UsageError("--screenshot needs the window and a --duration")
    try:
        personal = personal_model_path(user, model_path) if user else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--user") from None
    if headless:
        if personal is not None and personal.is_file():
            click.echo(f"using {user}'s personalized model {personal}", err=True)
            model_path = str(personal)
        _run_headless(source_uri, model_path, config, duration, t0)
        return
    if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        raise click.ClickException(
            "no display to open the window on (DISPLAY is not set); use --headless, or "
            "QT_QPA_PLATFORM=offscreen with --screenshot")
    try:
        from apps.live_demo import run_demo_window
    except ImportError as err:
        raise click.ClickException(
            f"the window needs PyQt6 and pyqtgraph ({err}); install them with "
            "'pip install emgstream[gui]' or use --headless") from err
    from emgstream.modelfile import ModelFileError

    try:
        code = run_demo_window(source_uri, model_path, config=config, duration=duration,
                               record_dir=record_dir, user=user, started_at=t0,
                               screenshot=screenshot)
    except ModelFileError as err:
        raise click.ClickException(str(err)) from err
    if code:
        raise SystemExit(code)


def _run_headless(source_uri: str, model_path: str, config, duration: float | None,
                  t0: float) -> None:
    import threading
    import time

    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import JsonLinesWriter, Pipeline
    from emgstream.sources import SourceError, open_source

    first = threading.Event()
    try:
        pipeline = Pipeline(open_source(source_uri), load_model_file(model_path), config)
        pipeline.subscribe(JsonLinesWriter())
        pipeline.subscribe(lambda event: first.set())
        pipeline.start()
    except (ValueError, SourceError, OSError) as err:  # bad URI, device, model or mismatch
        raise click.ClickException(str(err)) from err
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
    click.echo(pipeline.stats.summary(), err=True)
    if pipeline.error is not None:
        raise click.ClickException(f"the stream stopped: {pipeline.error}")
