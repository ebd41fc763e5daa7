"""``emgstream import xdf`` and ``emgstream to-xdf``: LabRecorder's XDF to and from our HDF5."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="xdf")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write FILE's stem + .hdf5 into (created if missing).")
@click.option("--stream", default=None, metavar="NAME", show_default="the only one",
              help="The signal stream, when FILE holds several.")
@click.option("--overwrite", is_flag=True, help="Replace the file if it exists.")
def import_xdf(file: Path, output: Path, stream: str | None, overwrite: bool) -> None:
    """Convert an XDF file (LabRecorder's) into our HDF5 recording: its signal stream, with
    channel labels and units, and every marker stream's markers at their times."""
    from ..io import RecordingError, RecordingWriter, fit_marker_text, read_xdf
    from ..sources import StreamInfo

    try:
        rec = read_xdf(file, stream=stream)
    except RecordingError as err:
        raise click.ClickException(str(err)) from None
    device = rec.meta["device"]
    info = StreamInfo(**{**device, "channel_names": tuple(device["channel_names"])})
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{file.stem}.hdf5"
    cut = 0
    try:
        with RecordingWriter(path, info, overwrite=overwrite,
                             **{key: rec.meta[key] for key in ("user", "session", "stage",
                                                               "side")}) as writer:
            writer.append(rec.emg, rec.time)
            for t, text in rec.markers:
                text, was_cut = fit_marker_text(text)
                cut += was_cut
                writer.add_marker(t, text)
            for span in rec.dropped:
                writer.add_dropped(span.time, span.count)
    except (FileExistsError, RecordingError) as err:
        raise click.ClickException(str(err)) from None
    if cut:
        click.echo(f"warning: {cut} markers were longer than a recording's marker and were "
                   f"cut", err=True)
    click.echo(f"wrote {path}: stream {rec.meta['xdf_stream']!r}, {rec.n_samples} samples "
               f"({rec.duration:.1f} s), {len(rec.markers)} markers, "
               f"{sum(d.count for d in rec.dropped)} samples missing")


@click.command(name="to-xdf")
@click.argument("recording", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="XDF file to write.")
@click.option("--overwrite", is_flag=True, help="Replace the file if it exists.")
def to_xdf(recording: Path, output: Path, overwrite: bool) -> None:
    """Write RECORDING (our HDF5, or an emg2pose file) as an XDF file that XDF tools open
    (pyxdf, MNE, SigViewer): the EMG with its channel metadata, and a marker stream with
    the recording's markers and each change of its labels."""
    from ..io import RecordingError, read_recording, write_xdf

    try:
        rec = read_recording(recording)
        path = write_xdf(output, rec, overwrite=overwrite)
    except (FileExistsError, RecordingError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}: {rec.n_samples} samples, {rec.n_channels} ch @ "
               f"{rec.sample_rate:g} Hz")
