"""``emgstream run`` end to end: JSON lines on stdout, stats on stderr, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.modelfile import save_model_file

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(save_model_file(tmp_path_factory.mktemp("model") / "test.emgm",
                               train.make_test_model()))


def test_run_prints_events_and_stats(model_path, tmp_path):
    rec = tmp_path / "rec.h5"
    result = CliRunner().invoke(main, ["run", "sim://", "--model", model_path, "--duration",
                                       "1.5", "--every-hop", "--record", str(rec)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) >= 20
    index = [d["sample_index"] for d in lines]
    assert index == sorted(index) and len(set(index)) == len(index)
    assert all(d["latency_ms"] > 0 for d in lines)
    assert "latency p50" in result.stderr and "skipped 0" in result.stderr
    assert f"recording {rec}" in result.stderr and rec.is_file()


def test_run_without_json_prints_no_events(model_path):
    result = CliRunner().invoke(main, ["run", "sim://", "--model", model_path, "--duration",
                                       "0.8", "--every-hop", "--no-json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "hops" in result.stderr


def test_run_refuses_a_mismatched_stream(model_path):
    result = CliRunner().invoke(main, ["run", "sim://?channels=8", "--model", model_path,
                                       "--duration", "1"])
    assert result.exit_code == 1
    assert "8 channels at 2000 Hz" in result.stderr
    assert "model expects 16 channels at 2000 Hz" in result.stderr


def test_run_names_a_missing_model(tmp_path):
    result = CliRunner().invoke(main, ["run", "sim://", "--model", str(tmp_path / "no.emgm")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_save_adapted_needs_adapt(model_path, tmp_path):
    result = CliRunner().invoke(main, ["run", "sim://", "--model", model_path,
                                       "--save-adapted", str(tmp_path / "p.emgm")])
    assert result.exit_code == 2 and "--adapt" in result.stderr


def test_ctrl_c_stops_cleanly(model_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "emgstream", "run", "sim://", "--model", model_path,
         "--every-hop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()  # blocks until the first event
        assert json.loads(first)["sample_index"] >= 0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "latency p50" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_adapt_saves_the_users_model_and_the_next_run_starts_from_it(model_path, tmp_path,
                                                                        monkeypatch):
    from emgstream.modelfile import load_model_file
    from emgstream.pipeline import personal_model_path

    monkeypatch.setenv("EMGSTREAM_HOME", str(tmp_path))
    args = ["run", "sim://", "--model", model_path, "--user", "alice", "--no-json",
            "--duration"]
    result = CliRunner().invoke(main, args + ["3", "--adapt"])
    assert result.exit_code == 0, result.output
    saved = personal_model_path("alice", model_path)
    assert f"personalized model written to {saved}" in result.stderr
    assert load_model_file(saved).provenance["personalized_for"] == "alice"
    result = CliRunner().invoke(main, args + ["0.5"])
    assert result.exit_code == 0, result.output
    assert f"running {saved}" in result.stderr


def test_adapting_without_a_user_says_the_model_is_not_kept(model_path):
    result = CliRunner().invoke(main, ["run", "sim://", "--model", model_path, "--adapt",
                                       "--duration", "0.5", "--no-json"])
    assert result.exit_code == 0, result.output
    assert "the adapted model will not be kept: give --user NAME" in result.stderr


def test_run_defaults_are_the_pipeline_defaults():
    """The CLI cannot import the pipeline to read its defaults (--help stays light)."""
    from emgstream.cli._run import run
    from emgstream.pipeline import PipelineConfig

    defaults = {p.name: p.default for p in run.params}
    config = PipelineConfig()
    for name in ("threshold", "smoothing", "smoothing_hops", "debounce", "realtime_priority"):
        assert defaults[name] == getattr(config, name), name
