"""``emgstream calibrate`` on a tiny recording and ``emgstream eval`` on a tiny config."""

from __future__ import annotations

import json

import click

import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingWriter
from emgstream.modelfile import load_model_file, save_model_file
from emgstream.pipeline import personal_model_path
from emgstream.sources import StreamInfo
from emgstream.train import make_test_model


def _recording(path, n_channels, rate, seconds, labels=None, user="u0", session="s0",
               class_names=None, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    emg = (rng.standard_normal((n, n_channels)) * 30).astype(np.float32)
    emg[:, 0] *= 1 + np.arange(n) % 400 / 100  # some structure over time
    info = StreamInfo("test", n_channels, rate)
    with RecordingWriter(path, info, user=user, session=session,
                         class_names=class_names) as w:
        w.append(emg, np.arange(n) / rate, labels=labels)
    return path


@pytest.fixture
def model_path(tmp_path):
    mf = make_test_model(n_channels=4, rate=500.0, window_s=0.2, hop_s=0.05, seed=2)
    return save_model_file(tmp_path / "base.emgm", mf)


def test_calibrate_from_recording(tmp_path, model_path):
    rec = _recording(tmp_path / "rec.h5", 4, 500.0, 26.0)  # the 512 windows it needs
    out = tmp_path / "bob.emgm"
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model_path), "--user", "bob",
                                       "--from", str(rec), "-o", str(out), "--xi", "0.0",
                                       "--n-consecutive", "1", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    assert "pseudo-labels accepted: 100.0 %" in result.output
    assert "agreement with the source model" in result.output
    assert "class balance" in result.output
    mf = load_model_file(out)
    assert mf.provenance["personalized_for"] == "bob"
    adaptation = mf.provenance["adaptation"]
    assert adaptation["method"] == "emg-up+" and adaptation["steps"] > 0
    base = load_model_file(model_path)
    changed = [k for k in base.weights if not np.array_equal(base.weights[k], mf.weights[k])]
    # the default adapts the features and keeps the source's classifier (hypothesis transfer)
    assert "encoder.tokenizer.weight" in changed and "classifier.weight" not in changed


def test_calibrate_refuses_mismatched_recording(tmp_path, model_path):
    rec = _recording(tmp_path / "rec.h5", 6, 500.0, 2.0)
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model_path), "--user", "bob",
                                       "--from", str(rec)])
    assert result.exit_code != 0
    assert "6 channels" in result.output and "4 channels" in result.output
    assert not personal_model_path("bob", model_path).exists()


def test_calibrate_needs_source_or_recording(model_path):
    result = CliRunner().invoke(main, ["calibrate", "--model", str(model_path), "--user", "x"])
    assert result.exit_code != 0 and "either SOURCE" in result.output


def test_calibrate_from_simulated_source(tmp_path, model_path):
    out = tmp_path / "sim.emgm"
    result = CliRunner().invoke(main, ["calibrate", "sim://?channels=4&rate=500&realtime=0",
                                       "--model", str(model_path), "--user", "sim",
                                       "--duration", "26", "-o", str(out), "--method", "ssp",
                                       "--xi", "0.0", "--n-consecutive", "1"])
    assert result.exit_code == 0, result.output
    assert "windows from 26.0 s of EMG" in result.output
    assert load_model_file(out).provenance["personalized_for"] == "sim"


@pytest.mark.slow
def test_eval_tiny_hdf5(tmp_path):
    """Train once, adapt to one user, every row; checks the files and the table."""
    classes = ["rest", "a", "b"]
    rate = 500.0
    for u in range(3):
        for s in range(2):
            n = int(16 * rate)
            labels = (np.arange(n) // int(rate) % 3).astype(np.int16)
            path = tmp_path / "data" / f"u{u}_s{s}.h5"
            path.parent.mkdir(exist_ok=True)
            _recording(path, 4, rate, 16.0, labels=labels, user=f"u{u}", session=f"s{s}",
                       class_names=classes, seed=10 * u + s)
    out = tmp_path / "res"
    result = CliRunner().invoke(main, [
        "eval", "--dataset", "hdf5", "--root", str(tmp_path / "data"), "--train-users",
        "u0,u1", "--test-users", "u2", "--source-epochs", "1", "--mae-epochs", "1",
        "--epochs-scale", "0.2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["upper-bound", "source-only", "lda", "lda-zscore", "lda-kmeans", "adabn",
                       "ssa", "ssp", "emg-up", "shot-im", "pseudo-label", "emg-up+"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in res["rows"])
    assert (out / "per_user.csv").read_text().count("\n") == 1 + len(methods)
    for name in ("emg-up", "emg-up+", "lda-kmeans"):
        assert f"| {name} |" in (out / "results.md").read_text()
    assert "| source-only |" in result.output
    # one confusion matrix per method: class names on both axes, every scored window counted
    scored = sum(sum(row) for row in res["rows"][0]["confusion"])
    for name in methods:
        lines = (out / f"confusion_{name}.csv").read_text().splitlines()
        assert lines[0].split(",")[1:] == classes
        assert sum(int(v) for line in lines[1:] for v in line.split(",")[1:]) == scored


def test_eval_adapts_a_given_model_file(tmp_path):
    """--model: no source training; the file's model is adapted to each test user, its
    preprocessing and classes are the protocol's, and the source-only row is that model."""
    from emgstream.synth import GESTURES

    mf = make_test_model(n_channels=16, rate=2000.0, classes=GESTURES, window_s=0.1,
                         hop_s=0.05, seed=3)
    path = save_model_file(tmp_path / "m.emgm", mf)
    out = tmp_path / "res"
    result = CliRunner().invoke(main, [
        "eval", "--dataset", "synth", "--model", str(path), "--test-users", "5",
        "--synth-duration", "8", "--rows", "source-only,ssp", "--epochs-scale", "0.2",
        "-o", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["train_users"] == [] and res["protocol"]["test_users"] == ["synth005"]
    assert res["protocol"]["preprocessing"]["window"] == mf.preprocessing.window
    assert {r["method"] for r in res["rows"]} == {"source-only", "ssp"}
    # --train-users beside --model feed the classical rows only; nothing is trained on them
    result = CliRunner().invoke(main, [
        "eval", "--dataset", "synth", "--model", str(path), "--train-users", "6-7",
        "--test-users", "5", "--synth-duration", "8", "--rows", "source-only,lda,lda-zscore",
        "-o", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["train_users"] == ["synth006", "synth007"]
    assert [r["method"] for r in res["rows"]] == ["source-only", "lda", "lda-zscore"]
    wrong = CliRunner().invoke(main, ["eval", "--dataset", "synth", "--model", str(path),
                                      "--users", "1,2"])
    assert wrong.exit_code == 2 and "give --test-users" in wrong.output
    mismatch = save_model_file(tmp_path / "other.emgm",
                               make_test_model(n_channels=16, rate=2000.0, seed=3))
    wrong = CliRunner().invoke(main, ["eval", "--dataset", "synth", "--model", str(mismatch),
                                      "--test-users", "5", "--synth-duration", "8"])
    assert wrong.exit_code == 1 and "classifies" in wrong.output


def test_calibrate_default_is_the_library_default():
    """The CLI names the default method literally (importing it would import torch for every
    --help); it must stay the library's."""
    from emgstream.adapt import DEFAULT_METHOD
    from emgstream.cli._adapt import calibrate

    method = next(p for p in calibrate.params if p.name == "method")
    assert method.default == DEFAULT_METHOD


def test_user_ranges_expand_as_typed():
    from emgstream.cli._adapt import _user_list

    assert _user_list("1-3,5") == ["1", "2", "3", "5"]
    assert _user_list("12-14, 22,Participant3") == ["12", "13", "14", "22", "Participant3"]
    assert _user_list("synth004") == ["synth004"]
    assert _user_list("") is None
    with pytest.raises(click.BadParameter, match="runs backwards"):
        _user_list("5-3")
