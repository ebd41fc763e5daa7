"""An LSL outlet that describes an EMG stream the way LSL tools expect.

The metadata follows the XDF/LSL meta-data conventions for EMG: ``desc/channels/channel`` with
``label``, ``unit`` and ``type`` per channel, ``desc/acquisition`` with ``manufacturer``,
``model`` and ``serial_number``, so LabRecorder, SigViSualizer and MNE-LSL show labelled,
scaled channels. Used by ``emgstream simulate --lsl``, ``emgstream bridge`` and ``emgstream
play``; :func:`make_marker_outlet` is the string stream beside one (``run --lsl-markers``,
``play``).
"""

from __future__ import annotations

import logging

import numpy as np

from emgstream import __version__
from emgstream.sources import StreamInfo

__all__ = ["make_marker_outlet", "make_outlet", "push_chunk"]

logger = logging.getLogger(__name__)


def make_outlet(info: StreamInfo, source_id: str = "", chunk_size: int = 0,
                max_buffered: int = 360, model: str = ""):
    """Create a ``pylsl.StreamOutlet`` (float32, type ``EMG``) carrying ``info`` as metadata.

    Parameters
    ----------
    info : StreamInfo
        Name, channels, rate, labels, units, manufacturer and device id of the stream.
    source_id : str
        LSL source id; default ``info.device_id``. A stable id lets inlets recover after the
        outlet restarts.
    chunk_size, max_buffered : int
        As ``pylsl.StreamOutlet`` (0: the pushed chunk sizes; seconds of buffered data).
    model : str
        Device model for ``desc/acquisition``.
    """
    import pylsl

    lsl_info = pylsl.StreamInfo(info.name, "EMG", info.n_channels, info.sample_rate,
                                pylsl.cf_float32, source_id or info.device_id)
    desc = lsl_info.desc()
    channels = desc.append_child("channels")
    for label in info.channel_names:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", info.units)
        channel.append_child_value("type", "EMG")
    acquisition = desc.append_child("acquisition")
    acquisition.append_child_value("manufacturer", info.manufacturer)
    acquisition.append_child_value("model", model)
    acquisition.append_child_value("serial_number", info.device_id)
    acquisition.append_child_value("transport", info.kind)
    desc.append_child_value("software", f"emgstream {__version__}")
    outlet = pylsl.StreamOutlet(lsl_info, chunk_size, max_buffered)
    logger.info("LSL outlet %r: %d ch @ %g Hz, source id %r", info.name, info.n_channels,
                info.sample_rate, source_id or info.device_id)
    return outlet


def make_marker_outlet(name: str, source_id: str = ""):
    """A ``pylsl.StreamOutlet`` for markers: one string channel at an irregular rate, type
    ``Markers`` (what LabRecorder and ``record --markers lsl://type=Markers`` pick up).

    ``source_id`` defaults to ``"emgstream-" + name``.
    """
    import pylsl

    if not name:
        raise ValueError("LSL marker stream name must not be empty")
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                            source_id or f"emgstream-{name}")
    info.desc().append_child_value("manufacturer", "emgstream")
    info.desc().append_child_value("software", f"emgstream {__version__}")
    return pylsl.StreamOutlet(info)


def push_chunk(outlet, samples: np.ndarray, timestamps: np.ndarray) -> None:
    """Push a chunk with a timestamp per sample (the source's, on the LSL clock)."""
    if samples.shape[0]:
        outlet.push_chunk(np.ascontiguousarray(samples, dtype=np.float32),
                          timestamps.tolist())
