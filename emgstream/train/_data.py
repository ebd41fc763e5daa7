"""Windows for training and evaluation, cut lazily from continuous filtered recordings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..dsp import filter_offline
from ..io import LabelledStream
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
        emg = self.emg[idx].transpose(1, 2)
        if self.max_rotation:
            # channel-rotation augmentation (emg2pose, CPEP appendix B): each window's band
            # turned by a random whole number of electrodes in [-r, r]
            n_ch = emg.shape[1]
            shift = torch.randint(-self.max_rotation, self.max_rotation + 1, (len(emg), 1))
            order = (torch.arange(n_ch)[None, :] - shift) % n_ch
            emg = torch.gather(emg, 1, order[:, :, None].expand(-1, -1, emg.shape[2]))
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
