"""Filter design (scipy) and the streaming causal filter (numba)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from .._checks import check_positive_float, check_positive_int
from ._kernels import sos_filter

if TYPE_CHECKING:
    from ..modelfile import Preprocessing

logger = logging.getLogger(__name__)

#: The band-pass high edge is kept at or below this fraction of the sampling rate
#: (0.9 of Nyquist), so a 20-450 Hz default still designs at low rates.
_HIGH_EDGE_MAX_FRACTION = 0.45


def design_filters(rate, bandpass=(20.0, 450.0), order=4, notch=50.0, harmonics=1,
                   notch_q=30.0) -> np.ndarray:
    """Design the causal chain: Butterworth band-pass, then mains notch (+ harmonics).

    Parameters
    ----------
    rate : float
        Sampling rate in Hz.
    bandpass : (low, high) | None
        Band edges in Hz, or None for no band-pass. ``high`` is clamped to
        ``0.45 * rate`` (logged), so the default works at low rates.
    order : int
        Butterworth prototype order (a band-pass of order 4 has 4 sections).
    notch : float | None
        Mains frequency in Hz (usually 50 or 60), or None for no notch.
    harmonics : int
        Number of notches at ``notch * k`` for ``k = 1..harmonics``; those at or above
        Nyquist are skipped (logged).
    notch_q : float
        Quality factor of each notch (centre / -3 dB width).

    Returns
    -------
    sos : float64 array (n_sections, 6)
        Band-pass sections first, then one section per notch. May have 0 rows.
    """
    rate = check_positive_float(rate, "rate")
    order = check_positive_int(order, "order")
    harmonics = check_positive_int(harmonics, "harmonics")
    notch_q = check_positive_float(notch_q, "notch_q")
    nyquist = rate / 2.0
    sections = []
    if bandpass is not None:
        try:
            low, high = bandpass
        except (TypeError, ValueError):
            raise ValueError(f"bandpass must be (low, high) in Hz or None, got {bandpass!r}")
        low = check_positive_float(low, "bandpass low edge")
        high = check_positive_float(high, "bandpass high edge")
        if not low < high:
            raise ValueError(f"bandpass low edge must be below the high edge, got {bandpass!r}")
        max_high = _HIGH_EDGE_MAX_FRACTION * rate
        if high > max_high:
            logger.info("band-pass high edge %.6g Hz clamped to %.6g Hz (0.45 x rate %.6g Hz)",
                        high, max_high, rate)
            high = max_high
            if not low < high:
                raise ValueError(
                    f"bandpass low edge {low:g} Hz must be below the high edge, which is "
                    f"clamped to {high:g} Hz (0.45 x rate) at rate {rate:g} Hz")
        sections.append(signal.butter(order, (low, high), btype="bandpass", output="sos",
                                      fs=rate))
    if notch is not None:
        notch = check_positive_float(notch, "notch")
        if notch >= nyquist:
            logger.warning("notch at %.6g Hz skipped: not below Nyquist (%.6g Hz)", notch,
                           nyquist)
        for k in range(1, harmonics + 1):
            f0 = notch * k
            if f0 >= nyquist:
                if k > 1:
                    logger.info("notch harmonics from %.6g Hz skipped: not below Nyquist "
                                "(%.6g Hz)", f0, nyquist)
                break
            b, a = signal.iirnotch(f0, notch_q, fs=rate)
            sections.append(signal.tf2sos(b, a))
    if not sections:
        return np.zeros((0, 6))
    return np.ascontiguousarray(np.concatenate(sections, axis=0), dtype=np.float64)


class StreamingFilter:
    """A causal SOS filter applied chunk by chunk, with per-channel state carried over.

    The output equals ``scipy.signal.sosfilt(sos, x, axis=0, zi=zi0)`` over the whole
    signal, whatever the split into chunks, where ``zi0`` is the steady state for the
    first sample (``sosfilt_zi(sos)`` scaled by ``x[0]`` per channel): a signal that starts
    at a DC offset does not ring. Internal state and arithmetic are float64; input and
    output are float32 ``(time, channels)``. One filter serves one stream on one thread
    (the numba kernel releases the GIL while it runs).

    Parameters
    ----------
    sos : array (n_sections, 6)
        Second-order sections with ``a0 == 1`` (as :func:`design_filters` returns).
    n_channels : int
        Channels of every chunk.
    """

    def __init__(self, sos, n_channels: int) -> None:
        sos = np.array(sos, dtype=np.float64, order="C")  # our own copy
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
        if not np.isfinite(sos).all():
            raise ValueError("sos has non-finite coefficients")
        if sos.shape[0] and not (sos[:, 3] == 1.0).all():
            raise ValueError(f"sos[:, 3] (a0) must be all ones, got {sos[:, 3].tolist()}")
        self._n_channels = check_positive_int(n_channels, "n_channels")
        sos.setflags(write=False)
        self._sos = sos
        # steady-state state for a unit step, (n_sections, 2); scaled by x[0] at start
        self._zi_unit = signal.sosfilt_zi(sos) if sos.shape[0] else np.zeros((0, 2))
        self._state = np.zeros((2, sos.shape[0], self._n_channels))  # (z0|z1, section, ch)
        self._scratch = np.zeros((2, self._n_channels))
        self._started = False

    @property
    def sos(self) -> np.ndarray:
        """The sections (read-only)."""
        return self._sos

    @property
    def n_channels(self) -> int:
        return self._n_channels

    @property
    def n_sections(self) -> int:
        return self._sos.shape[0]

    def reset(self) -> None:
        """Forget the state: the next non-empty chunk starts in steady state again."""
        self._started = False

    def process(self, chunk, out=None) -> np.ndarray:
        """Filter one chunk and carry the state to the next.

        Parameters
        ----------
        chunk : array (n, n_channels)
            Samples, time-major; converted to float32 C-contiguous if it is not already.
            ``n`` may be 0.
        out : float32 C-contiguous array (n, n_channels) | None
            Where to write the result (may be ``chunk`` itself); allocated if None.

        Returns
        -------
        filtered : float32 array (n, n_channels)

        Raises ValueError on a wrong shape or a non-finite sample; the state is then
        unchanged, so the stream can go on with the next good chunk.
        """
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._n_channels:
            raise ValueError(f"expected a chunk of shape (n, {self._n_channels}), "
                             f"got {np.shape(chunk)}")
        if out is None:
            out = np.empty_like(x)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.float32
              or out.shape != x.shape or not out.flags.c_contiguous):
            raise ValueError(f"out must be a C-contiguous float32 array of shape {x.shape}, "
                             f"got {getattr(out, 'dtype', type(out))} "
                             f"{getattr(out, 'shape', '')}")
        if x.shape[0] == 0:
            return out
        if not self._started:
            first = x[0].astype(np.float64)
            # (2, sections, 1) * (channels,): steady state for a step of height x[0]
            self._state[...] = self._zi_unit.T[:, :, None] * first
        if not sos_filter(self._sos, self._state, x, out, self._scratch):
            row, column = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"non-finite sample at row {row}, channel {column}")
        self._started = True
        return out

    def __repr__(self) -> str:
        started = "running" if self._started else "not started"
        return (f"<StreamingFilter | {self.n_sections} sections, {self._n_channels} channels, "
                f"{started}>")


def make_filter(preprocessing: "Preprocessing") -> StreamingFilter:
    """The live causal chain for a model's preprocessing (band-pass, then notch).

    The live pipeline and the dataset loaders both build their filter here, so training
    data and live data go through the same sections. The notch quality factor is
    :func:`design_filters`' default (``Preprocessing`` does not carry one).
    """
    sos = design_filters(preprocessing.sample_rate, bandpass=preprocessing.bandpass,
                         order=preprocessing.bandpass_order, notch=preprocessing.notch,
                         harmonics=preprocessing.notch_harmonics)
    return StreamingFilter(sos, preprocessing.n_channels)


def filter_offline(x, rate, preprocessing: "Preprocessing") -> np.ndarray:
    """Filter a whole recording by exactly the live causal chain.

    Parameters
    ----------
    x : array (time, channels)
        Raw samples (µV); converted to float32 as live chunks are.
    rate : float
        The recording's sampling rate in Hz; must equal ``preprocessing.sample_rate``.
    preprocessing : emgstream.modelfile.Preprocessing
        The model's preprocessing; its channel count must match ``x``.

    Returns
    -------
    filtered : float32 array (time, channels)
        What :func:`make_filter` would output if ``x`` were streamed in any chunks
        (causal, steady-state start from the first sample).
    """
    rate = check_positive_float(rate, "rate")
    if not np.isclose(rate, preprocessing.sample_rate, rtol=1e-9, atol=0.0):
        raise ValueError(f"recording rate {rate:g} Hz does not match the preprocessing "
                         f"sample_rate {preprocessing.sample_rate!r} Hz")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != preprocessing.n_channels:
        raise ValueError(f"expected x of shape (time, {preprocessing.n_channels}), "
                         f"got {x.shape}")
    return make_filter(preprocessing).process(x)
