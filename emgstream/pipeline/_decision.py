"""From per-hop probabilities to gesture events: smoothing, threshold, debounce."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass

import numpy as np

from ._config import PipelineConfig

__all__ = ["GestureEvent"]


@dataclass(frozen=True)
class GestureEvent:
    """A decision of the inference thread.

    Attributes
    ----------
    gesture : str or None
        Class name of the stable gesture; None while uncertain (``emit="hop"`` only).
    class_index : int
        Index into the model's class names; -1 while uncertain.
    confidence : float
        Smoothed probability of ``gesture``.
    probabilities : tuple of float
        Smoothed probabilities of every class, in the model's class order.
    sample_index : int
        Index in the stream (accepted samples, from 0) of the window's last sample.
    timestamp : float
        LSL time of the window's last sample.
    latency : float
        Seconds from the arrival of the window's last sample at the host (``source.read``
        returning) to this event's emission.
    emitted : float
        LSL local clock when the event was emitted.
    model_version : int
        0 for the model the pipeline started with, +1 for each swap (adaptation).
    """

    gesture: str | None
    class_index: int
    confidence: float
    probabilities: tuple[float, ...]
    sample_index: int
    timestamp: float
    latency: float
    emitted: float
    model_version: int = 0

    def to_dict(self) -> dict:
        return {"gesture": self.gesture, "class_index": self.class_index,
                "confidence": round(self.confidence, 4),
                "probabilities": [round(p, 4) for p in self.probabilities],
                "sample_index": self.sample_index, "timestamp": self.timestamp,
                "latency_ms": round(self.latency * 1e3, 3), "emitted": self.emitted,
                "model_version": self.model_version}

    def to_json(self) -> str:
        """One line of JSON (the stdout and LSL-marker format)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def __repr__(self) -> str:
        return (f"<GestureEvent {self.gesture!r} ({self.confidence:.2f}) at sample "
                f"{self.sample_index}, latency {self.latency * 1e3:.1f} ms>")


class Decider:
    """Per-hop state machine; ``update`` returns (stable index, confidence, smoothed, changed)."""

    def __init__(self, config: PipelineConfig, n_classes: int) -> None:
        self._config = config
        self._n_classes = n_classes
        self._alpha = 2.0 / (config.smoothing_hops + 1)
        self._history: collections.deque[np.ndarray] = collections.deque(
            maxlen=config.smoothing_hops)
        self.reset()

    def reset(self) -> None:
        self._ema: np.ndarray | None = None
        self._history.clear()
        self._candidate = -1
        self._agreeing = 0
        self.stable = -1

    def update(self, probs: np.ndarray) -> tuple[int, float, np.ndarray, bool]:
        mode = self._config.smoothing
        if mode == "ema":
            self._ema = probs.copy() if self._ema is None else \
                self._alpha * probs + (1.0 - self._alpha) * self._ema
            smoothed = self._ema
            candidate = int(np.argmax(smoothed))
            confidence = float(smoothed[candidate])
        elif mode == "majority":
            self._history.append(probs)
            stacked = np.stack(self._history)
            smoothed = stacked.mean(axis=0)
            votes = np.bincount(stacked.argmax(axis=1), minlength=self._n_classes)
            # ties go to the class with the higher mean probability
            tied = np.flatnonzero(votes == votes.max())
            candidate = int(tied[np.argmax(smoothed[tied])])
            confidence = float(smoothed[candidate])
        else:
            smoothed = probs
            candidate = int(np.argmax(probs))
            confidence = float(probs[candidate])
        if confidence < self._config.threshold:
            candidate = -1
        if candidate == self._candidate:
            self._agreeing += 1
        else:
            self._candidate, self._agreeing = candidate, 1
        changed = False
        if self._agreeing >= self._config.debounce and candidate != self.stable:
            self.stable = candidate
            changed = candidate >= 0
        stable_conf = float(smoothed[self.stable]) if self.stable >= 0 else confidence
        return self.stable, stable_conf, smoothed, changed
