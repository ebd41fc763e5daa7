"""numba kernels of the DSP layer (private).

All kernels release the GIL (``nogil=True``) so the acquisition thread filters and buffers
while other threads run, and are cached on disk (``cache=True``; the directory is numba's
default beside this file or ``NUMBA_CACHE_DIR``). Arrays are time-major ``(time, channels)``
and C-contiguous; callers check shapes and dtypes, the kernels trust them.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _first_nonfinite_row(x):
    """Row index of the first NaN/inf in ``x`` (time, channels), or -1."""
    n, n_channels = x.shape
    for t in range(n):
        for c in range(n_channels):
            if not np.isfinite(x[t, c]):
                return t
    return -1


@njit(nogil=True, cache=True)
def sos_filter(sos, state, x, out, scratch):
    """Cascade of second-order sections, direct form II transposed (as scipy's sosfilt).

    sos (sections, 6) float64; state (sections, 2, channels) float64, updated in place;
    x (time, channels) float32; out (time, channels) float32; scratch (channels,) float64.
    Returns -1, or the row of the first non-finite input, in which case nothing is
    written and the state is left untouched.

    Loop order: time outer, sections middle, channels inner. The channel loop has no
    dependence between iterations and walks contiguous memory of ``x``, ``state`` and
    ``scratch``, so LLVM vectorises it; the time and section loops carry the recursion.
    """
    bad = _first_nonfinite_row(x)
    if bad >= 0:
        return bad
    n, n_channels = x.shape
    n_sections = sos.shape[0]
    for t in range(n):
        for c in range(n_channels):
            scratch[c] = x[t, c]
        for s in range(n_sections):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            z0 = state[s, 0]
            z1 = state[s, 1]
            for c in range(n_channels):
                xin = scratch[c]
                y = b0 * xin + z0[c]
                z0[c] = b1 * xin - a1 * y + z1[c]
                z1[c] = b2 * xin - a2 * y
                scratch[c] = y
        for c in range(n_channels):
            out[t, c] = scratch[c]
    return -1


@njit(nogil=True, cache=True)
def ring_write(buf, tbuf, samples, timestamps, slot):
    """Copy a chunk into the ring starting at ``slot``, wrapping; len(chunk) <= capacity."""
    capacity = buf.shape[0]
    n = samples.shape[0]
    first = min(n, capacity - slot)
    buf[slot:slot + first] = samples[:first]
    tbuf[slot:slot + first] = timestamps[:first]
    rest = n - first
    if rest > 0:
        buf[:rest] = samples[first:]
        tbuf[:rest] = timestamps[first:]


@njit(nogil=True, cache=True)
def ring_read(buf, tbuf, slot, out, tout):
    """Copy ``len(out)`` samples out of the ring starting at ``slot``, wrapping."""
    capacity = buf.shape[0]
    n = out.shape[0]
    first = min(n, capacity - slot)
    out[:first] = buf[slot:slot + first]
    tout[:first] = tbuf[slot:slot + first]
    rest = n - first
    if rest > 0:
        out[first:] = buf[:rest]
        tout[first:] = tbuf[:rest]
