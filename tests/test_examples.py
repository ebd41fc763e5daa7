"""The scripts in examples/ run as a user would run them, on data the test makes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args) -> str:
    out = subprocess.run([sys.executable, str(_EXAMPLES / script), *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def new_user_recording(tmp_path_factory):
    """6 labelled seconds of synthetic user 14, whom the shipped model never saw."""
    from emgstream.synth import SynthConfig, write_dataset

    folder = tmp_path_factory.mktemp("user14")
    (path,) = write_dataset(folder, 1, 1, 6.0, SynthConfig(), 0, first_user=14)
    return path


def test_read_and_filter():
    out = _run("read_and_filter.py", "sim://?channels=4&rate=500&realtime=0", "--seconds", "1")
    assert "4 channels at 500 Hz" in out and "filtered 500 samples" in out
    levels = [float(v) for v in re.findall(r"EMG\d=([\d.]+)", out)]
    assert len(levels) == 4 and all(v > 0 for v in levels)


def test_predict_recording(new_user_recording):
    out = _run("predict_recording.py", new_user_recording)
    hops = int(re.search(r"(\d+) hops:", out).group(1))
    assert hops > 0  # how many: the pipeline skips hops it cannot keep up with at speed=0
    agreement = float(re.search(r"agreement with the recording's labels: ([\d.]+)", out)[1])
    assert 0.0 <= agreement <= 1.0


def test_personalize(new_user_recording, tmp_path):
    pytest.importorskip("torch", reason="personalization needs the adapt extra (torch)")
    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import default_model_path

    out = _run("personalize.py", new_user_recording, "-o", tmp_path / "mine.emgm",
               "--epochs", "1")
    assert f"saved {tmp_path / 'mine.emgm'}" in out
    mine, shipped = load_model_file(tmp_path / "mine.emgm"), load_model_file(default_model_path())
    assert mine.class_names == shipped.class_names and mine.provenance["personalized"]
    assert mine.onnx != shipped.onnx  # the weights moved


def test_examples_refuse_a_missing_file_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(_EXAMPLES / "predict_recording.py"),
                          str(tmp_path / "none.h5")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("none.h5' does not exist")
