"""Streaming DSP: numba ring buffer and causal SOS filters, scipy filter design.

Processing order of the live chain (and of :func:`filter_offline`, which is the same
chain run over a whole recording): Butterworth band-pass -> mains notch (+ harmonics),
causal, state carried across chunks, steady-state start from the first sample.

- :class:`RingBuffer`: one writer, many readers; ``read_since`` reports overruns.
- :func:`design_filters`: the second-order sections (scipy).
- :class:`StreamingFilter`: sections applied chunk by chunk (numba, GIL released).
- :func:`make_filter`, :func:`filter_offline`: the chain a model's ``Preprocessing`` asks for.
"""

from __future__ import annotations

from ._filters import StreamingFilter, design_filters, filter_offline, make_filter
from ._ring import RingBuffer

__all__ = ["RingBuffer", "StreamingFilter", "design_filters", "filter_offline", "make_filter"]
