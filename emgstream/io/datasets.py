"""Windowed datasets over labelled streams and recordings, filtered like the live path.

Processing order, per continuous stream (a recording, a 3DC cycle, a synthetic session):

1. causal band-pass and notch by :func:`emgstream.dsp.filter_offline` over the whole stream,
   so a window sees exactly what the live ring buffer would hold (never across streams);
2. windows of ``spec.window`` samples every ``spec.stride`` samples, each start moved by a
   random ``-jitter .. +jitter`` samples when a jitter is set (a moved window that would
   break the rules below keeps its nominal start);
3. ``transform`` (e.g. :class:`ChannelRotation`) on the item.

Normalisation is not applied here: the ONNX graph of a model normalises its input itself
(``Preprocessing.normalisation``), so windows are filtered and un-normalised, as live.

Label policy: a window's label is the label of its **last** sample (what a causal
recogniser is asked at that moment). Windows are skipped when that label is -1
(unlabelled; unless ``labelled=False``), when ``pure=True`` and the window mixes classes,
when any of its samples belongs to an ``exclude``-d class (so an unseen gesture never leaks
into a training window), and, when pose is delivered, when any sample is an
inverse-kinematics failure (all 20 joint angles ~0, as the emg2pose loader does).

The dataset is map-style and torch-free; ``torch.utils.data.DataLoader`` takes it as is.
HDF5 recordings are read (and filtered) in each worker on first use and kept in that
worker's memory; no h5py handle is ever pickled.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_positive_int
from ._stream import LabelledStream

__all__ = ["WindowSpec", "WindowDataset", "ChannelRotation", "Compose", "rotate_channels"]

logger = logging.getLogger(__name__)

_IK_FAILURE_RAD = 1e-4  # all 20 angles within this of zero = the IK solver failed


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut: ``window`` samples every ``stride`` samples, start jittered by
    up to ``jitter`` samples either way (0 for evaluation)."""

    window: int
    stride: int
    jitter: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self.window, "window")
        check_positive_int(self.stride, "stride")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, np.integer)) \
                or self.jitter < 0:
            raise ValueError(f"jitter must be a non-negative integer, got {self.jitter!r}")

    @classmethod
    def from_preprocessing(cls, preprocessing, jitter: int = 0) -> "WindowSpec":
        """The model's window, one window per live hop."""
        return cls(preprocessing.window, preprocessing.hop, jitter)


@dataclass
class _Entry:
    """What the dataset knows about one stream without holding its samples."""

    source: LabelledStream | Path
    user: int
    n_samples: int
    valid: np.ndarray  # bool (n_samples - window + 1,): may a window start here
    labels: np.ndarray  # int16 (n_samples,)


class WindowDataset:
    """Windows from labelled streams or emg2pose-layout HDF5 files.

    Parameters
    ----------
    sources : sequence of LabelledStream or path
        Continuous streams; files are read lazily (per worker) with
        :func:`emgstream.io.read_recording`. All must share rate, channel count and (when
        labelled) class names.
    spec : WindowSpec
    preprocessing : emgstream.modelfile.Preprocessing, optional
        The model's filters, applied per stream by :func:`emgstream.dsp.filter_offline`.
        ``None`` delivers raw samples.
    pure : bool
        Skip windows whose samples do not all carry the window's label.
    exclude : sequence of str
        Class names whose samples no window may contain (held-out gestures). They are
        dropped from :attr:`class_names` and the labels renumbered to match, so
        :attr:`class_names` is what a classifier trained on the dataset outputs.
    labelled : bool
        Require a label (>= 0) at the window's last sample.
    with_pose : bool, optional
        Deliver ``pose``; default: when every source has pose.
    transform : callable, optional
        ``item -> item`` applied last (training augmentation).
    seed : int
        Seed of the jitter; with :meth:`set_epoch` each epoch jitters anew.
    max_cached_streams : int, optional
        How many files each worker keeps read and filtered (least recently used go first);
        ``None`` keeps every file it has read. Bound it for datasets larger than memory, and
        draw windows file by file (a sampler that shuffles within blocks of files), or every
        window re-reads its file. In-memory streams are never dropped.

    Items are dicts: ``emg`` float32 (channels, window); ``label`` int (into
    :attr:`class_names`, -1 when unlabelled); ``pose`` float32 (20, window) radians when
    delivered; ``user`` int (index into :attr:`users`).
    """

    def __init__(self, sources: Sequence[LabelledStream | str | os.PathLike], spec: WindowSpec,
                 preprocessing=None, *, pure: bool = True, exclude: Sequence[str] = (),
                 labelled: bool = True, with_pose: bool | None = None,
                 transform: Callable[[dict], dict] | None = None, seed: int = 0,
                 max_cached_streams: int | None = None) -> None:
        if not isinstance(spec, WindowSpec):
            raise TypeError(f"spec must be a WindowSpec, got {type(spec).__name__}")
        sources = list(sources)
        if not sources:
            raise ValueError("WindowDataset needs at least one stream or file")
        self.spec = spec
        self.preprocessing = preprocessing
        self.transform = transform
        self._pure, self._labelled = bool(pure), bool(labelled)
        self._seed, self._epoch = int(seed), 0
        headers = [_header(s) for s in sources]
        self.sample_rate, self.n_channels = headers[0]["rate"], headers[0]["channels"]
        for h in headers[1:]:
            if h["rate"] != self.sample_rate or h["channels"] != self.n_channels:
                raise ValueError(
                    f"{h['name']} is {h['channels']} ch @ {h['rate']:g} Hz but "
                    f"{headers[0]['name']} is {self.n_channels} ch @ {self.sample_rate:g} Hz")
        if preprocessing is not None and (
                preprocessing.n_channels != self.n_channels
                or not np.isclose(preprocessing.sample_rate, self.sample_rate)):
            raise ValueError(
                f"preprocessing expects {preprocessing.n_channels} ch @ "
                f"{preprocessing.sample_rate:g} Hz, the data is {self.n_channels} ch @ "
                f"{self.sample_rate:g} Hz")
        named = [h for h in headers if h["class_names"]]
        source_names = list(named[0]["class_names"]) if named else []
        for h in named[1:]:
            if list(h["class_names"]) != source_names:
                raise ValueError(f"{h['name']} has classes {h['class_names']}, "
                                 f"{named[0]['name']} has {source_names}")
        unknown = set(exclude) - set(source_names)
        if unknown:
            raise ValueError(f"exclude names classes {sorted(unknown)} that are not among "
                             f"{source_names}")
        self.exclude = tuple(exclude)
        self.class_names: list[str] = [c for c in source_names if c not in self.exclude]
        self._source_class_names = source_names
        has_pose = all(h["pose"] is not None for h in headers)
        if with_pose and not has_pose:
            missing = next(h["name"] for h in headers if h["pose"] is None)
            raise ValueError(f"with_pose=True but {missing} has no joint angles")
        self.with_pose = has_pose if with_pose is None else bool(with_pose)
        self.users: list[str] = sorted({h["user"] for h in headers})
        self._entries = [self._entry(s, h) for s, h in zip(sources, headers)]
        self._index = np.concatenate(
            [np.stack([np.full(len(starts), i), starts], axis=1)
             for i, starts in enumerate(map(self._nominal_starts, self._entries))])
        if len(self._index) == 0:
            raise ValueError(f"no window of {spec.window} samples satisfies the rules "
                             f"(pure={pure}, labelled={labelled}, exclude={list(exclude)}) in "
                             f"{len(sources)} streams")
        if max_cached_streams is not None and max_cached_streams < 1:
            raise ValueError(f"max_cached_streams must be None or >= 1, got "
                             f"{max_cached_streams!r}")
        self.max_cached_streams = max_cached_streams
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    # -- building the index ------------------------------------------------------------------
    def _entry(self, source, header) -> _Entry:
        labels, pose = header["labels"], header["pose"] if self.with_pose else None
        n, w = len(labels), self.spec.window
        if n < w:
            return _Entry(source, self.users.index(header["user"]), n, np.zeros(0, bool),
                          self._relabel(labels))
        last = labels[w - 1:]
        valid = last >= 0 if self._labelled else np.ones(n - w + 1, bool)
        if self.exclude:
            codes = [self._source_class_names.index(c) for c in self.exclude]
            valid &= _window_count(np.isin(labels, codes), w) == 0
        if self._pure:
            valid &= _window_count(np.diff(labels.astype(np.int32), prepend=labels[0]) != 0,
                                   w, skip_first=True) == 0
        if pose is not None:
            valid &= _window_count(np.all(np.abs(pose) < _IK_FAILURE_RAD, axis=1), w) == 0
        return _Entry(source, self.users.index(header["user"]), n, valid,
                      self._relabel(labels))

    def _relabel(self, labels: np.ndarray) -> np.ndarray:
        """Source class codes -> codes into :attr:`class_names` (excluded classes -> -1)."""
        if not self.exclude:
            return labels
        table = np.array([self.class_names.index(c) if c in self.class_names else -1
                          for c in self._source_class_names] + [-1], np.int16)
        return table[labels]  # label -1 picks the appended -1

    def _nominal_starts(self, entry: _Entry) -> np.ndarray:
        starts = np.arange(0, len(entry.valid), self.spec.stride)
        return starts[entry.valid[starts]]

    # -- public ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    @property
    def window_labels(self) -> np.ndarray:
        """int64 (windows,): each window's label at its nominal start (for sampling and
        metrics; under ``pure=True`` a jitter shorter than the window never changes it)."""
        out = np.empty(len(self._index), np.int64)
        for i, entry in enumerate(self._entries):
            rows = self._index[:, 0] == i
            out[rows] = entry.labels[self._index[rows, 1] + self.spec.window - 1]
        return out

    @property
    def window_users(self) -> np.ndarray:
        """int64 (windows,): each window's user index."""
        users = np.array([e.user for e in self._entries], np.int64)
        return users[self._index[:, 0]]

    def set_epoch(self, epoch: int) -> None:
        """Draw a new jitter for every window (call once per epoch)."""
        self._epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        stream, start = (int(v) for v in self._index[index])
        entry = self._entries[stream]
        if self.spec.jitter:
            rng = np.random.default_rng([self._seed, self._epoch, index % len(self)])
            moved = start + int(rng.integers(-self.spec.jitter, self.spec.jitter + 1))
            if 0 <= moved < len(entry.valid) and entry.valid[moved]:
                start = moved
        emg, pose = self._samples(stream)
        stop = start + self.spec.window
        item = {"emg": np.ascontiguousarray(emg[start:stop].T),
                "label": int(entry.labels[stop - 1]), "user": entry.user}
        if self.with_pose:
            item["pose"] = np.ascontiguousarray(pose[start:stop].T, dtype=np.float32)
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        pose = ", with pose" if self.with_pose else ""
        return (f"<WindowDataset {len(self)} windows of {self.spec.window} samples from "
                f"{len(self._entries)} streams, {len(self.users)} users, "
                f"{self.n_channels} ch @ {self.sample_rate:g} Hz{pose}>")

    # -- samples, per worker -----------------------------------------------------------------
    def _samples(self, stream: int) -> tuple[np.ndarray, np.ndarray | None]:
        if stream in self._cache:
            self._cache.move_to_end(stream)
        else:
            source = self._entries[stream].source
            if isinstance(source, LabelledStream):
                emg, pose = source.emg, source.pose
            else:
                from .recording import read_recording

                rec = read_recording(source)
                if rec.n_samples != self._entries[stream].n_samples:
                    raise ValueError(f"{str(source)!r} changed since the dataset was built: "
                                     f"{rec.n_samples} samples, expected "
                                     f"{self._entries[stream].n_samples}")
                emg, pose = rec.emg, rec.joint_angles
            if self.preprocessing is not None:
                from ..dsp import filter_offline

                emg = filter_offline(emg, self.sample_rate, self.preprocessing)
            self._cache[stream] = (np.asarray(emg, np.float32),
                                   pose if self.with_pose else None)
            self._evict()
        return self._cache[stream]

    def _evict(self) -> None:
        """Drop the least recently used files beyond ``max_cached_streams``."""
        if self.max_cached_streams is None:
            return
        files = [k for k in self._cache if not isinstance(self._entries[k].source,
                                                          LabelledStream)]
        for key in files[:max(0, len(files) - self.max_cached_streams)]:
            del self._cache[key]

    def __getstate__(self) -> dict:
        # workers read and filter files themselves; in-memory streams travel as they are
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict((k, v) for k, v in self._cache.items()
                                      if isinstance(self._entries[k].source, LabelledStream))
        return state


def _window_count(mask: np.ndarray, window: int, skip_first: bool = False) -> np.ndarray:
    """For each window start, how many True in ``mask`` over the window (``skip_first``:
    over all but its first sample)."""
    c = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    first = 1 if skip_first else 0
    return c[window:] - c[first:len(c) - window + first]


def _header(source) -> dict:
    """Rate, channels, user, class names, labels and pose of a stream or a file."""
    if isinstance(source, LabelledStream):
        return {"name": repr(source), "rate": float(source.sample_rate),
                "channels": source.n_channels, "user": source.user,
                "class_names": list(source.class_names) if (source.labels >= 0).any() else [],
                "labels": np.asarray(source.labels, np.int16), "pose": source.pose}
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"sources must be LabelledStream or paths, got {type(source).__name__}")
    from .recording import read_recording

    # Read once here for labels and pose (validated by the reader); the EMG is dropped and
    # read again in the worker that needs it.
    rec = read_recording(source)
    labels = rec.labels if rec.labels is not None else np.full(rec.n_samples, -1, np.int16)
    return {"name": repr(str(source)), "rate": float(rec.sample_rate),
            "channels": rec.n_channels, "user": str(rec.meta.get("user", "")),
            "class_names": list(rec.class_names) if rec.labels is not None else [],
            "labels": labels, "pose": rec.joint_angles}


# -- transforms ------------------------------------------------------------------------------
def rotate_channels(emg: np.ndarray, shift: int) -> np.ndarray:
    """Electrodes rotated around the band: output channel ``c`` is input ``c - shift``.

    ``emg`` is (channels, time); a band's channels form a ring, so this is what turning
    the band by ``shift`` electrode spacings does."""
    return np.roll(emg, shift, axis=0)


class ChannelRotation:
    """Training augmentation: rotate the band by a random shift from ``shifts``.

    Parameters
    ----------
    shifts : sequence of int
        Electrode shifts to choose from uniformly.
    seed : int, optional
        Seed of the draws; ``None`` takes fresh entropy (each DataLoader worker then draws
        differently, since the generator is created on first call in the worker).
    """

    def __init__(self, shifts: Sequence[int] = (-1, 0, 1), seed: int | None = None) -> None:
        self.shifts = tuple(int(s) for s in shifts)
        if not self.shifts:
            raise ValueError("shifts must hold at least one shift")
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._pid = -1

    def __call__(self, item: dict) -> dict:
        if self._rng is None or self._pid != os.getpid():
            self._rng, self._pid = np.random.default_rng(self.seed), os.getpid()
        shift = self.shifts[int(self._rng.integers(len(self.shifts)))]
        return {**item, "emg": rotate_channels(item["emg"], shift)}

    def __repr__(self) -> str:
        return f"ChannelRotation(shifts={self.shifts}, seed={self.seed})"


class Compose:
    """Apply transforms in order: ``Compose(ChannelRotation(), other)``."""

    def __init__(self, *transforms: Callable[[dict], dict]) -> None:
        self.transforms = transforms

    def __call__(self, item: dict) -> dict:
        for transform in self.transforms:
            item = transform(item)
        return item

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"
