"""``emgstream demo``: the live window on a simulated band and the shipped model."""

from __future__ import annotations

import click

from ._types import SECONDS

from ..sources.sim import DEMO_URI, held_out_session

#: PipelineConfig's threshold, for --help (which must not import the pipeline)
_PIPELINE_THRESHOLD = 0.5


@click.command()
@click.argument("source", default=DEMO_URI, required=False)
# before SOURCE was positional; kept so that older scripts run
@click.option("--source", "source_option", default=None, metavar="URI", hidden=True)
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None, metavar="FILE", show_default="the shipped model",
              help="Model file (.emgm).")
@click.option("--headless", is_flag=True,
              help="No window: print each gesture event as one JSON line on stdout.")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds.",
              show_default="until the window is closed, or Ctrl-C")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              show_default=str(_PIPELINE_THRESHOLD),
              help="Smoothed confidence below which no gesture is shown.")
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Save a picture of the window when --duration ends (for docs).")
@click.option("--record-dir", type=click.Path(file_okay=False), default="recordings",
              show_default=True, help="Where the window's record button writes HDF5 files.")
@click.option("--user", default="", metavar="NAME",
              help="Who wears the band: start from their personalized model of MODEL when "
                   "one was saved (calibrate, run --adapt, the window's save button).")
def demo(source: str, source_option: str | None, model_path: str | None, headless: bool,
         duration: float | None, threshold: float | None, screenshot: str | None,
         record_dir: str, user: str) -> None:
    """Open the live demo window on SOURCE: traces, spectrum, RMS around the band, the
    recognised gesture, stream health and online personalization.

    With no SOURCE it streams the simulated wristband (a user the shipped model knows, on a
    session it never trained on) through the shipped model, so it works on a fresh install.
    For a real band, e.g.

        emgstream demo lsl://name=MyBand

    and --headless on a machine without a display (events as JSON lines; the statistics
    go to stderr when it stops).
    """
    import os
    import sys
    import time

    t0 = time.perf_counter()
    from emgstream.pipeline import PipelineConfig, default_model_path, personal_model_path

    source_uri = held_out_session(source_option or source)
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
