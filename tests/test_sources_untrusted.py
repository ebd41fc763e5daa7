"""Stream descriptions are untrusted: an LSL outlet on the network, a serial device and a
recording's device metadata each declare channel counts, rates and names, and buffers are
sized from them. Each absurd description is refused in one line before any data flows."""

from __future__ import annotations

import h5py
import numpy as np
import pylsl
import pytest

from emgstream.sources import SourceError, StreamInfo, open_source
from firmware_bridge.virtual_device import VirtualDevice


def _refused(source, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        source.open()
    assert "\n" not in str(info.value), str(info.value)
    assert not source.is_open


@pytest.mark.parametrize("channels, rate, message", [
    (5000, 10.0, r"n_channels must be at most 4096, got 5000"),
    (1, 1e7, r"sample_rate must be at most 100000 Hz, got 1e\+07 Hz"),
])
def test_lsl_description_out_of_bounds_refused(unique_id, channels, rate, message):
    info = pylsl.StreamInfo(unique_id, "EMG", channels, rate, "float32", unique_id)
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=1)
    _refused(open_source(f"lsl://source_id={unique_id}?timeout=5"),
             rf"LSL stream '{unique_id}' describes a stream emgstream does not take: "
             + message)
    assert not outlet.have_consumers()  # refused before an inlet connected


def test_lsl_channel_label_of_absurd_length_refused(unique_id):
    info = pylsl.StreamInfo(unique_id, "EMG", 2, 100.0, "float32", unique_id)
    info.set_channel_labels(["ok", "x" * 10_000])
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=1)
    _refused(open_source(f"lsl://source_id={unique_id}?timeout=5"),
             r"describes a stream emgstream does not take: channel name must be a string of "
             r"at most 256 characters, got 'xxx.*\.\.\. \(10000 characters\)")
    assert not outlet.have_consumers()


def test_serial_device_with_absurd_rate_refused():
    with VirtualDevice(n_channels=4, sample_rate=10**9,
                       signal=lambda first, n: np.zeros((n, 4))) as dev:
        _refused(open_source(f"serial://{dev.path}"),
                 rf"serial device {dev.path} describes a stream emgstream does not take: "
                 r"sample_rate must be at most 100000 Hz, got 1e\+09 Hz")
        assert not dev.streaming  # START was never sent


def test_replayed_recording_with_absurd_device_metadata_refused(tmp_path):
    from emgstream.io import RecordingWriter

    path = tmp_path / "rec.h5"
    with RecordingWriter(path, StreamInfo("band", 2, 100.0)) as writer:
        writer.append(np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    with h5py.File(path, "r+") as f:
        f["emgstream"].attrs["device"] = '{"units": "%s"}' % ("u" * 10_000)
    _refused(open_source(f"replay://{path}"),
             r"recording '.*rec\.h5' describes a stream emgstream does not take: units must "
             r"be a string of at most 256 characters")
