"""Recordings in the emg2pose HDF5 layout: a crash-safe writer, a validating reader, and the
loop that records a source.

Layout (``../shared/data/emg2pose/README.md``; Meta's tools read only the first group)::

    /emg2pose                  attrs: filename, session, stage, user, side,
                                      sample_rate (float), num_channels (int),
                                      start, end (Unix seconds, float)
    /emg2pose/timeseries       compound (T,): time f8, [joint_angles f8 (20,)], emg f4 (C,)
    /emgstream                 attrs: format_version, device (JSON StreamInfo),
                                      filters (JSON), unix_minus_lsl, complete,
                                      flushed_samples
    /emgstream/labels          int16 (T,), -1 = unlabelled; attr class_names (JSON list)
    /emgstream/markers         compound: time f8, text (UTF-8, at most 1023 bytes)
    /emgstream/dropped         compound: time f8, count i8
    /emgstream/faults          compound: time f8, kind (ASCII, 16 bytes), count i8

``time`` is on the LSL clock (the contract of every source); ``unix_minus_lsl`` converts it
to Unix seconds, which is what ``start`` and ``end`` hold, as in the emg2pose dataset.
``faults`` says what went wrong and when (:data:`RECORDED_FAULTS`): the source's corrupt and
duplicate frames, resyncs, device restarts, stalls and reconnects, and chunks this side
rejected (non-finite samples: not stored, marked as a dropped span), so a file tells
corruption from silence.

Crash safety: the writer buffers appended samples in memory and touches the file only to
write and flush them, at least every ``flush_interval`` seconds (default 0.5 s), so a
``kill -9`` loses at most that much. The file is plain HDF5 with a superblock older than
version 3 (``libver=("earliest", "v108")``), written without SWMR and without file locks: a
killed recording then opens in plain ``h5py.File(path, "r")``, HDFView, MATLAB or emg2pose's
loader, where SWMR (which needs superblock 3) would leave its "open for write" flag set
until ``h5clear``. Other processes can read the file while it is being written; what they
see is the last flush. Without SWMR nothing orders HDF5's writes within a flush, so
``flushed_samples`` is set in a flush of its own after the rows' flush, and a reader of an
incomplete file reads no further: rows a flush left half written (caught by a concurrent
reader or a kill) are never read. Files of format 1 (written in SWMR mode) still read,
killed or not.

Reading checks the file size against the end-of-file address its superblock records before
HDF5 touches the file: a truncated file (an interrupted copy) is refused with a clear error,
instead of replaying zeros where its data was or, opened in SWMR-read mode, retrying its
metadata forever.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from .._checks import check_positive_float, shown
from ..sources._base import FAULT_KINDS, DroppedSpan, FaultEvent, Source, StreamInfo
from ._stream import LabelledStream

__all__ = ["RecordingError", "Recording", "RecordingWriter", "read_recording",
           "RecordStatus", "record_source", "RECORDED_FAULTS", "fit_marker_text"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  #: 1: written in SWMR mode, no faults; 2: plain HDF5, faults
N_JOINTS = 20  #: emg2pose joint angles per sample
#: Kinds of the rows of ``emgstream/faults``: a source's (``FAULT_KINDS``), and samples this
#: side rejected (non-finite), which are not stored and are marked as a dropped span.
RECORDED_FAULTS = FAULT_KINDS + ("rejected_samples",)
_MAX_CHANNELS = 4096  # refuse absurd channel counts from untrusted files
# An LSL marker stream's texts, JSON of a 13-class gesture event (``run --lsl-markers``) among
# them, fit whole; SWMR needs fixed-size rows, so every row holds this many bytes.
_MARKER_BYTES = 1024
_MARKER_DTYPE = np.dtype([("time", "<f8"), ("text", h5py.string_dtype("utf-8", _MARKER_BYTES))])
_DROPPED_DTYPE = np.dtype([("time", "<f8"), ("count", "<i8")])
_FAULT_DTYPE = np.dtype([("time", "<f8"), ("kind", h5py.string_dtype("ascii", 16)),
                         ("count", "<i8")])
#: the event tables of the ``emgstream`` group, written as rows are added
_EVENT_TABLES = {"markers": _MARKER_DTYPE, "dropped": _DROPPED_DTYPE, "faults": _FAULT_DTYPE}
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CHUNK_BYTES = 256 * 1024  # stays inside HDF5's default 1 MiB chunk cache


class RecordingError(ValueError):
    """A recording cannot be written or read: bad chunk, missing or malformed field."""


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
@dataclass
class Recording:
    """One recording in memory.

    Attributes
    ----------
    emg : ndarray, float32, shape (time, channels)
        Raw (unfiltered) samples.
    time : ndarray, float64, shape (time,)
        Timestamps (LSL clock for our recordings; whatever the file holds otherwise).
    sample_rate : float
    joint_angles : ndarray, float64, shape (time, 20), or None
        Pose in radians, emg2pose joint order; None when the file has no pose.
    labels : ndarray, int16, shape (time,), or None
        Class index per sample into ``class_names``, -1 = none; None when unlabelled
        (always None for files of the emg2pose dataset).
    class_names : list of str
    markers : list of (time, text)
    dropped : list of DroppedSpan
        Samples the source reported lost while recording, and chunks rejected as non-finite.
    faults : list of FaultEvent
        What went wrong while recording and when (kinds: :data:`RECORDED_FAULTS`).
    meta : dict
        The ``emg2pose`` group attributes (``user``, ``session``, ``start``...), plus
        ``device`` (dict or None), ``filters`` (dict or None), ``format_version`` (int or
        None), ``complete`` (False if the writer never closed it, e.g. killed),
        ``total_samples`` (length in the file, whatever slice was read) and ``start_index``.
    """

    emg: np.ndarray
    time: np.ndarray
    sample_rate: float
    joint_angles: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    markers: list[tuple[float, str]] = field(default_factory=list)
    dropped: list[DroppedSpan] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return self.emg.shape[1]

    @property
    def n_samples(self) -> int:
        return self.emg.shape[0]

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    def to_stream(self) -> LabelledStream:
        """The recording as a :class:`LabelledStream` (unlabelled samples get -1)."""
        labels = self.labels if self.labels is not None else np.full(self.n_samples, -1,
                                                                     np.int16)
        return LabelledStream(emg=self.emg, sample_rate=self.sample_rate, labels=labels,
                              class_names=list(self.class_names), pose=self.joint_angles,
                              user=str(self.meta.get("user", "")),
                              session=str(self.meta.get("session", "")), meta=dict(self.meta))

    def __repr__(self) -> str:
        extras = []
        if self.joint_angles is not None:
            extras.append("pose")
        if self.labels is not None:
            extras.append(f"labels ({len(self.class_names)} classes)")
        if self.markers:
            extras.append(f"{len(self.markers)} markers")
        if self.dropped:
            extras.append(f"{sum(d.count for d in self.dropped)} dropped")
        tail = f", {', '.join(extras)}" if extras else ""
        return (f"<Recording user={self.meta.get('user', '')!r} "
                f"session={self.meta.get('session', '')!r}: {self.n_channels} ch @ "
                f"{self.sample_rate:g} Hz, {self.n_samples} samples ({self.duration:.2f} s)"
                f"{tail}>")


def read_recording(path: str | os.PathLike, *, start: int = 0,
                   stop: int | None = None) -> Recording:
    """Read an emg2pose-layout HDF5 file (ours or the emg2pose dataset's).

    Parameters
    ----------
    path : path-like
    start, stop : int
        Sample range to read (``stop=None``: to the end), for files too big for memory.
        Labels are sliced alike; markers and dropped spans are always whole.

    Every field is checked (presence, dtype, shape, length) before use, since files are
    untrusted input; a truncated file is refused before HDF5 reads it; a file whose writer
    was killed opens and yields what was flushed.

    Raises
    ------
    RecordingError
        The file is not HDF5, is truncated, or lacks or malforms a required field.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"recording {str(path)!r} does not exist")
    swmr = _check_superblock(path)
    try:
        # no locks: the writer takes none either (see the module docstring)
        f = h5py.File(path, "r", swmr=swmr, locking=False)
    except OSError as err:
        raise RecordingError(f"cannot open {str(path)!r} as HDF5: {err}") from None
    with f:
        _refuse_hostile_layout(f, str(path), path.stat().st_size)
        return _read_open_file(f, str(path), start, stop)


def _check_superblock(path: Path) -> bool:
    """Refuse a truncated file; return whether it must be opened in SWMR-read mode.

    The superblock (HDF5 file format specification, "Superblock"; HDF5 looks for it at
    offset 0, 512, 1024, 2048...) records the end-of-file address: the file must be at least
    that long. Version 3 superblocks carry consistency flags: a file of format 1 being
    recorded, or whose writer was killed, has "open for SWMR write" set (bit 2) and opens in
    SWMR-read mode only; "open for write" alone (bit 0: another program's writer) opens not
    at all until ``h5clear -s`` clears it.
    """
    where = str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(48)
            if head[:8] == _SIGNATURE:
                break
            offset = 512 if offset == 0 else offset * 2
            if offset >= size:
                raise RecordingError(f"cannot open {where!r} as HDF5: no HDF5 signature "
                                     f"(is it a recording?)")
    version = head[8]
    if version in (0, 1):
        width, flags, at = head[13], int.from_bytes(head[20:24], "little"), 24 + 4 * version
    elif version in (2, 3):
        width, flags, at = head[9], head[11], 12
    else:
        raise RecordingError(f"cannot open {where!r} as HDF5: superblock version {version} is "
                             f"unknown")
    if width not in (2, 4, 8) or len(head) < at + 3 * width:
        raise RecordingError(f"cannot open {where!r} as HDF5: its superblock is cut short or "
                             f"damaged")
    base = int.from_bytes(head[at:at + width], "little")
    end = base + int.from_bytes(head[at + 2 * width:at + 3 * width], "little")
    if size < end:
        raise RecordingError(f"{where!r} is truncated: {size} bytes, but the file says it "
                             f"holds {end} (an interrupted copy or download?)")
    if version == 3 and flags & 0b1 and not flags & 0b100:
        raise RecordingError(f"{where!r} is marked open for writing by another program (or "
                             f"one that was killed); if none writes it, 'h5clear -s {where}' "
                             f"clears the mark")
    return version == 3 and bool(flags & 0b100)


def _read_open_file(f: h5py.File, where: str, start: int, stop: int | None) -> Recording:
    group = f.get("emg2pose")
    if not isinstance(group, h5py.Group):
        raise RecordingError(f"{where}: no group 'emg2pose'; not an emg2pose-layout file "
                             f"(top level holds {sorted(f.keys())})")
    ts = group.get("timeseries")
    if not isinstance(ts, h5py.Dataset) or ts.dtype.names is None or ts.ndim != 1:
        raise RecordingError(f"{where}: 'emg2pose/timeseries' must be a 1-D compound "
                             f"dataset, got {ts!r}")
    names = ts.dtype.names
    for required in ("time", "emg"):
        if required not in names:
            raise RecordingError(f"{where}: 'emg2pose/timeseries' has no field {required!r} "
                                 f"(fields: {names})")
    time_type = ts.dtype.fields["time"][0]
    if time_type.kind != "f" or time_type.shape != ():
        raise RecordingError(f"{where}: field 'time' must be a float scalar, got {time_type}")
    emg_type = ts.dtype.fields["emg"][0]
    if emg_type.subdtype is None or emg_type.base.kind not in "fiu" or \
            len(emg_type.shape) != 1 or not 0 < emg_type.shape[0] <= _MAX_CHANNELS:
        raise RecordingError(f"{where}: field 'emg' must be a numeric (channels,) array with "
                             f"1..{_MAX_CHANNELS} channels, got {emg_type}")
    n_channels = emg_type.shape[0]
    with_pose = "joint_angles" in names
    if with_pose:
        pose_type = ts.dtype.fields["joint_angles"][0]
        if pose_type.shape != (N_JOINTS,) or pose_type.base.kind != "f":
            raise RecordingError(f"{where}: field 'joint_angles' must be float ({N_JOINTS},), "
                                 f"got {pose_type}")

    attrs = {key: _plain(value) for key, value in group.attrs.items()}
    try:
        sample_rate = check_positive_float(float(attrs["sample_rate"]), "sample_rate")
    except (KeyError, TypeError, ValueError):
        raise RecordingError(f"{where}: attribute emg2pose/sample_rate must be a positive "
                             f"number, got {attrs.get('sample_rate')!r}") from None
    declared = attrs.get("num_channels")
    if declared is not None and declared != n_channels:
        raise RecordingError(f"{where}: attribute num_channels={declared!r} but field 'emg' "
                             f"holds {n_channels} channels")

    total = ts.shape[0]
    ours = f.get("emgstream")
    if isinstance(ours, h5py.Group) and not _plain(ours.attrs.get("complete", True)):
        # being written, or its writer was killed: rows past the last finished flush may
        # be half written (see RecordingWriter.flush)
        flushed = _plain(ours.attrs.get("flushed_samples"))
        if isinstance(flushed, int) and 0 <= flushed < total:
            total = flushed
    stop = total if stop is None else stop
    if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))
            and 0 <= start <= stop <= total):
        raise RecordingError(f"{where}: sample range [{start}, {stop}) is outside the "
                             f"recording's {total} samples")
    fields = ["time", "emg"] + (["joint_angles"] if with_pose else [])
    data = ts.fields(fields)[start:stop]
    timestamps = np.ascontiguousarray(data["time"], dtype=np.float64)
    emg = np.ascontiguousarray(data["emg"], dtype=np.float32)
    pose = np.ascontiguousarray(data["joint_angles"], dtype=np.float64) if with_pose else None
    if not np.isfinite(timestamps).all():
        raise RecordingError(f"{where}: non-finite 'time' at sample "
                             f"{start + int(np.argmin(np.isfinite(timestamps)))}")
    if not np.isfinite(emg).all():
        row = int(np.argwhere(~np.isfinite(emg))[0, 0])
        raise RecordingError(f"{where}: non-finite 'emg' at sample {start + row}")

    meta = dict(attrs)
    meta.update(device=None, filters=None, format_version=None, complete=True,
                total_samples=total, start_index=start)
    rec = Recording(emg=emg, time=timestamps, sample_rate=sample_rate, joint_angles=pose,
                    meta=meta)
    if isinstance(ours, h5py.Group):
        _read_extras(ours, rec, where, start, stop, total)
    return rec


def _read_extras(group: h5py.Group, rec: Recording, where: str, start: int, stop: int,
                 total: int) -> None:
    meta = rec.meta
    for key in ("device", "filters"):
        raw = _plain(group.attrs.get(key, "null"))
        try:
            value = json.loads(raw) if isinstance(raw, str) else None
        except json.JSONDecodeError:
            raise RecordingError(f"{where}: attribute emgstream/{key} is not JSON: "
                                 f"{raw[:80]!r}") from None
        if value is not None and not isinstance(value, dict):
            raise RecordingError(f"{where}: attribute emgstream/{key} must be a JSON object")
        meta[key] = value
    version = _plain(group.attrs.get("format_version"))
    meta["format_version"] = int(version) if isinstance(version, (int, float)) else None
    meta["complete"] = bool(_plain(group.attrs.get("complete", True)))
    meta["unix_minus_lsl"] = _plain(group.attrs.get("unix_minus_lsl"))

    labels = group.get("labels")
    if labels is not None:
        if not isinstance(labels, h5py.Dataset) or labels.ndim != 1 or \
                labels.dtype.kind not in "iu":
            raise RecordingError(f"{where}: emgstream/labels must be a 1-D integer dataset")
        raw_names = _plain(labels.attrs.get("class_names", "[]"))
        try:
            class_names = json.loads(raw_names)
        except (json.JSONDecodeError, TypeError):
            class_names = None
        if not isinstance(class_names, list) or not all(isinstance(c, str)
                                                        for c in class_names):
            raise RecordingError(f"{where}: emgstream/labels attribute class_names must be "
                                 f"a JSON list of strings, got {raw_names!r}")
        if labels.shape[0] != total:
            # Only a killed writer leaves these out of step (labels are written first).
            logger.warning("%s: %d labels for %d samples (writer interrupted?); "
                           "missing ones read as -1", where, labels.shape[0], total)
        lab = np.full(stop - start, -1, np.int16)
        have = max(0, min(stop, labels.shape[0]) - start)
        if have:
            values = labels[start:start + have]
            if values.size and (values.min() < -1 or values.max() >= len(class_names)):
                raise RecordingError(
                    f"{where}: labels must lie in [-1, {len(class_names) - 1}] for "
                    f"{len(class_names)} classes, got [{values.min()}, {values.max()}]")
            lab[:have] = values
        rec.labels = lab
        rec.class_names = class_names

    markers = _compound(group, "markers", {"time": "f", "text": "S"}, where)
    if markers is not None:
        rec.markers = [(float(t), bytes(s).decode("utf-8", errors="replace"))
                       for t, s in zip(markers["time"], markers["text"])]
    dropped = _compound(group, "dropped", {"time": "f", "count": "iu"}, where)
    if dropped is not None:
        rec.dropped = [DroppedSpan(float(t), int(c))
                       for t, c in zip(dropped["time"], dropped["count"])]
    faults = _compound(group, "faults", {"time": "f", "kind": "S", "count": "iu"}, where)
    if faults is not None:
        rec.faults = [FaultEvent(float(t), bytes(k).decode("ascii", errors="replace"), int(c))
                      for t, k, c in zip(faults["time"], faults["kind"], faults["count"])]


def _compound(group: h5py.Group, name: str, kinds: dict[str, str], where: str):
    ds = group.get(name)
    if ds is None:
        return None
    ok = isinstance(ds, h5py.Dataset) and ds.ndim == 1 and ds.dtype.names is not None and \
        all(k in ds.dtype.names and ds.dtype.fields[k][0].kind in kinds[k]
            and ds.dtype.fields[k][0].shape == () for k in kinds)
    if not ok:
        raise RecordingError(f"{where}: emgstream/{name} must be a 1-D compound dataset with "
                             f"fields {list(kinds)}")
    return ds[()]


def _plain(value):
    """HDF5 attribute -> plain Python (str, int, float, bool)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------
# Untrusted files: what is refused before the reader touches any data
# ------------------------------------------------------------------------------------------
#: The objects the reader opens (whether they must exist is the reader's business).
_READ_OBJECTS = ("emg2pose", "emg2pose/timeseries", "emgstream", "emgstream/labels",
                 "emgstream/markers", "emgstream/dropped")
#: Attributes the reader parses as JSON.
_JSON_ATTRIBUTES = {"emgstream": ("device", "filters"), "emgstream/labels": ("class_names",)}
#: A dataset may declare at most this many times the file's size (plus the slack): our files
#: are not compressed, and sEMG (noise-like floats) compresses by less than 2x, but a dataset
#: that was never written, or a run of zeros under gzip, would have the reader allocate
#: gigabytes for a file of kilobytes.
_MAX_EXPANSION = 16
_EXPANSION_SLACK = 1 << 20
#: HDF5 reads (and decompresses) a whole chunk to return one row of it. Ours are 256 KiB;
#: h5py's automatic chunks stay under 1 MiB.
_MAX_CHUNK_BYTES = 16 << 20
_MAX_ATTRIBUTES = 256
_MAX_ATTRIBUTE_BYTES = 1 << 20  # the device JSON of 4096 named channels fits


def _refuse_hostile_layout(f: h5py.File, where: str, file_bytes: int) -> None:
    """Refuse a file whose reading would touch other files or allocate far more than it holds.

    Every object the reader opens must be reached through hard links (an external link opens
    another file, a soft link can point at one), and every dataset must keep its data in this
    file (no virtual dataset, no external raw storage), declare no more than
    :data:`_MAX_EXPANSION` times the file's size, use chunks of at most
    :data:`_MAX_CHUNK_BYTES` and fixed-length string fields of at most the marker size.
    Attributes are bounded in number and size, and JSON attributes in nesting.
    """
    for name in _READ_OBJECTS:
        parent, _, leaf = name.rpartition("/")
        group = f.get(parent) if parent else f  # a parent is checked before its children
        if not isinstance(group, h5py.Group):
            continue
        link = group.get(leaf, getlink=True)
        if link is None:
            continue
        if isinstance(link, h5py.ExternalLink):
            raise RecordingError(f"{where}: '{name}' is an external link to "
                                 f"{shown(link.filename)}; a recording must hold its data "
                                 f"itself")
        if not isinstance(link, h5py.HardLink):
            raise RecordingError(f"{where}: '{name}' is a soft link to {shown(link.path)}; a "
                                 f"recording's objects are linked directly")
        obj = group[leaf]
        _refuse_hostile_attributes(obj, name, where)
        if isinstance(obj, h5py.Dataset):
            _refuse_hostile_storage(obj, name, where, file_bytes)


def _refuse_hostile_storage(ds: h5py.Dataset, name: str, where: str, file_bytes: int) -> None:
    if ds.is_virtual:
        files = sorted({source.file_name for source in ds.virtual_sources()})
        raise RecordingError(f"{where}: '{name}' is a virtual dataset mapping "
                             f"{shown(files)}; a recording must hold its data itself")
    if ds.external:
        files = sorted({entry[0] for entry in ds.external})
        raise RecordingError(f"{where}: '{name}' keeps its data in the external file(s) "
                             f"{shown(files)}; a recording must hold its data itself")
    row = ds.dtype.itemsize
    declared = math.prod(ds.shape or ()) * row
    if declared > _MAX_EXPANSION * file_bytes + _EXPANSION_SLACK:
        raise RecordingError(f"{where}: '{name}' declares {ds.shape} rows of {row} bytes "
                             f"({declared} bytes) in a file of {file_bytes} bytes")
    if ds.chunks is not None and math.prod(ds.chunks) * row > _MAX_CHUNK_BYTES:
        raise RecordingError(f"{where}: '{name}' has chunks of {ds.chunks} rows "
                             f"({math.prod(ds.chunks) * row} bytes), more than "
                             f"{_MAX_CHUNK_BYTES}")
    for field, (kind, _) in (ds.dtype.fields or {}).items():
        if kind.base.kind in "SU" and kind.base.itemsize > _MARKER_BYTES:
            raise RecordingError(f"{where}: field {shown(field)} of '{name}' holds strings of "
                                 f"{kind.base.itemsize} bytes, at most {_MARKER_BYTES}")


def _refuse_hostile_attributes(obj, name: str, where: str) -> None:
    attrs = obj.attrs
    if len(attrs) > _MAX_ATTRIBUTES:
        raise RecordingError(f"{where}: '{name}' has {len(attrs)} attributes, at most "
                             f"{_MAX_ATTRIBUTES}")
    for key in attrs:
        attr = attrs.get_id(key)
        size = attr.get_storage_size()
        if size <= _MAX_ATTRIBUTE_BYTES and h5py.check_vlen_dtype(attr.dtype):
            # variable-length data lives, uncompressed, in the file's heap: reading it costs
            # at most the file's size, and only then is its length known
            size = sum(len(v.encode()) if isinstance(v, str) else np.asarray(v).nbytes
                       for v in np.asarray(attrs[key], dtype=object).ravel())
        if size > _MAX_ATTRIBUTE_BYTES:
            raise RecordingError(f"{where}: attribute {name}/{shown(key)} is {size} bytes, "
                                 f"at most {_MAX_ATTRIBUTE_BYTES}")
    for key in _JSON_ATTRIBUTES.get(name, ()):
        raw = _plain(attrs.get(key))
        if not isinstance(raw, str):
            continue
        try:
            json.loads(raw)
        except RecursionError:
            raise RecordingError(f"{where}: attribute {name}/{key} nests its JSON deeper than "
                                 f"the parser follows") from None
        except ValueError:
            pass  # malformed JSON: the reader says so, naming the attribute


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
class RecordingWriter:
    """Append chunks to a new emg2pose-layout HDF5 file, crash-safely (see module doc).

    Parameters
    ----------
    path : path-like
        The file to create. An existing file is refused unless ``overwrite=True``.
    info : StreamInfo
        The stream; fixes channel count and rate, stored as ``emgstream/device``.
    user, session, stage, side : str
        emg2pose metadata (``stage`` is the gesture group, ``side`` the hand).
    with_pose : bool
        Add the ``joint_angles`` field; then every ``append`` must pass pose.
    class_names : list of str, optional
        Create ``emgstream/labels``; ``append`` may then pass labels (default -1).
    filters : dict, optional
        JSON-able description of the live filters (the samples stored are raw).
    overwrite : bool
    flush_interval : float
        Seconds of data buffered at most before it is written and flushed.

    Use as a context manager; ``close`` writes what is buffered and marks the file complete.
    Methods are called from one thread (the recorder's).
    """

    def __init__(self, path: str | os.PathLike, info: StreamInfo, *, user: str = "",
                 session: str = "", stage: str = "", side: str = "", with_pose: bool = False,
                 class_names: list[str] | None = None, filters: dict | None = None,
                 overwrite: bool = False, flush_interval: float = 0.5) -> None:
        if not isinstance(info, StreamInfo):
            raise TypeError(f"info must be a StreamInfo, got {type(info).__name__}")
        self._path = Path(path)
        self._info = info
        self._flush_interval = check_positive_float(flush_interval, "flush_interval")
        self._with_pose = bool(with_pose)
        self._class_names = None if class_names is None else [str(c) for c in class_names]
        if self._class_names is not None and len(self._class_names) > np.iinfo(np.int16).max:
            raise ValueError(f"at most {np.iinfo(np.int16).max} classes fit int16 labels")
        if self._path.exists() and not overwrite:
            raise FileExistsError(f"{str(self._path)!r} exists; pass overwrite=True "
                                  f"(--overwrite) to replace it")
        if not self._path.parent.is_dir():
            raise RecordingError(f"cannot create {str(self._path)!r}: the folder "
                                 f"{str(self._path.parent)!r} does not exist")
        if filters is not None and not isinstance(filters, dict):
            raise TypeError(f"filters must be a dict, got {type(filters).__name__}")

        fields = [("time", "<f8")]
        if self._with_pose:
            fields.append(("joint_angles", "<f8", (N_JOINTS,)))
        fields.append(("emg", "<f4", (info.n_channels,)))
        self._dtype = np.dtype(fields)
        self._pending: list[tuple] = []
        self._pending_samples = 0
        self._pending_events: dict[str, list[tuple]] = {name: [] for name in _EVENT_TABLES}
        self._n_events = dict.fromkeys(_EVENT_TABLES, 0)
        self._n_written = 0
        self._last_flush = time.monotonic()
        self._unix_minus_lsl = _unix_minus_lsl()
        self._first_time: float | None = None
        self._last_time: float | None = None
        self._file = self._create(user, session, stage, side, filters)

    def _create(self, user, session, stage, side, filters) -> h5py.File:
        try:
            # superblock 2 at most and no locks: see the module docstring
            f = h5py.File(self._path, "w", libver=("earliest", "v108"), locking=False)
        except OSError as err:
            raise RecordingError(f"cannot create {str(self._path)!r}: {err}") from None
        try:
            g = f.create_group("emg2pose")
            now = time.time()
            for key, value in (("filename", self._path.stem), ("session", str(session)),
                               ("stage", str(stage)), ("user", str(user)),
                               ("side", str(side))):
                g.attrs[key] = value
            g.attrs["sample_rate"] = float(self._info.sample_rate)
            g.attrs["num_channels"] = int(self._info.n_channels)
            g.attrs["start"] = now
            g.attrs["end"] = now
            rows = max(64, _CHUNK_BYTES // self._dtype.itemsize)
            g.create_dataset("timeseries", shape=(0,), maxshape=(None,), dtype=self._dtype,
                             chunks=(rows,))
            ours = f.create_group("emgstream")
            ours.attrs["format_version"] = FORMAT_VERSION
            ours.attrs["device"] = json.dumps(dataclasses.asdict(self._info))
            ours.attrs["filters"] = json.dumps(filters)
            ours.attrs["unix_minus_lsl"] = self._unix_minus_lsl
            ours.attrs["complete"] = False
            ours.attrs["flushed_samples"] = 0
            if self._class_names is not None:
                labels = ours.create_dataset("labels", shape=(0,), maxshape=(None,),
                                             dtype="<i2", chunks=(8192,))
                labels.attrs["class_names"] = json.dumps(self._class_names)
            for name, dtype in _EVENT_TABLES.items():
                ours.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                    chunks=(64,))
            f.flush()
        except BaseException:
            f.close()
            raise
        return f

    # -- public API ------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def n_samples(self) -> int:
        """Samples accepted so far (written or buffered)."""
        return self._n_written + self._pending_samples

    @property
    def closed(self) -> bool:
        return self._file is None

    def append(self, samples: np.ndarray, timestamps: np.ndarray,
               joint_angles: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> None:
        """Add a chunk: samples (n, C) float32, timestamps (n,) float64 on the LSL clock,
        optional joint_angles (n, 20) radians and labels (n,) class indices (-1 = none).

        A chunk that breaks the contract (shape, NaN, unknown label) is rejected whole with
        a :class:`RecordingError`; everything accepted before stays.
        """
        self._check_open()
        samples = np.asarray(samples)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        n = self._check_chunk(samples, timestamps, joint_angles, labels)
        if n == 0:
            return
        pose = None if joint_angles is None else np.array(joint_angles, np.float64)
        lab = None
        if self._class_names is not None:
            lab = np.full(n, -1, np.int16) if labels is None else \
                np.asarray(labels).astype(np.int16)
        self._pending.append((np.array(samples, np.float32), timestamps.copy(), pose, lab))
        self._pending_samples += n
        if self._first_time is None:
            self._first_time = float(timestamps[0])
        self._last_time = float(timestamps[-1])
        self.maybe_flush()

    def add_marker(self, t: float, text: str) -> None:
        """Mark an event at LSL time ``t`` (UTF-8 text, at most 1023 bytes; see
        :func:`fit_marker_text`)."""
        self._check_open()
        encoded = str(text).encode("utf-8")
        if len(encoded) >= _MARKER_BYTES:
            raise RecordingError(f"marker text is {len(encoded)} bytes in UTF-8; at most "
                                 f"{_MARKER_BYTES - 1} fit")
        if not math.isfinite(t):
            raise RecordingError(f"marker time must be finite, got {t!r}")
        self._pending_events["markers"].append((float(t), str(text)))
        self.maybe_flush()

    def add_dropped(self, t: float, count: int) -> None:
        """Record that ``count`` samples starting at LSL time ``t`` were lost."""
        self._check_open()
        if not math.isfinite(t) or int(count) <= 0:
            raise RecordingError(f"dropped span needs a finite time and a positive count, "
                                 f"got time={t!r}, count={count!r}")
        self._pending_events["dropped"].append((float(t), int(count)))
        self.maybe_flush()

    def add_fault(self, t: float, kind: str, count: int = 1) -> None:
        """Record ``count`` faults of ``kind`` (one of :data:`RECORDED_FAULTS`) at LSL time
        ``t``."""
        self._check_open()
        if kind not in RECORDED_FAULTS or not math.isfinite(t) or int(count) <= 0:
            raise RecordingError(f"a fault needs a kind in {RECORDED_FAULTS}, a finite time "
                                 f"and a positive count, got {kind!r}, time={t!r}, "
                                 f"count={count!r}")
        self._pending_events["faults"].append((float(t), kind, int(count)))
        self.maybe_flush()

    def reject(self, samples: np.ndarray, timestamps: np.ndarray) -> int:
        """Mark a chunk that cannot be stored (non-finite samples or timestamps) instead of
        appending it: a dropped span where it was and a ``rejected_samples`` fault. Returns
        the number of samples rejected. The one policy of ``record`` and ``run --record``:
        recording goes on."""
        n = int(np.shape(samples)[0])
        if n == 0:
            return 0
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        finite = times[np.isfinite(times)]
        # where the chunk was: its first finite time, else just after the last sample kept
        t = float(finite[0]) if finite.size else \
            (self._last_time if self._last_time is not None else 0.0) \
            + 1.0 / self._info.sample_rate
        self.add_dropped(t, n)
        self.add_fault(t, "rejected_samples", n)
        return n

    def flush(self) -> None:
        """Write everything buffered and flush it to disk (readers see it after this)."""
        self._check_open()
        f = self._file
        if self._pending:
            n = self._pending_samples
            rows = np.empty(n, self._dtype)
            i = 0
            for samples, timestamps, pose, _ in self._pending:
                j = i + samples.shape[0]
                rows["time"][i:j] = timestamps
                rows["emg"][i:j] = samples
                if pose is not None:
                    rows["joint_angles"][i:j] = pose
                i = j
            if self._class_names is not None:
                # Labels first: a writer killed in between leaves labels ahead of samples,
                # which the reader trims, never samples without their labels' slots.
                labels = f["emgstream/labels"]
                labels.resize((self._n_written + n,))
                labels[self._n_written:] = np.concatenate([p[3] for p in self._pending])
            ts = f["emg2pose/timeseries"]
            ts.resize((self._n_written + n,))
            ts[self._n_written:] = rows
            self._n_written += n
            self._pending.clear()
            self._pending_samples = 0
            g = f["emg2pose"]
            if self._n_written == n:
                g.attrs["start"] = self._first_time + self._unix_minus_lsl
            g.attrs["end"] = self._last_time + self._unix_minus_lsl
        for name, dtype in _EVENT_TABLES.items():
            pending = self._pending_events[name]
            if pending:
                ds = f["emgstream"][name]
                written = self._n_events[name]
                rows = np.array([tuple(v.encode() if isinstance(v, str) else v for v in row)
                                 for row in pending], dtype)
                ds.resize((written + len(rows),))
                ds[written:] = rows
                self._n_events[name] = written + len(rows)
                pending.clear()
        f.flush()
        if f["emgstream"].attrs["flushed_samples"] != self._n_written:
            # Only after the rows are on disk, in a flush of its own: a reader (or a kill)
            # that catches the flush above half done reads no row it did not finish.
            f["emgstream"].attrs["flushed_samples"] = self._n_written
            f.flush()
        self._last_flush = time.monotonic()

    def maybe_flush(self) -> None:
        """Flush if ``flush_interval`` has passed since the last flush. ``append`` calls it;
        a loop that may wait on a stalled source calls it too, so that buffered data never
        waits in memory for the next chunk."""
        if time.monotonic() - self._last_flush >= self._flush_interval or \
                self._pending_samples >= 60 * self._info.sample_rate:
            self.flush()

    def close(self) -> None:
        """Write what is buffered, mark the file complete and close it. Idempotent."""
        if self._file is None:
            return
        try:
            self.flush()
            self._file["emgstream"].attrs["complete"] = True
            self._file.flush()
        finally:
            self._file.close()
            self._file = None
        logger.info("closed recording %s: %d samples", self._path, self._n_written)

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        i = self._info
        return (f"<RecordingWriter {str(self._path)!r} {i.n_channels} ch @ "
                f"{i.sample_rate:g} Hz, {self.n_samples} samples, {state}>")

    # -- private ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._file is None:
            raise RecordingError(f"recording {str(self._path)!r} is closed")

    def _check_chunk(self, samples, timestamps, joint_angles, labels) -> int:
        c = self._info.n_channels
        if samples.ndim != 2 or samples.shape[1] != c:
            raise RecordingError(f"chunk rejected: expected samples of shape (n, {c}), got "
                                 f"{samples.shape}")
        n = samples.shape[0]
        if timestamps.shape != (n,):
            raise RecordingError(f"chunk rejected: expected {n} timestamps for {n} samples, "
                                 f"got shape {timestamps.shape}")
        if samples.dtype.kind not in "fiu":
            raise RecordingError(f"chunk rejected: samples must be numeric, got "
                                 f"{samples.dtype}")
        if not np.isfinite(samples).all():
            row, ch = np.argwhere(~np.isfinite(samples))[0]
            raise RecordingError(f"chunk rejected: non-finite sample at row {row}, channel "
                                 f"{ch}; {self.n_samples} samples recorded before are kept")
        if not np.isfinite(timestamps).all():
            raise RecordingError("chunk rejected: non-finite timestamp; "
                                 f"{self.n_samples} samples recorded before are kept")
        if self._with_pose:
            if joint_angles is None:
                raise RecordingError("chunk rejected: the recording has pose "
                                     "(with_pose=True) but no joint_angles were given")
            pose = np.asarray(joint_angles)
            if pose.shape != (n, N_JOINTS) or not np.isfinite(pose).all():
                raise RecordingError(f"chunk rejected: joint_angles must be finite with shape "
                                     f"({n}, {N_JOINTS}), got {pose.shape}")
        elif joint_angles is not None:
            raise RecordingError("chunk rejected: joint_angles given but the recording was "
                                 "created with with_pose=False")
        if labels is not None:
            if self._class_names is None:
                raise RecordingError("chunk rejected: labels given but the recording was "
                                     "created without class_names")
            lab = np.asarray(labels)
            if lab.shape != (n,) or lab.dtype.kind not in "iu":
                raise RecordingError(f"chunk rejected: labels must be integers of shape "
                                     f"({n},), got {lab.dtype} {lab.shape}")
            if n and (lab.min() < -1 or lab.max() >= len(self._class_names)):
                raise RecordingError(
                    f"chunk rejected: labels must lie in [-1, {len(self._class_names) - 1}], "
                    f"got [{lab.min()}, {lab.max()}]")
        return n


def fit_marker_text(text: str) -> tuple[str, bool]:
    """``text`` cut at a character boundary to fit a marker row, and whether it was cut
    (markers from other tools' streams may be longer than a row holds)."""
    encoded = text.encode("utf-8")
    if len(encoded) < _MARKER_BYTES:
        return text, False
    return encoded[:_MARKER_BYTES - 1].decode("utf-8", errors="ignore"), True


def _unix_minus_lsl() -> float:
    """Offset from the LSL clock to Unix time, for the emg2pose ``start``/``end``."""
    import pylsl  # lazily: loads liblsl

    return time.time() - pylsl.local_clock()


# ------------------------------------------------------------------------------------------
# The recording loop
# ------------------------------------------------------------------------------------------
@dataclass
class RecordStatus:
    """Progress of :func:`record_source`, passed to ``on_status`` and returned at the end.

    Attributes
    ----------
    elapsed : float
        Wall seconds since recording began.
    samples : int
        Samples written.
    rate : float
        Effective sampling rate over the last status interval (Hz).
    dropped : int
        Samples the source reported lost, and samples rejected (see ``faults``).
    rms : ndarray, float64, shape (channels,)
        Per-channel RMS of the raw samples over the last status interval.
    backlog : int
        Samples waiting in the source's transport (``source.stats.backlog``).
    faults : dict of str -> int
        Faults written to the recording so far, by kind (:data:`RECORDED_FAULTS`; kinds
        that did not occur are absent).
    stalled : float
        Seconds the source has been without data, while it is (``source.stats.stalled``).
    """

    elapsed: float = 0.0
    samples: int = 0
    rate: float = 0.0
    dropped: int = 0
    rms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    backlog: int = 0
    faults: dict = field(default_factory=dict)
    stalled: float = 0.0


def record_source(source: Source, writer: RecordingWriter, *, duration: float | None = None,
                  stop: threading.Event | None = None,
                  on_status: Callable[[RecordStatus], None] | None = None,
                  status_interval: float = 0.5, read_timeout: float = 0.1,
                  markers: Sequence = ()) -> RecordStatus:
    """Copy an open source into a writer until ``duration``, ``stop`` or the source ends.

    Raw chunks go to ``writer.append``; the source's dropped spans and fault events to
    ``writer.add_dropped`` and ``writer.add_fault``; what each of ``markers`` (open marker
    inlets, :class:`emgstream.sources.MarkerInlet`) ``pull()``s, ``(time, text)`` on the
    source's clock, to ``writer.add_marker``. A chunk with non-finite values is not
    stored: ``writer.reject`` marks it (a dropped span and a ``rejected_samples`` fault) and
    recording goes on, as in the live pipeline. With ``duration`` the recording holds exactly
    ``round(duration * rate)`` samples (the last chunk is cut); if the source stalls it still
    stops ``5 s`` of wall time after the duration has passed. A replay that has reached its
    end (``source.finished``) stops it too. The caller owns both objects (use them as context
    managers), so an exception here (a source that gave up) leaves every sample appended so
    far in the file, with the drops and faults reported until then.
    """
    info = source.info
    target = None
    if duration is not None:
        check_positive_float(duration, "duration")
        target = int(round(duration * info.sample_rate))
    t0 = time.monotonic()
    status = RecordStatus(rms=np.zeros(info.n_channels))
    square_sum = np.zeros(info.n_channels)
    window_samples = rejected_chunks = 0
    last_status = t0
    try:
        while True:
            if stop is not None and stop.is_set():
                break
            if getattr(source, "finished", False):
                break
            now = time.monotonic()
            if duration is not None and now - t0 > duration + 5.0:
                logger.warning("source delivered %d of %d samples in %.1f s; stopping",
                               status.samples, target, now - t0)
                break
            samples, timestamps = source.read(read_timeout)
            if target is not None and status.samples + samples.shape[0] > target:
                keep = target - status.samples
                samples, timestamps = samples[:keep], timestamps[:keep]
            if samples.shape[0] and np.isfinite(samples).all() \
                    and np.isfinite(timestamps).all():
                writer.append(samples, timestamps)
                status.samples += samples.shape[0]
                window_samples += samples.shape[0]
                square_sum += np.einsum("ij,ij->j", samples, samples, dtype=np.float64)
            elif samples.shape[0]:
                rejected_chunks += 1
                n = writer.reject(samples, timestamps)
                status.dropped += n
                status.faults["rejected_samples"] = status.faults.get("rejected_samples", 0) + n
                # the first few, then every 100th: a flood must not flood the log
                if rejected_chunks <= 3 or rejected_chunks % 100 == 0:
                    logger.warning("a chunk of %d samples with non-finite values was not "
                                   "stored (%d such chunks); the recording marks the gap and "
                                   "goes on", n, rejected_chunks)
            _drain(source, writer, status)
            _copy_markers(markers, writer)
            writer.maybe_flush()
            now = time.monotonic()
            done = target is not None and status.samples >= target
            if now - last_status >= status_interval or done:
                stats = source.stats
                status.elapsed = now - t0
                status.rate = window_samples / max(now - last_status, 1e-9)
                status.rms = np.sqrt(square_sum / max(window_samples, 1))
                status.backlog, status.stalled = stats.backlog, stats.stalled
                square_sum[:] = 0
                window_samples = 0
                last_status = now
                if on_status is not None:
                    on_status(dataclasses.replace(status, faults=dict(status.faults)))
            if done:
                break
    except BaseException:
        try:  # what the source reported before it gave up belongs in the file
            _drain(source, writer, status)
        except Exception:  # the writer itself failed: the first error is the one to report
            logger.exception("could not record the last drops and faults")
        raise
    _drain(source, writer, status)
    _copy_markers(markers, writer)  # those sent while the last chunk was read
    status.elapsed = time.monotonic() - t0
    return status


def _drain(source: Source, writer: RecordingWriter, status: RecordStatus) -> None:
    """Move the source's dropped spans and faults into the recording and the status."""
    for span in source.drain_drops():
        writer.add_dropped(span.time, span.count)
        status.dropped += span.count
    for fault in source.drain_faults():
        writer.add_fault(fault.time, fault.kind, fault.count)
        status.faults[fault.kind] = status.faults.get(fault.kind, 0) + fault.count


def _copy_markers(inlets: Sequence, writer: RecordingWriter) -> None:
    for inlet in inlets:
        for t, text in inlet.pull():
            text, cut = fit_marker_text(text)
            if cut:
                logger.warning("a marker of %r at %.3f was cut to %d bytes", inlet, t,
                               len(text.encode()))
            writer.add_marker(t, text)
