"""The command line says things one way: SOURCE positional, --duration in SECONDS, defaults in
click's [default: ...], --user a person's name, no paper jargon in the help."""

from __future__ import annotations

import re

import click
import pytest

from emgstream.cli import main
from emgstream.cli._types import SECONDS

_JARGON = re.compile(r"eq\. ?\d|N_c|the paper|\bdev users\b")
_INLINE_DEFAULT = re.compile(r"\(default|default:|\[default|\bDefault\b")


def _commands():
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield f"{name} {sub}", command.get_command(ctx, sub)
        else:
            yield name, command


_ALL = list(_commands())


@pytest.mark.parametrize("name, command", _ALL, ids=[n for n, _ in _ALL])
def test_options_say_things_one_way(name, command):
    for param in command.params:
        text = getattr(param, "help", None) or ""
        assert not _JARGON.search(text), (name, param.name, text)
        assert not _INLINE_DEFAULT.search(text), \
            f"{name} {param.opts}: a default belongs in show_default, not in {text!r}"
        if param.name == "duration":
            assert param.metavar == "SECONDS", (name, param.metavar)
            assert param.type is SECONDS, (name, param.type)
        if "--user" in param.opts:
            assert param.metavar == "NAME" and param.type == click.STRING, name
    assert not _JARGON.search(command.help or ""), name


@pytest.mark.parametrize("name", ["demo", "run", "record", "calibrate"])
def test_source_is_positional(name):
    command = main.get_command(click.Context(main), name)
    first = command.params[0]
    assert isinstance(first, click.Argument) and first.name == "source", name


def test_demo_threshold_shown_is_the_pipelines():
    from emgstream.cli._demo import _PIPELINE_THRESHOLD
    from emgstream.pipeline import PipelineConfig

    assert _PIPELINE_THRESHOLD == PipelineConfig().threshold


@pytest.mark.parametrize("uri, expected", [
    ("sim://", "sim://?session=2"),
    ("sim://?channels=8&rate=500", "sim://?channels=8&rate=500&session=2"),
    ("sim://?user=14", "sim://?user=14"),
    ("sim://?session=0", "sim://?session=0"),
    ("lsl://name=EMG", "lsl://name=EMG"),
])
def test_sim_without_user_or_session_is_a_session_no_model_trained_on(uri, expected):
    from emgstream.sources.sim import HELD_OUT_SESSION, held_out_session

    assert held_out_session(uri) == expected
    assert HELD_OUT_SESSION == 2  # models/default.toml trains on sessions 0 and 1


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_seconds_refuse_what_is_no_duration(value):
    with pytest.raises(click.BadParameter, match="seconds, got"):
        SECONDS.convert(value, None, None)
    assert SECONDS.convert("2.5", None, None) == 2.5
