"""Recordings and datasets.

- :class:`RecordingWriter`, :func:`read_recording`, :class:`Recording`: the emg2pose-layout
  HDF5 that ``emgstream record`` writes and the emg2pose dataset uses.
- :func:`read_xdf`, :func:`write_xdf`: XDF files (LabRecorder's) as a :class:`Recording`.
- :class:`LabelledStream`: one continuous labelled recording in memory.
- :func:`load_3dc`: the 3DC dataset rebuilt into labelled continuous streams.
- :class:`WindowDataset`, :class:`WindowSpec`: windows for training and evaluation, filtered
  by the same causal chain as the live path.

Names resolve lazily so that ``import emgstream.io`` does not import h5py.
"""

from __future__ import annotations

import importlib

from ._stream import LabelledStream

# public name -> submodule that defines it
_LAZY = {
    "RecordingWriter": "recording",
    "Recording": "recording",
    "read_recording": "recording",
    "RecordingError": "recording",
    "RecordStatus": "recording",
    "record_source": "recording",
    "fit_marker_text": "recording",
    "read_xdf": "xdf",
    "write_xdf": "xdf",
    "load_3dc": "threedc",
    "THREEDC_CLASSES": "threedc",
    "WindowDataset": "datasets",
    "WindowSpec": "datasets",
    "ChannelRotation": "datasets",
    "Compose": "datasets",
    "rotate_channels": "datasets",
}

__all__ = ["LabelledStream", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
