"""`run` warns live when the stream loses samples (real LSL on loopback, real ONNX)."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pylsl
import pytest

from emgstream.pipeline import Pipeline
from emgstream.sources import open_source

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train

RATE = 2000


@pytest.fixture(scope="module")
def model():
    return train.make_test_model(n_channels=4, rate=float(RATE))


@pytest.mark.parametrize("stream, warned", [
    ("whole", False),  # every sample, in real time
    ("slow", True),  # half the nominal rate reaches the host
    ("lossy", True),  # in real time, but every other block of 0.2 s is missing
])
def test_a_stream_losing_samples_is_warned_about_live(model, unique_id, caplog, stream, warned):
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(unique_id, "EMG", 4, RATE, "float32",
                                                 unique_id))
    pipeline = Pipeline(open_source(f"lsl://source_id={unique_id}?timeout=5"), model)
    caplog.set_level(logging.WARNING, logger="emgstream.pipeline")
    block = 400  # 0.2 s
    with pipeline:
        deadline = time.monotonic() + 5
        while not outlet.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = pylsl.local_clock()
        pace = block / RATE * (2 if stream == "slow" else 1)  # seconds per block pushed
        k = 0
        while pylsl.local_clock() - t0 < 3.0:  # the check needs 2 s of stream
            index = k * block * (2 if stream == "lossy" else 1) + np.arange(block)
            outlet.push_chunk(np.ones((block, 4), np.float32), (t0 + index / RATE).tolist())
            k += 1
            time.sleep(max(0.0, t0 + k * pace - pylsl.local_clock()))  # no drift
        rate = pipeline.stats.effective_rate
        dropped = pipeline.stats.dropped_samples
    messages = [r.getMessage() for r in caplog.records if "stream degraded" in r.getMessage()]
    assert bool(messages) == warned, messages
    if stream == "slow":
        assert rate < 0.6 * RATE and dropped == 0 and "Hz effective of 2000 Hz" in messages[0]
    if stream == "lossy":
        lost = int(re.search(r"(\d+) % of the samples", messages[0]).group(1))
        assert rate > 0.8 * RATE and dropped >= 5 * block and 40 <= lost <= 60
