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
def sos_filter(sos, state, x, out, scratch):
    """Cascade of second-order sections, direct form II transposed (as scipy's sosfilt).

    sos (sections, 6) float64; state (2, sections, channels) float64, updated in place;
    x (time, channels) float32; out (time, channels) float32; scratch (2, channels)
    float64. Returns True, or False when ``x`` holds a NaN or inf: the state is then
    restored to what it was before the call (``out`` is garbage).

    Loop order: time outer, sections middle, channels inner. The channel loop has no
    dependence between iterations and walks contiguous memory, so LLVM vectorises it;
    the time and section loops carry the recursion. The two state planes are separate
    rows of ``state`` (not interleaved per section), which lets LLVM's run-time alias
    check pass and keeps the vector path (3x faster than (sections, 2, channels)).
    The finiteness check rides along the input copy rather than a pass of its own.
    """
    n, n_channels = x.shape
    n_sections = sos.shape[0]
    backup = state.copy()
    values = scratch[0]
    nonfinite = scratch[1]  # stays 0 per channel unless a NaN/inf goes by (x - x)
    for c in range(n_channels):
        nonfinite[c] = 0.0
    for t in range(n):
        for c in range(n_channels):
            v = np.float64(x[t, c])
            values[c] = v
            nonfinite[c] += v - v
        for s in range(n_sections):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            z0 = state[0, s]
            z1 = state[1, s]
            for c in range(n_channels):
                xin = values[c]
                y = b0 * xin + z0[c]
                z0[c] = b1 * xin - a1 * y + z1[c]
                z1[c] = b2 * xin - a2 * y
                values[c] = y
        for c in range(n_channels):
            out[t, c] = values[c]
    for c in range(n_channels):
        if nonfinite[c] != 0.0:
            state[...] = backup
            return False
    return True


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
