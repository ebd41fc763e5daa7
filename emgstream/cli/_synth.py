"""``emgstream synth`` and ``emgstream import``."""

from __future__ import annotations

from pathlib import Path

import click

from ._types import SECONDS

from ._xdf import import_xdf


@click.command()
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder to write the HDF5 files into (created if missing).")
@click.option("--users", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of synthetic users.")
@click.option("--sessions", default=2, show_default=True, type=click.IntRange(min=1),
              help="Sessions (donnings of the band) per user.")
@click.option("--duration", default=120.0, show_default=True, type=SECONDS, metavar="SECONDS",
              help="Seconds per session.")
@click.option("--unseen", default=0.0, show_default=True, type=click.FloatRange(min=0),
              metavar="SECONDS", help="Seconds of the held-out (unseen) gestures per session, in "
                                "separate *_unseen.hdf5 files; 0 writes none.")
@click.option("--first-user", default=0, show_default=True, type=click.IntRange(min=0),
              help="Index of the first user (disjoint populations from one seed).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1),
              help="Electrodes around the band.")
@click.option("--rate", default=2000.0, show_default=True, type=click.FloatRange(min=0,
              min_open=True), help="Sampling rate in Hz.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the population; same seed, same data.")
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
def synth(output: str, users: int, sessions: int, duration: float, unseen: float,
          first_user: int, channels: int, rate: float, seed: int, overwrite: bool) -> None:
    """Write synthetic users wearing the band (EMG, joint angles, gesture labels) as
    emg2pose-layout HDF5, one file per user, session and stage.

    Each user has their own anatomy, skin, band placement and way of doing each gesture;
    each session re-dons the band. Files of stage "gestures" hold the training vocabulary;
    "unseen" files hold gestures that no training split may contain.
    """
    from tqdm import tqdm

    from ..synth import SynthConfig, write_dataset

    config = SynthConfig(n_channels=channels, sample_rate=rate)
    total = users * sessions * round((duration + unseen) * rate)
    try:
        with tqdm(total=total, unit="sample", unit_scale=True, desc="synth") as bar:
            paths = write_dataset(output, users, sessions, duration, config, seed,
                                  unseen_duration_s=unseen, first_user=first_user,
                                  overwrite=overwrite, progress=bar.update)
    except (FileExistsError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {len(paths)} files to {output}")


@click.group(name="import")
def import_() -> None:
    """Convert a dataset or a file into our HDF5 recordings (emg2pose layout)."""


import_.add_command(import_xdf)


@import_.command(name="3dc")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False),
              help="The 3DC folder holding Participant<N> folders.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder to write the HDF5 files into (created if missing).")
@click.option("--participants", default=None, metavar="N,N,...",
              show_default="every one under --root", help="People to convert, e.g. 1,2,5.")
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
def import_3dc(root: str, output: str, participants: str | None, overwrite: bool) -> None:
    """Convert the 3DC dataset: one labelled recording per person, block and cycle
    (Participant<N>_<block>_cycle<c>.hdf5), samples as recorded (ADC counts, 1 kHz)."""
    import numpy as np
    from tqdm import tqdm

    from ..io import RecordingWriter, load_3dc
    from ..sources import StreamInfo

    people = None
    if participants:
        try:
            people = [int(p) for p in participants.split(",") if p.strip()]
        except ValueError:
            raise click.BadParameter(f"expected numbers like 1,2,5, got {participants!r}",
                                     param_hint="--participants") from None
    try:
        streams = load_3dc(root, people)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stream in tqdm(streams, unit="recording", desc="3dc"):
        block, cycle = stream.meta["block"], stream.meta["cycle"]
        path = out / f"{stream.user}_{block}_cycle{cycle}.hdf5"
        info = StreamInfo(name=f"3dc-{stream.user}", n_channels=stream.n_channels,
                          sample_rate=stream.sample_rate, units=stream.meta["units"],
                          kind="replay", manufacturer="3DC armband")
        times = np.arange(len(stream.emg)) / stream.sample_rate
        try:
            with RecordingWriter(path, info, user=stream.user, session=stream.session,
                                 stage=block, class_names=stream.class_names,
                                 overwrite=overwrite) as writer:
                writer.append(stream.emg, times, labels=stream.labels)
        except FileExistsError as err:
            raise click.ClickException(str(err)) from None
        written.append(path)
    click.echo(f"wrote {len(written)} recordings to {output}")
