"""Parameter types every command shares, so that a value is refused in one way everywhere."""

from __future__ import annotations

import math

import click


class Seconds(click.ParamType):
    """A positive, finite number of seconds (``--duration``): 0, negative, inf and nan are
    refused with one line that names the value."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"must be a number of seconds, got {value!r}", param, ctx)
        if not (seconds > 0 and math.isfinite(seconds)):
            self.fail(f"must be a positive number of seconds, got {seconds:g}", param, ctx)
        return seconds


SECONDS = Seconds()
