"""The source contract: URI parsing, StreamInfo checks, the base class's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from emgstream.sources import Source, SourceError, StreamInfo, parse_uri


@pytest.mark.parametrize("uri, expected", [
    ("lsl://name=EMG", ("lsl", "name=EMG", {})),
    ("lsl://type=EMG?timeout=2", ("lsl", "type=EMG", {"timeout": "2"})),
    ("serial:///dev/ttyUSB0?baud=921600", ("serial", "/dev/ttyUSB0", {"baud": "921600"})),
    ("replay://rec.h5?speed=1&loop=1", ("replay", "rec.h5", {"speed": "1", "loop": "1"})),
    ("replay:///abs/path/rec.h5", ("replay", "/abs/path/rec.h5", {})),
    ("sim://?channels=16&rate=2000", ("sim", "", {"channels": "16", "rate": "2000"})),
])
def test_parse_uri(uri, expected):
    assert parse_uri(uri) == expected


@pytest.mark.parametrize("uri, message", [
    ("EMG", "has no scheme"),
    ("tcp://host:1", "unknown source scheme 'tcp'"),
])
def test_parse_uri_errors(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_uri(uri)


def test_stream_info_defaults_and_checks():
    info = StreamInfo("band", 3, 2000.0)
    assert info.channel_names == ("EMG1", "EMG2", "EMG3")
    with pytest.raises(ValueError, match="n_channels must be a positive integer, got 0"):
        StreamInfo("band", 0, 2000.0)
    with pytest.raises(ValueError, match="sample_rate must be a positive finite number"):
        StreamInfo("band", 2, float("nan"))
    with pytest.raises(ValueError, match="n_channels=2 but 3 channel names"):
        StreamInfo("band", 2, 100.0, channel_names=("a", "b", "c"))


class _Counting(Source):
    def _open(self):
        self._info = StreamInfo("count", 2, 100.0)

    def _close(self):
        pass

    def _read(self, timeout):
        self._record_drop(1.5, 3)
        return np.zeros((5, 2), np.float32), np.arange(5, dtype=np.float64)


def test_base_bookkeeping():
    src = _Counting()
    with pytest.raises(SourceError, match="not open"):
        src.read()
    assert "closed" in repr(src)
    with src:
        src.read()
        src.read()
        stats = src.stats
        assert (stats.samples, stats.chunks, stats.dropped_samples) == (10, 2, 6)
        drops = src.drain_drops()
        assert [(d.time, d.count) for d in drops] == [(1.5, 3), (1.5, 3)]
        assert src.drain_drops() == []
        assert "2 ch @ 100 Hz, open" in repr(src)
    assert not src.is_open
