"""A continuous labelled recording held in memory: the common currency of the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._checks import check_positive_float

__all__ = ["LabelledStream"]


@dataclass
class LabelledStream:
    """One continuous stretch of EMG (optionally with pose) and per-sample labels.

    Attributes
    ----------
    emg : ndarray, float32, shape (time, channels)
        Raw samples (unfiltered), time-major as on the wire.
    sample_rate : float
    labels : ndarray, int16, shape (time,)
        Class index per sample into ``class_names``; -1 where unlabelled.
    class_names : list of str
    pose : ndarray, float64, shape (time, 20), optional
        Joint angles in radians, emg2pose joint order; all-zero rows mark IK failures.
    user, session : str
        Who and which session/block (3DC: ``"train"`` or ``"test"`` block).
    """

    emg: np.ndarray
    sample_rate: float
    labels: np.ndarray
    class_names: list[str]
    pose: np.ndarray | None = None
    user: str = ""
    session: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive_float(self.sample_rate, "sample_rate")
        if self.emg.ndim != 2:
            raise ValueError(f"emg must be (time, channels), got shape {self.emg.shape}")
        if self.labels.shape != (self.emg.shape[0],):
            raise ValueError(f"labels must have shape ({self.emg.shape[0]},), "
                             f"got {self.labels.shape}")
        if self.pose is not None and self.pose.shape[0] != self.emg.shape[0]:
            raise ValueError(f"pose has {self.pose.shape[0]} samples, emg has "
                             f"{self.emg.shape[0]}")

    @property
    def n_channels(self) -> int:
        return self.emg.shape[1]

    @property
    def duration(self) -> float:
        return self.emg.shape[0] / self.sample_rate

    def __repr__(self) -> str:
        pose = ", with pose" if self.pose is not None else ""
        return (f"<LabelledStream user={self.user!r} session={self.session!r}: "
                f"{self.n_channels} ch @ {self.sample_rate:g} Hz, {self.duration:.1f} s, "
                f"{len(self.class_names)} classes{pose}>")
