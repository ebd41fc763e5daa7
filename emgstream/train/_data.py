"""Windows for training and evaluation, as batches ``(emg, pose, labels)``.

Two sources of windows with pose, one batch interface (``__getitems__``, ``labels``, ``users``, ``rotated``,
``relabel``), and one rule for which is used: data generated in memory (``data.source =
"synth"``) is a :class:`WindowSet`: the filtered streams are in memory anyway, and a batch is
one vectorised gather, about half the time of :class:`emgstream.io.WindowDataset`'s per-item
path (9 against 17 ms per batch of 128 windows of 16 x 800, one thread; about 7 % of the
shipped recipe's step). Recordings on disk (``data.source = "recordings"``) are
:class:`RecordingWindows`, built on :class:`emgstream.io.WindowDataset` and read lazily by
the DataLoader's workers, so the data never has to fit in the main process's memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..dsp import filter_offline
from ..io import LabelledStream, WindowDataset, WindowSpec
from ..modelfile import Preprocessing

logger = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """Windows over concatenated streams; the arrays are shared, windows are start indices.

    emg (time, channels) float32, band-passed by the live causal chain; pose (time, 20)
    float32 radians; starts (n,) int64; labels (n,) int64 into ``class_names``, -1 where the
    window's samples do not all carry one label; users (n,) str.
    A batch is ``(emg (batch, channels, window), pose (batch, 20, window), labels (batch,))``.
    """

    emg: torch.Tensor
    pose: torch.Tensor
    starts: torch.Tensor
    labels: torch.Tensor
    users: np.ndarray
    class_names: list[str]
    window: int
    max_rotation: int = 0  #: training augmentation, see :meth:`rotated`

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices):
        idx = self.starts[torch.as_tensor(indices)][:, None] + torch.arange(self.window)
        emg = _rotate(self.emg[idx].transpose(1, 2), self.max_rotation)
        return emg, self.pose[idx].transpose(1, 2), self.labels[torch.as_tensor(indices)]

    def __getitem__(self, i):
        emg, pose, label = self.__getitems__([i])
        return emg[0], pose[0], label[0]

    def rotated(self, max_rotation: int) -> "WindowSet":
        """The same windows with channel-rotation augmentation of up to ``max_rotation``."""
        return replace(self, max_rotation=int(max_rotation))

    def subset(self, mask) -> "WindowSet":
        mask = torch.as_tensor(np.asarray(mask))
        return WindowSet(self.emg, self.pose, self.starts[mask], self.labels[mask],
                         self.users[mask.numpy()], self.class_names, self.window,
                         self.max_rotation)

    def relabel(self, names: list[str]) -> "WindowSet":
        """Keep windows whose label is in ``names``, re-indexed into ``names``."""
        lut = torch.full((len(self.class_names) + 1,), -1, dtype=torch.int64)
        for i, name in enumerate(names):
            lut[self.class_names.index(name)] = i
        new = lut[self.labels]  # label -1 reads lut[-1] = -1
        keep = new >= 0
        out = self.subset(keep.numpy())
        out.labels = new[keep]
        out.class_names = list(names)
        return out

    def __repr__(self) -> str:
        return (f"<WindowSet {len(self)} windows of {self.window} samples, "
                f"{self.emg.shape[1]} ch, users {sorted(set(self.users.tolist()))}>")


def _rotate(emg: torch.Tensor, max_rotation: int) -> torch.Tensor:
    """Channel-rotation augmentation (emg2pose, CPEP appendix B): each window's band in
    ``emg`` (batch, channels, time) turned by a random whole number of electrodes in
    [-max_rotation, max_rotation]."""
    if not max_rotation:
        return emg
    n_ch = emg.shape[1]
    shift = torch.randint(-max_rotation, max_rotation + 1, (len(emg), 1))
    order = (torch.arange(n_ch)[None, :] - shift) % n_ch
    return torch.gather(emg, 1, order[:, :, None].expand(-1, -1, emg.shape[2]))


def _gain(emg: torch.Tensor, gain_std: float) -> torch.Tensor:
    """Per-channel gain augmentation: each window's channels in ``emg`` (batch, channels,
    time) scaled by independent log-normal factors exp(N(0, gain_std^2)). Electrode-skin
    contact, and so each electrode's gain, changes from person to person and donning to
    donning; a model trained across people should not hang on one electrode's level."""
    if not gain_std:
        return emg
    return emg * torch.exp(gain_std * torch.randn(emg.shape[0], emg.shape[1], 1))


@dataclass
class LabelledWindows:
    """Labelled windows in memory, with train-time augmentation; batches ``(emg, labels)``.

    emg (n, channels, window) float32, filtered; labels (n,) int64. Each batch is turned by
    up to ``max_rotation`` electrodes (see :func:`_rotate`) and scaled per channel by
    ``gain_std`` (see :func:`_gain`). The cross-user source model of ``emgstream eval``
    trains on these through :func:`~emgstream.train.fit`.
    """

    emg: torch.Tensor
    labels: torch.Tensor
    max_rotation: int = 0
    gain_std: float = 0.0

    def __post_init__(self) -> None:
        if self.emg.ndim != 3 or self.labels.shape != (self.emg.shape[0],):
            raise ValueError(f"emg must be (n, channels, window) and labels (n,), got "
                             f"{tuple(self.emg.shape)} and {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices)
        return _gain(_rotate(self.emg[idx], self.max_rotation), self.gain_std), self.labels[idx]

    def __getitem__(self, i):
        emg, label = self.__getitems__([i])
        return emg[0], label[0]

    def __repr__(self) -> str:
        return (f"<LabelledWindows {len(self)} windows of {tuple(self.emg.shape[1:])}, "
                f"rotation <= {self.max_rotation}, gain std {self.gain_std}>")


def windows_from_streams(streams: list[LabelledStream], preprocessing: Preprocessing,
                         stride: int, exclude: tuple[str, ...] = ()) -> WindowSet:
    """Filter each stream as live, cut windows of ``preprocessing.window`` every ``stride``.

    Windows touching a sample labelled with a class in ``exclude`` are dropped (unseen
    gestures stay out of training). All streams must share class names and have pose.
    """
    if not streams:
        raise ValueError("no streams to cut windows from")
    names = list(streams[0].class_names)
    w = preprocessing.window
    emg, pose, starts, labels, users = [], [], [], [], []
    offset = 0
    excluded = {names.index(n) for n in exclude}
    for s in streams:
        if list(s.class_names) != names:
            raise ValueError(f"stream {s!r} has classes {s.class_names}, expected {names}")
        if s.pose is None:
            raise ValueError(f"stream {s!r} has no pose; alignment needs paired EMG and pose")
        n = s.emg.shape[0]
        if n < w:
            continue
        emg.append(filter_offline(s.emg, s.sample_rate, preprocessing))
        pose.append(np.asarray(s.pose, dtype=np.float32))
        st = np.arange(0, n - w + 1, stride)
        lab = np.lib.stride_tricks.sliding_window_view(s.labels, w)[st]
        uniform = (lab == lab[:, :1]).all(axis=1)
        label = np.where(uniform, lab[:, 0], -1).astype(np.int64)
        ok = ~np.isin(lab, list(excluded)).any(axis=1) if excluded else np.ones(len(st), bool)
        starts.append(st[ok] + offset)
        labels.append(label[ok])
        users.append(np.full(ok.sum(), s.user, dtype=object))
        offset += n
    return WindowSet(torch.from_numpy(np.concatenate(emg)), torch.from_numpy(np.concatenate(pose)),
                     torch.from_numpy(np.concatenate(starts)),
                     torch.from_numpy(np.concatenate(labels)),
                     np.concatenate(users).astype(str), names, w)


class RecordingWindows:
    """Windows read lazily from emg2pose-layout HDF5 recordings, batched like a
    :class:`WindowSet`.

    Wraps an :class:`emgstream.io.WindowDataset` (causal filters of the live path, per
    stream; IK failures skipped when pose is delivered; no window touches an ``exclude``-d
    class). Each DataLoader worker opens, reads and filters the files it needs itself: the
    object pickles without samples or h5py handles. Caveat at emg2pose scale: the
    WindowDataset keeps every stream a worker has read (its cache is not bounded yet), so
    over an epoch of shuffled windows a worker's memory grows toward the filtered EMG of
    its split.

    Training windows (``labelled=False``) are every window not touching an excluded class;
    :meth:`relabel` gives the labelled, single-class windows of some classes, for the
    head and its evaluation. A batch is ``(emg (batch, channels, window), pose (batch, 20,
    window) or None, labels (batch,))``; labels index :attr:`class_names` (-1: none).
    """

    def __init__(self, files: Sequence[str | os.PathLike], preprocessing: Preprocessing,
                 stride: int, exclude: Sequence[str] = (), with_pose: bool = True,
                 labelled: bool = False, names: Sequence[str] | None = None,
                 max_rotation: int = 0) -> None:
        self.files = [str(f) for f in files]
        self.preprocessing, self.stride, self.with_pose = preprocessing, stride, with_pose
        self.max_rotation = int(max_rotation)
        self.dataset = WindowDataset(self.files, WindowSpec(preprocessing.window, stride),
                                     preprocessing, pure=labelled, labelled=labelled,
                                     exclude=exclude, with_pose=with_pose)
        self.class_names = list(self.dataset.class_names if names is None else names)
        self.source_class_names = list(self.dataset.class_names) + list(exclude)
        # dataset label -> index into class_names (-1 stays -1, read from the last entry)
        lut = [self.class_names.index(c) if c in self.class_names else -1
               for c in self.dataset.class_names]
        self._lut = torch.tensor(lut + [-1], dtype=torch.int64)

    @property
    def window(self) -> int:
        return self.preprocessing.window

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        """int64 (windows,): label of each window's last sample, into :attr:`class_names`."""
        return self._lut[torch.from_numpy(self.dataset.window_labels)]

    @property
    def users(self) -> np.ndarray:
        """str (windows,): each window's user."""
        return np.asarray(self.dataset.users, dtype=str)[self.dataset.window_users]

    def __getitems__(self, indices):
        items = [self.dataset[int(i)] for i in indices]
        emg = _rotate(torch.from_numpy(np.stack([it["emg"] for it in items])),
                      self.max_rotation)
        pose = (torch.from_numpy(np.stack([it["pose"] for it in items]))
                if self.with_pose else None)
        labels = self._lut[torch.tensor([it["label"] for it in items], dtype=torch.int64)]
        return emg, pose, labels

    def __getitem__(self, i):
        emg, pose, label = self.__getitems__([i])
        return emg[0], None if pose is None else pose[0], label[0]

    def rotated(self, max_rotation: int) -> "RecordingWindows":
        """The same windows with channel-rotation augmentation of up to ``max_rotation``."""
        out = object.__new__(RecordingWindows)
        out.__dict__.update(self.__dict__, max_rotation=int(max_rotation))
        return out

    def relabel(self, names: list[str]) -> "RecordingWindows":
        """The labelled single-class windows of ``names``, labels re-indexed into ``names``."""
        unknown = set(names) - set(self.source_class_names)
        if unknown:
            raise ValueError(f"classes {sorted(unknown)} are not in the recordings' "
                             f"{self.source_class_names}")
        others = [c for c in self.source_class_names if c not in names]
        return RecordingWindows(self.files, self.preprocessing, self.stride, exclude=others,
                                with_pose=self.with_pose, labelled=True, names=names)

    def __repr__(self) -> str:
        return (f"<RecordingWindows {len(self)} windows of {self.window} samples from "
                f"{len(self.files)} files, users {self.dataset.users}>")
