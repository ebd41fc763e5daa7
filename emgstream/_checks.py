"""Argument checks that raise precise messages (private helpers)."""

from __future__ import annotations

import numbers

import numpy as np

#: Bounds on what untrusted input may declare (a model file's preprocessing, a stream's
#: description, a recording): buffers are sized from these numbers, so an absurd value must be
#: refused before anything is allocated. 4096 channels covers high-density grids; 100 kHz is
#: far above what surface EMG needs (content below 500 Hz) and what its amplifiers offer.
MAX_CHANNELS = 4096
MAX_SAMPLE_RATE = 100_000.0
#: Characters in a name, label or unit that comes from a file or a device.
MAX_TEXT = 256


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_at_most(value, limit, name: str, unit: str = ""):
    """``value`` (already checked positive) must not exceed ``limit``."""
    if value > limit:
        raise ValueError(f"{name} must be at most {_number(limit)}{unit}, got "
                         f"{_number(value)}{unit}")
    return value


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_text(value, name: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name} must be a string of at most {limit} characters, got "
                         f"{shown(value)}")
    return value


def shown(value, limit: int = 40) -> str:
    """``repr`` of an untrusted value, cut to about ``limit`` characters: an error message that
    quotes a file's or a device's text must stay one short line."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"


def check_option(value, name: str, allowed) -> object:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(map(repr, allowed))}, got {value!r}")
    return value


def check_chunk(samples: np.ndarray, timestamps: np.ndarray, n_channels: int) -> None:
    """Check a chunk against the contract: float32 (n, C), float64 (n,), finite."""
    if samples.ndim != 2 or samples.shape[1] != n_channels:
        raise ValueError(f"expected samples of shape (n, {n_channels}), got {samples.shape}")
    if timestamps.shape != (samples.shape[0],):
        raise ValueError(
            f"expected {samples.shape[0]} timestamps for {samples.shape[0]} samples, "
            f"got shape {timestamps.shape}")
    if not np.isfinite(samples).all():
        bad = np.argwhere(~np.isfinite(samples))[0]
        raise ValueError(f"non-finite sample at row {bad[0]}, channel {bad[1]}")
