"""`emgstream calibrate` refuses too little EMG before adapting, saying how much it needs."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingWriter
from emgstream.modelfile import save_model_file
from emgstream.pipeline import personal_model_path
from emgstream.sources import StreamInfo

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train

#: the test model's 512 windows (the collapse guard's reference) of 96 samples every 25
NEEDED = "calibration needs at least 25.7 s of EMG (512 windows of 0.192 s every 0.05 s)"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    mf = train.make_test_model(n_channels=4, rate=500.0, window_s=0.2, hop_s=0.05, seed=2)
    return save_model_file(tmp_path_factory.mktemp("model") / "base.emgm", mf)


def calibrate(model_path, *args):
    return CliRunner().invoke(main, ["calibrate", "--model", str(model_path), "--user", "eve",
                                     *args])


@pytest.mark.parametrize("duration", ["0", "-2", "inf"])
def test_duration_that_is_not_positive_says_so(model_path, duration):
    result = calibrate(model_path, "sim://?channels=4&rate=500&realtime=0", "--duration",
                       duration)
    assert result.exit_code == 2
    assert f"must be a positive number of seconds, got {float(duration):g}" in result.stderr
    assert "no samples" not in result.output
    assert not personal_model_path("eve", model_path).exists()


def test_too_short_a_duration_is_refused_before_recording(model_path):
    result = calibrate(model_path, "sim://?channels=4&rate=500&realtime=0", "--duration", "1")
    assert result.exit_code == 2
    assert f"1 s is too little: {NEEDED}" in result.stderr
    assert "windows from" not in result.output  # nothing was recorded or adapted
    assert not personal_model_path("eve", model_path).exists()


def test_too_short_a_recording_is_refused_with_what_it_holds(model_path, tmp_path):
    path = tmp_path / "short.h5"
    with RecordingWriter(path, StreamInfo("t", 4, 500.0)) as w:
        w.append(np.ones((2500, 4), np.float32), np.arange(2500) / 500.0)
    result = calibrate(model_path, "--from", str(path))
    assert result.exit_code == 1
    assert f"only 5.00 s of EMG (97 windows); {NEEDED}" in result.stderr
    assert not personal_model_path("eve", model_path).exists()
