"""The ``emgstream`` command line.

Each command lives in its own module and is imported only when it runs, so that
``emgstream --help`` answers at once and ``emgstream record`` never imports torch.
"""

from __future__ import annotations

import importlib
import logging

import click

from .. import __version__

# command name -> ("module", "function", one-line help shown by --help without importing it)
_COMMANDS = {
    "demo": ("emgstream.cli._demo", "demo", "Open the live demo window (simulated band, shipped model)."),
    "run": ("emgstream.cli._run", "run", "Run live gesture inference on a source."),
    "record": ("emgstream.cli._record", "record", "Record a source to emg2pose-layout HDF5."),
    "play": ("emgstream.cli._play", "play", "Play a recording (HDF5, XDF) as an LSL stream."),
    "devices": ("emgstream.cli._record", "devices", "List LSL streams and serial ports."),
    "simulate": ("emgstream.cli._simulate", "simulate", "Serve a simulated wristband over LSL or a pseudo-terminal."),
    "bridge": ("emgstream.cli._simulate", "bridge", "Forward a serial wristband to an LSL outlet."),
    "synth": ("emgstream.cli._synth", "synth", "Write synthetic users (EMG + pose) as HDF5."),
    "import": ("emgstream.cli._synth", "import_", "Convert a dataset (3dc) or an XDF file into our HDF5 recordings."),
    "to-xdf": ("emgstream.cli._xdf", "to_xdf", "Write a recording as an XDF file for XDF tools."),
    "train": ("emgstream.cli._train", "train", "Train from a recipe (TOML)."),
    "export": ("emgstream.cli._train", "export", "Export a checkpoint to a model file."),
    "calibrate": ("emgstream.cli._adapt", "calibrate", "Personalize a model to one user without labels."),
    "eval": ("emgstream.cli._adapt", "eval_", "Cross-user evaluation of source-free adaptation."),
    "users": ("emgstream.cli._users", "users", "List the personalized models kept per user."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, attr, _ = _COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emgstream")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Real-time wearable EMG: stream, filter, recognise gestures, adapt to each user."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
