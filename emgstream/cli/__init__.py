"""The ``emgstream`` command line.

Each command lives in its own module and is imported only when it runs, so that
``emgstream --help`` answers at once and ``emgstream record`` never imports torch.
"""

from __future__ import annotations

import functools
import importlib

import click

from .. import __version__
from .._extras import missing_extra

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


#: commands that need an optional part of the install: (modules, what for, the extra)
_NEEDS = {"calibrate": (("torch",), "personalization (emgstream calibrate)", "adapt"),
          "eval": (("torch", "sklearn"), "emgstream eval", "adapt"),
          "train": (("torch", "onnxscript"), "training (emgstream train)", "train"),
          "export": (("torch", "onnxscript"), "emgstream export", "train")}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, attr, _ = _COMMANDS[name]
        command = getattr(importlib.import_module(module), attr)
        if name in _NEEDS and not hasattr(command, "_needs_checked"):
            command.callback = _checking_extra(command.callback, *_NEEDS[name])
            command._needs_checked = True
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _checking_extra(callback, modules: tuple[str, ...], what: str, extra: str):
    """``callback``, first saying which extra to install when one of ``modules`` is missing
    (when the command runs: its --help needs nothing)."""

    @functools.wraps(callback)
    def checked(*args, **kwargs):
        missing = missing_extra(modules, what, extra)
        if missing:
            raise click.ClickException(missing)
        return callback(*args, **kwargs)

    return checked


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emgstream")
@click.option("-v", "--verbose", count=True,
              help="More log output (-v info, with liblsl's and Qt's; -vv debug).")
def main(verbose: int) -> None:
    """Real-time wearable EMG: stream, filter, recognise gestures, adapt to each user."""
    from ._logs import setup

    setup(verbose)
