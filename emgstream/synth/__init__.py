"""Synthetic wristband users with paired EMG and hand pose."""

from __future__ import annotations

from ._stream import GESTURES, SynthStream

__all__ = ["GESTURES", "SynthStream"]
