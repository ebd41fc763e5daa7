"""Recipes: parsing, a whole tiny run (every stage), `emgstream export`, and its errors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from emgstream.cli import main as cli
from emgstream.modelfile import load_model_file
from emgstream.nn import load_model
from emgstream.train import load_recipe, run_recipe, windows_from_streams
from emgstream.train._pipeline import Splits, preprocessing

from test_train_trainer import _streams

torch.set_num_threads(1)

TINY = """
name = "tiny"
out = "run"
[data]
n_channels = 4
sample_rate = 500.0
window = 100
hop = 10
stride = 20
[model]
emg_patch = 10
emg_features = "log_power"
emg_power_bins = 2
pose_patch = 25
d_model = 16
n_layers = 2
n_heads = 2
qformer_queries = 2
qformer_layers = 2
n_communities = 4
bank_per_class = 5
[stages.mae-emg]
steps = 4
batch_size = 8
[stages.mae-pose]
steps = 4
batch_size = 8
[stages.align-cpep]
steps = 4
batch_size = 8
[stages.align-embridge]
steps = 4
batch_size = 8
[stages.head]
steps = 20
[stages.finetune]
steps = 4
batch_size = 8
"""


def _recipe(tmp_path, text=TINY, aligned="align-cpep"):
    path = tmp_path / "tiny.toml"
    path.write_text(f'aligned = "{aligned}"\n' + text)
    return load_recipe(path)


def _splits(recipe):
    prep = preprocessing(recipe)
    streams = _streams(n_users=3)
    ws = [windows_from_streams([s], prep, 20) for s in streams]
    return Splits(ws[0], ws[1], ws[2], seen=["a", "b"], unseen=["c"])


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"\[model\]: unknown keys \['d_modle'\]"):
        _recipe(tmp_path, TINY.replace("d_model", "d_modle"))
    with pytest.raises(ValueError, match=r"unknown stages \['distill'\]"):
        _recipe(tmp_path, TINY + "[stages.distill]\nsteps = 1\n")
    with pytest.raises(ValueError, match="finetune stage starts from the head"):
        _recipe(tmp_path, TINY.replace("[stages.head]\nsteps = 20\n", ""))
    with pytest.raises(ValueError, match="not valid TOML"):
        _recipe(tmp_path, "[data\n")
    r = _recipe(tmp_path).scaled(0.5)
    assert r.stages["mae-emg"].steps == 2 and r.stages["head"].steps == 20


@pytest.mark.slow
@pytest.mark.parametrize("aligned", ["align-cpep", "align-embridge"])
def test_tiny_recipe_runs_every_stage_and_exports(tmp_path, aligned):
    recipe = _recipe(tmp_path, aligned=aligned)
    ckpt = run_recipe(recipe, splits=_splits(recipe))
    for stage in ("mae-emg", "mae-pose", "align-cpep", "align-embridge", "finetune"):
        assert (recipe.out_dir / stage / "final.pt").is_file()
        assert (recipe.out_dir / stage / "metrics.csv").is_file()
    out = tmp_path / "tiny.emgm"
    result = CliRunner().invoke(cli, ["export", str(ckpt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    mf = load_model_file(out)
    assert mf.class_names == ["a", "b"] and mf.preprocessing.window == 100
    assert mf.bank["embeddings"].shape[1] == 16 and set(mf.bank["labels"].tolist()) == {0, 1}
    assert {"classifier_macro_accuracy", "zero_shot_macro_accuracy",
            "linear_probe_classifier_macro_accuracy"} <= set(mf.metrics)
    assert mf.provenance["recipe"]["name"] == "tiny"
    model = load_model(mf)
    assert (model.encoder.config.features, model.encoder.config.power_bins) == ("log_power", 2)
    x = np.random.default_rng(0).standard_normal((3, 4, 100)).astype(np.float32) * 30
    sess = ort.InferenceSession(mf.onnx, providers=["CPUExecutionProvider"])
    logits, emb = sess.run(None, {"emg": x})
    with torch.no_grad():
        t_logits, t_emb = model(torch.from_numpy(x))
    assert np.abs(logits - t_logits.numpy()).max() < 1e-4
    assert np.abs(emb - t_emb.numpy()).max() < 1e-4
    # a second run finds every stage finished and only redoes the head
    assert run_recipe(recipe, splits=_splits(recipe)) == ckpt


def test_export_of_a_broken_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(cli, ["export", str(bad), "-o", str(tmp_path / "x.emgm")])
    assert result.exit_code != 0
    assert "is not a readable emgstream checkpoint" in result.output
    torch.save({"state_dict": {}}, bad)
    result = CliRunner().invoke(cli, ["export", str(bad), "-o", str(tmp_path / "x.emgm")])
    assert "lacks ['architecture', 'preprocessing']" in result.output
