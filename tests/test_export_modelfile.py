"""Model file from a GestureModel: ONNX parity with torch, and clear errors on broken files."""

from __future__ import annotations

import zipfile

import numpy as np
import onnxruntime as ort
import pytest
import torch

from emgstream.modelfile import ModelFileError, load_model_file, save_model_file
from emgstream.nn import build_model, load_model
from emgstream.train import make_test_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_file():
    return make_test_model(n_channels=16, rate=2000, classes=["rest", "fist", "pinch"], seed=0)


@pytest.mark.parametrize("normalisation", ["instance", "fixed"])
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_matches_torch(normalisation, batch, tmp_path):
    mf = make_test_model(n_channels=8, rate=1000, classes=["a", "b"], seed=3,
                         normalisation=normalisation)
    path = save_model_file(tmp_path / "m.emgm", mf)
    loaded = load_model_file(path)
    model = load_model(loaded)
    x = (np.random.default_rng(0).standard_normal((batch, 8, model.window)) * 80 + 5)
    x = x.astype(np.float32)
    sess = ort.InferenceSession(loaded.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["emg"]
    logits, emb = sess.run(["logits", "embedding"], {"emg": x})
    with torch.no_grad():
        t_logits, t_emb = model(torch.from_numpy(x))
    assert logits.shape == (batch, 2) and emb.shape == (batch, model.embed_dim)
    assert np.abs(logits - t_logits.numpy()).max() < 1e-4
    assert np.abs(emb - t_emb.numpy()).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_roundtrip_keeps_everything(model_file, tmp_path):
    loaded = load_model_file(save_model_file(tmp_path / "m.emgm", model_file))
    assert loaded.class_names == ["rest", "fist", "pinch"]
    assert loaded.preprocessing.window == 800 and loaded.preprocessing.hop == 40
    assert loaded.bank["embeddings"].shape == (24, 32)
    model = build_model(loaded.architecture)
    assert (model.window, model.hop, model.class_names) == (800, 40, loaded.class_names)
    assert model.encoder.n_patches == 16


def test_corrupt_zip_is_clear_error(tmp_path):
    path = tmp_path / "bad.emgm"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ModelFileError, match="not a zip"):
        load_model_file(path)


def test_missing_member_is_clear_error(model_file, tmp_path):
    good = save_model_file(tmp_path / "m.emgm", model_file)
    bad = tmp_path / "missing.emgm"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if info.filename != "weights.npz":
                dst.writestr(info, src.read(info))
    with pytest.raises(ModelFileError, match="weights.npz"):
        load_model_file(bad)


def test_weights_of_wrong_shape_are_clear_error(model_file):
    weights = dict(model_file.weights)
    weights["classifier.weight"] = np.zeros((4, 32), np.float32)
    broken = type(model_file)(**{**model_file.__dict__, "weights": weights})
    with pytest.raises(ModelFileError, match=r"classifier.weight.*\(4, 32\).*\(3, 32\)"):
        load_model(broken)
    weights = dict(model_file.weights)
    del weights["encoder.tokenizer.bias"]
    with pytest.raises(ModelFileError, match="missing.*encoder.tokenizer.bias"):
        load_model(type(model_file)(**{**model_file.__dict__, "weights": weights}))


def test_unknown_architecture_is_clear_error(model_file):
    arch = {**model_file.architecture, "name": "resnet"}
    with pytest.raises(ModelFileError, match="architecture"):
        load_model(type(model_file)(**{**model_file.__dict__, "architecture": arch}))
