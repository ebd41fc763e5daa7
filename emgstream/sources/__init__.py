"""Acquisition sources, addressed by URI.

=========================================  ==============================================
URI                                        source
=========================================  ==============================================
``lsl://name=EMG`` / ``lsl://type=EMG``     LSL inlet (also ``source_id=...``, ``timeout=``)
``serial:///dev/ttyUSB0?baud=921600``      wristband firmware over a serial port
``replay://rec.h5?speed=1&loop=1``         an emg2pose-layout HDF5 recording
``sim://?channels=16&rate=2000&user=0``    the synthetic wristband
=========================================  ==============================================

Every source is a context manager with ``info`` and ``read(timeout)``; see :class:`Source`.
:class:`MarkerInlet` reads an LSL marker stream beside one (``record --markers``).
"""

from __future__ import annotations

from ._base import (FAULT_KINDS, DroppedSpan, FaultEvent, Source, SourceError, SourceStats,
                    StreamInfo)
from ._uri import open_source, parse_uri
from .sim import DEMO_URI

__all__ = ["DEMO_URI", "FAULT_KINDS", "DroppedSpan", "FaultEvent", "MarkerInlet", "Source",
           "SourceError", "SourceStats", "StreamInfo", "open_source", "parse_uri"]


def __getattr__(name: str):
    if name == "MarkerInlet":  # on use only: it loads liblsl
        from .markers import MarkerInlet
        return MarkerInlet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
