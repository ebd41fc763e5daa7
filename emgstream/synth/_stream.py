"""Streaming synthetic wristband (first version: gesture-modulated band-limited noise)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from .._checks import check_positive_float, check_positive_int

GESTURES = ("rest", "fist", "open_hand", "pinch_index", "pinch_middle", "pinch_ring",
            "pinch_pinky", "point", "thumbs_up", "wrist_flexion", "wrist_extension",
            "radial_deviation", "ulnar_deviation")


class SynthStream:
    """Produces ``(emg (n, C) float32 µV, labels (n,) int16)`` block by block, state carried."""

    def __init__(self, n_channels=16, sample_rate=2000.0, user=0, session=0, seed=0,
                 hold_s=2.0, rest_s=1.5):
        self.n_channels = check_positive_int(n_channels, "n_channels")
        self.sample_rate = check_positive_float(sample_rate, "sample_rate")
        self.class_names = list(GESTURES)
        rng = np.random.default_rng([seed, user, session])
        self._rng = rng
        angles = 2 * np.pi * np.arange(self.n_channels) / self.n_channels
        centres = rng.uniform(0, 2 * np.pi, size=(len(GESTURES), 2))
        d = np.angle(np.exp(1j * (angles[None, None, :] - centres[:, :, None])))
        self._patterns = np.exp(-d ** 2 / 0.5).sum(axis=1)
        self._patterns[0] = 0.05
        high = min(450.0, 0.45 * self.sample_rate)
        self._sos = signal.butter(4, [20.0 / (self.sample_rate / 2), high / (self.sample_rate / 2)],
                                  btype="bandpass", output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2, self.n_channels))
        self._hold = int(hold_s * self.sample_rate)
        self._rest = int(rest_s * self.sample_rate)
        self._t = 0
        self._env = 0.0

    def generate(self, n):
        idx = self._t + np.arange(n)
        period = self._hold + self._rest
        cycle, phase = np.divmod(idx, period)
        gesture = 1 + cycle % (len(GESTURES) - 1)
        labels = np.where(phase >= self._rest, gesture, 0).astype(np.int16)
        white = self._rng.standard_normal((n, self.n_channels))
        noise, self._zi = signal.sosfilt(self._sos, white, axis=0, zi=self._zi)
        gain = 200.0 * self._patterns[labels] + 3.0
        self._t += n
        return (noise * gain).astype(np.float32), labels
