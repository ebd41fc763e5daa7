"""Personalized model files kept per user and source model, and picked up next time:
``calibrate`` writes one, ``run --user`` and ``demo --user`` start from it."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingWriter
from emgstream.modelfile import load_model_file, save_model_file
from emgstream.pipeline import personal_model_path
from emgstream.sources import StreamInfo

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import train
_SIM = "sim://?channels=4&rate=500"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGSTREAM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def model_path(tmp_path):
    mf = train.make_test_model(n_channels=4, rate=500.0, window_s=0.2, hop_s=0.05, seed=2)
    return save_model_file(tmp_path / "base.emgm", mf)


def test_one_file_per_user_and_source_model(home, model_path, tmp_path):
    path = personal_model_path("ann", model_path)
    assert path.parent == home / "users" / "ann"
    assert path.name.startswith("base-") and path.suffix == ".emgm"
    assert personal_model_path("ann", str(model_path)) == path
    assert personal_model_path("bob", model_path).parent.name == "bob"
    # a different source model (other bytes, same name) has its own personalization
    other = save_model_file(tmp_path / "other" / "base.emgm",
                            train.make_test_model(n_channels=4, rate=500.0, seed=3))
    assert personal_model_path("ann", other) != path
    assert not path.exists()  # a path, not a file: nothing is created by asking


@pytest.mark.parametrize("name", ["", "../ann", "a/b", ".hidden", "-x", "a" * 65, "ann bob"])
def test_user_names_that_cannot_name_a_folder_are_refused(home, model_path, name):
    with pytest.raises(ValueError, match="cannot name a folder"):
        personal_model_path(name, model_path)


def test_a_missing_source_model_is_named(home, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.emgm"):
        personal_model_path("ann", tmp_path / "nothing.emgm")


def _recording(path, seconds=26.0, rate=500.0, n_channels=4):  # calibrate needs 512 windows
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    emg = (rng.standard_normal((n, n_channels)) * 30).astype(np.float32)
    emg[:, 0] *= 1 + np.arange(n) % 400 / 100
    with RecordingWriter(path, StreamInfo("test", n_channels, rate), user="ann") as w:
        w.append(emg, np.arange(n) / rate)
    return path


def test_calibrate_then_run_picks_up_the_users_model(home, model_path, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["calibrate", "--model", str(model_path), "--user", "ann",
                                  "--from", str(_recording(tmp_path / "rec.h5")),
                                  "--xi", "0.0", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    saved = personal_model_path("ann", model_path)
    assert f"personalized model: {saved}" in result.output
    assert f"emgstream run SOURCE --user ann --model {model_path}" in result.output
    assert load_model_file(saved).provenance["personalized_for"] == "ann"

    args = ["run", _SIM, "--model", str(model_path), "--duration", "0.5", "--no-json"]
    result = runner.invoke(main, args + ["--user", "ann"])
    assert result.exit_code == 0, result.output
    assert f"using ann's personalized model {saved}" in result.stderr
    assert f"running {saved}" in result.stderr
    for other in (["--user", "ann", "--no-personal"], ["--user", "bob"], []):
        result = runner.invoke(main, args + other)
        assert result.exit_code == 0, result.output
        assert "personalized model" not in result.stderr
        assert f"running {model_path}" in result.stderr


def test_calibrate_defaults_to_the_shipped_model(home, tmp_path):
    from emgstream.pipeline import default_model_path

    shipped = default_model_path()
    if shipped is None:
        pytest.skip("no shipped model in this installation")
    rec = _recording(tmp_path / "rec.h5", seconds=11.0, rate=2000.0, n_channels=16)
    result = CliRunner().invoke(main, ["calibrate", "--user", "ann", "--from", str(rec),
                                       "--method", "adabn"])
    assert result.exit_code == 0, result.output
    saved = personal_model_path("ann", shipped)
    assert f"personalized model: {saved}" in result.output
    assert result.output.rstrip().endswith("it is used by: emgstream run SOURCE --user ann")
    assert load_model_file(saved).provenance["source_model"] == str(shipped)


def test_demo_headless_picks_up_the_users_model(home, model_path):
    saved = personal_model_path("ann", model_path)
    save_model_file(saved, load_model_file(model_path))
    result = CliRunner().invoke(main, ["demo", "--headless", "--source", _SIM, "--model",
                                       str(model_path), "--user", "ann", "--duration", "0.5"])
    assert result.exit_code == 0, result.output
    assert f"using ann's personalized model {saved}" in result.stderr


def test_bad_user_names_are_usage_errors(home, model_path):
    for command in (["run", _SIM], ["demo", "--headless", "--source", _SIM]):
        result = CliRunner().invoke(main, command + ["--model", str(model_path),
                                                     "--user", "../x", "--duration", "0.2"])
        assert result.exit_code == 2, result.output
        assert "cannot name a folder" in result.stderr


def test_users_lists_the_kept_models_and_marks_the_ones_run_would_use(home, model_path,
                                                                      tmp_path):
    result = CliRunner().invoke(main, ["users", "--model", str(model_path)])
    assert result.exit_code == 0, result.output
    assert f"no personalized models in {home / 'users'}" in result.output
    mine = personal_model_path("ann", model_path)
    save_model_file(mine, load_model_file(model_path))
    other = save_model_file(tmp_path / "other.emgm",
                            train.make_test_model(n_channels=4, rate=500.0, seed=3))
    theirs = personal_model_path("bob", other)
    save_model_file(theirs, load_model_file(other))
    result = CliRunner().invoke(main, ["users", "--model", str(model_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"personalized models in {home / 'users'} (* = adapted from {model_path})"
    assert lines[1].startswith("* ann ") and mine.name in lines[1]
    assert lines[2].startswith("  bob ") and theirs.name in lines[2]
