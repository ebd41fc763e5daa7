"""``emgstream simulate`` (the simulated band over LSL or a pseudo-terminal) and
``emgstream bridge`` (a serial wristband to an LSL outlet)."""

from __future__ import annotations

import dataclasses
import time

import click

from ._types import SECONDS


def _run_until(duration: float | None, step) -> None:
    """Call ``step()`` until ``duration`` seconds passed (None: until Ctrl-C)."""
    end = None if duration is None else time.monotonic() + duration
    try:
        while end is None or time.monotonic() < end:
            step()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@click.command()
@click.option("--lsl", "lsl_name", metavar="NAME", help="Serve an LSL outlet named NAME.")
@click.option("--serial", "serial", is_flag=True,
              help="Serve a virtual serial wristband on a pseudo-terminal; prints its path.")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Electrodes around the band.")
@click.option("--rate", default=2000, show_default=True, type=click.IntRange(1),
              help="Samples per second.")
@click.option("--sim-user", default=0, show_default=True, type=click.IntRange(0),
              metavar="INDEX", help="Which simulated person wears the band (sim://?user=).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Seed of the simulated population.")
@click.option("--source-id", default="", help="LSL source id.",
              show_default="sim-SEED-INDEX")
@click.option("--format", "sample_format", type=click.Choice(["int24", "int16"]),
              default="int24", show_default=True, help="Serial: sample format on the wire.")
@click.option("--drop-frames", type=click.FloatRange(0, 1), default=0.0,
              help="Serial fault: probability a frame is lost.")
@click.option("--bit-error-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Serial fault: probability each bit on the wire flips (e.g. 1e-4).")
@click.option("--garbage-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Serial fault: probability random bytes precede a frame.")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds.",
              show_default="until Ctrl-C")
def simulate(lsl_name, serial, channels, rate, sim_user, seed, source_id, sample_format,
             drop_frames, bit_error_rate, garbage_rate, duration):
    """Serve the simulated wristband as an LSL stream (--lsl NAME) or as a serial device on a
    pseudo-terminal (--serial), until Ctrl-C.

    \b
    emgstream simulate --lsl EMG                # then: emgstream record lsl://name=EMG ...
    emgstream simulate --serial --bit-error-rate 1e-4   # prints /dev/pts/N
    """
    if bool(lsl_name) == serial:
        raise click.UsageError("give exactly one of --lsl NAME or --serial")
    if serial:
        _simulate_serial(channels, rate, sim_user, seed, sample_format, drop_frames,
                         bit_error_rate, garbage_rate, duration)
    else:
        if drop_frames or bit_error_rate or garbage_rate:
            raise click.UsageError("fault options apply to --serial only")
        _simulate_lsl(lsl_name, channels, rate, sim_user, seed, source_id, duration)


def _simulate_lsl(name, channels, rate, user, seed, source_id, duration):
    from emgstream.sources import open_source
    from firmware_bridge.lsl_outlet import make_outlet, push_chunk

    with open_source(f"sim://?channels={channels}&rate={rate}&user={user}&seed={seed}") as src:
        info = dataclasses.replace(src.info, name=name)
        outlet = make_outlet(info, source_id or f"sim-{seed}-{user}", model="simulated band")
        click.echo(f"serving LSL stream {name!r}: {channels} ch @ {rate} Hz "
                   f"(user {user}); Ctrl-C to stop")

        def step():
            samples, timestamps = src.read(timeout=0.1)
            push_chunk(outlet, samples, timestamps)

        _run_until(duration, step)


def _simulate_serial(channels, rate, user, seed, sample_format, drop_frames, bit_error_rate,
                     garbage_rate, duration):
    from firmware_bridge.codec import SampleFormat
    from firmware_bridge.virtual_device import VirtualDevice

    device = VirtualDevice(n_channels=channels, sample_rate=rate, user=user, seed=seed,
                           sample_format=SampleFormat[sample_format.upper()],
                           drop_frames=drop_frames, bit_error_rate=bit_error_rate,
                           garbage_rate=garbage_rate)
    with device:
        click.echo(device.path)
        click.echo(f"virtual wristband: {channels} ch @ {rate} Hz; read it with "
                   f"serial://{device.path}; Ctrl-C to stop", err=True)
        _run_until(duration, lambda: time.sleep(0.2))


@click.command()
@click.argument("port", metavar="SERIAL")
@click.option("--name", default=None, help="LSL stream name.",
              show_default="the device's model")
@click.option("--source-id", default=None,
              help="LSL source id.", show_default="the device's serial number")
@click.option("--stats-every", default=5.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between status lines (0: none).")
@click.option("--duration", type=SECONDS, default=None,
              metavar="SECONDS", help="Stop after this many seconds.",
              show_default="until Ctrl-C")
def bridge(port, name, source_id, stats_every, duration):
    """Forward a serial wristband (serial:///dev/ttyUSB0?baud=921600, or a bare device path)
    to an LSL outlet with channel labels, units and manufacturer in its metadata, so
    LabRecorder and every LSL tool can see it. Runs until Ctrl-C.

    Samples keep the device-counter timestamps of the serial source; lost samples show as
    gaps in time.
    """
    from emgstream.sources import SourceError, open_source
    from firmware_bridge.lsl_outlet import make_outlet, push_chunk

    uri = port if port.startswith("serial://") else f"serial://{port}"
    if "://" in port and not port.startswith("serial://"):
        raise click.BadParameter(f"expected a serial:// URI or a device path, got {port!r}",
                                 param_hint="SERIAL")
    try:
        with open_source(uri) as src:
            info = src.info if name is None else dataclasses.replace(src.info, name=name)
            outlet = make_outlet(info, source_id or info.device_id,
                                 model=src.device.model)
            click.echo(f"bridging {src.port} -> LSL stream {info.name!r} "
                       f"({info.n_channels} ch @ {info.sample_rate:g} Hz, source id "
                       f"{source_id or info.device_id!r}); Ctrl-C to stop")
            start = last_report = time.monotonic()

            def step():
                nonlocal last_report
                samples, timestamps = src.read(timeout=0.1)
                push_chunk(outlet, samples, timestamps)
                now = time.monotonic()
                if stats_every and now - last_report >= stats_every:
                    last_report = now
                    s = src.stats
                    click.echo(f"{now - start:7.1f} s  {s.samples} samples "
                               f"({s.samples / (now - start):.1f}/s)  dropped "
                               f"{s.dropped_samples}  corrupt frames {s.corrupt_frames}  "
                               f"resyncs {s.resyncs}")

            _run_until(duration, step)
            s = src.stats
            click.echo(f"done: {s.samples} samples, dropped {s.dropped_samples}, corrupt "
                       f"frames {s.corrupt_frames}, resyncs {s.resyncs}")
    except SourceError as err:
        raise click.ClickException(str(err)) from None
