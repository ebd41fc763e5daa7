"""``emgstream run``: live gesture inference on a source."""

from __future__ import annotations

import signal
import sys
import threading
import time

import click

from ._types import SECONDS


@click.command()
@click.argument("source")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", show_default="the shipped model", help="Model file (.emgm).")
@click.option("--adapt", is_flag=True,
              help="Adapt the model to the wearer online, without labels (EMG-UP+, the "
                   "default personalization; needs torch).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Smoothed confidence below which a hop counts as uncertain.")
@click.option("--smoothing", type=click.Choice(["ema", "majority", "none"]), default="ema",
              show_default=True, help="How per-hop probabilities are smoothed.")
@click.option("--smoothing-hops", type=click.IntRange(min=1), default=5, show_default=True,
              metavar="N", help="Span of the smoothing in hops.")
@click.option("--debounce", type=click.IntRange(min=1), default=3, show_default=True,
              metavar="N", help="Consecutive agreeing hops before a gesture is reported.")
@click.option("--every-hop", is_flag=True,
              help="Emit an event every hop (a probability stream), not only on changes.")
@click.option("--json/--no-json", "as_json", default=True, show_default=True,
              help="Print events as JSON lines on stdout.")
@click.option("--lsl-markers", default=None, metavar="NAME",
              help="Also publish events on an LSL marker stream of this name.")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds.",
              show_default="until Ctrl-C")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Also record the raw stream to FILE (HDF5).")
@click.option("--user", default="", metavar="NAME",
              help="Who wears the band. Their personalized model of MODEL is used when one "
                   "was saved (by calibrate, run --adapt or the demo window); --adapt saves "
                   "it there on exit; --record names them in the file.")
@click.option("--personal/--no-personal", default=True, show_default=True,
              help="With --user: start from the user's personalized model, if there is one.")
@click.option("--save-adapted", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="With --adapt: write the personalized model file here on exit instead of "
                   "the user's.")
@click.option("--realtime-priority", type=click.IntRange(0, 99), default=0, show_default=True,
              metavar="N", help="Run acquisition and inference under SCHED_FIFO at priority N "
              "(Linux, root or CAP_SYS_NICE); keeps latency low on a busy machine.")
def run(source: str, model_path: str | None, adapt: bool, threshold: float, smoothing: str,
        smoothing_hops: int, debounce: int, every_hop: bool, as_json: bool,
        lsl_markers: str | None, duration: float | None, record_path: str | None,
        user: str, personal: bool, save_adapted: str | None, realtime_priority: int) -> None:
    """Recognise gestures live on SOURCE (lsl://name=EMG, serial:///dev/ttyUSB0,
    replay://rec.h5, sim:// -- a session the shipped model never trained on, as in the demo).

    Every hop of the model, the newest window is filtered as the model declares, run through
    ONNX Runtime, smoothed, thresholded and debounced. Each change of gesture is printed as
    one JSON line on stdout (gesture, confidence, probabilities, sample index and LSL time of
    the window's last sample, end-to-end latency). On exit, stats go to stderr: latency p50
    and p99, dropped and rejected samples, backlog, skipped hops. Ctrl-C stops cleanly.

    With --user NAME, a model personalized for NAME is picked up: what `emgstream calibrate
    --user NAME` wrote, or what `run --adapt --user NAME` saved at its last exit.
    """
    from ..modelfile import ModelFileError, load_model_file
    from ..pipeline import (AdaptationError, JsonLinesWriter, LSLMarkerOutlet, Pipeline,
                            PipelineConfig, default_model_path, personal_model_path)
    from ..sources import SourceError, open_source
    from ..sources.sim import held_out_session

    if save_adapted is not None and not adapt:
        raise click.UsageError("--save-adapted needs --adapt")
    if model_path is None:
        default = default_model_path()
        if default is None:
            raise click.UsageError("no --model given and no shipped default model "
                                   "(models/default.emgm) was found")
        model_path = str(default)
    try:
        personal_path = personal_model_path(user, model_path) if user else None
    except FileNotFoundError:
        raise click.ClickException(f"model file {model_path!r} does not exist") from None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--user") from None
    save_adapted = save_adapted or (personal_path if adapt else None)
    if adapt and save_adapted is None:
        click.echo("the adapted model will not be kept: give --user NAME (or --save-adapted "
                   "FILE)", err=True)
    if personal and personal_path is not None and personal_path.is_file():
        click.echo(f"using {user}'s personalized model {personal_path} (adapted from "
                   f"{model_path}; --no-personal for the source model)", err=True)
        model_path = str(personal_path)
    try:
        model = load_model_file(model_path)
        config = PipelineConfig(smoothing=smoothing, smoothing_hops=smoothing_hops,
                                threshold=threshold, debounce=debounce,
                                emit="hop" if every_hop else "change", adapt=adapt,
                                realtime_priority=realtime_priority)
        pipeline = Pipeline(open_source(held_out_session(source)), model, config)
    except (ModelFileError, ValueError) as err:
        raise click.ClickException(str(err)) from None

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    markers = None
    try:
        if as_json:
            pipeline.subscribe(JsonLinesWriter())
        if lsl_markers:
            markers = LSLMarkerOutlet(lsl_markers)
            pipeline.subscribe(markers)
        try:
            pipeline.start()
            info = pipeline.info
            click.echo(f"running {model_path} on {info.name!r} ({info.n_channels} ch @ "
                       f"{info.sample_rate:g} Hz){', adapting' if adapt else ''}", err=True)
            if record_path is not None:
                pipeline.start_recording(record_path, user=user)
        except (ModelFileError, SourceError, ValueError, FileExistsError) as err:
            pipeline.stop()
            raise click.ClickException(str(err)) from None
        # wait in short slices: the signal handler sets `stop`, the pipeline may end itself
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and pipeline.is_running:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                break
            pipeline.wait(left)
        if save_adapted is not None:
            pipeline.stop_adaptation()
            try:
                path = pipeline.save_personalized(save_adapted, user)
            except (AdaptationError, RuntimeError) as err:
                raise click.ClickException(str(err)) from None
            click.echo(f"personalized model written to {path}", err=True)
    finally:
        pipeline.stop()
        if markers is not None:
            markers.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(pipeline.stats.summary(), err=True)
    if pipeline.error is not None:
        raise click.ClickException(f"stopped early: {pipeline.error}")
    sys.stdout.flush()
