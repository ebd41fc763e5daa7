"""Argument checks that raise precise messages (private helpers)."""

from __future__ import annotations

import numbers

import numpy as np


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


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
