"""The shipped default model file: loads, fits the wristband, runs the same in ORT and torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from emgstream.modelfile import ModelFileError, load_model_file
from emgstream.nn import knn_predict, load_model

DEFAULT = Path(__file__).resolve().parents[1] / "models" / "default.emgm"


@pytest.fixture(scope="module")
def default_model():
    if not DEFAULT.is_file():
        pytest.fail(f"the shipped model {DEFAULT} is missing")
    return load_model_file(DEFAULT)


def test_default_model_fits_the_wristband(default_model):
    mf = default_model
    assert DEFAULT.stat().st_size < 20e6
    p = mf.preprocessing
    assert (p.n_channels, p.sample_rate, p.window, p.hop) == (16, 2000.0, 400, 40)
    assert p.normalisation == "instance"
    from emgstream.synth import GESTURES
    assert mf.class_names == list(GESTURES)
    assert mf.bank["embeddings"].shape[1] == mf.architecture["embed_dim"]
    assert set(np.unique(mf.bank["labels"])) == set(range(len(GESTURES)))
    mf.check_stream(16, 2000.0)
    with pytest.raises(ModelFileError, match="8 channels at 1000 Hz"):
        mf.check_stream(8, 1000.0)


def test_default_model_onnx_matches_torch(default_model):
    torch.set_num_threads(1)
    model = load_model(default_model)
    x = (np.random.default_rng(0).standard_normal((16, 16, 400)) * 60).astype(np.float32)
    sess = ort.InferenceSession(default_model.onnx, providers=["CPUExecutionProvider"])
    logits, emb = sess.run(["logits", "embedding"], {"emg": x})
    with torch.no_grad():
        t_logits, t_emb = model(torch.from_numpy(x))
    assert np.abs(logits - t_logits.numpy()).max() < 1e-4
    assert np.abs(emb - t_emb.numpy()).max() < 1e-4
    pred = knn_predict(emb, default_model.bank["embeddings"], default_model.bank["labels"],
                       default_model.n_classes)
    assert pred.shape == (16,) and pred.max() < default_model.n_classes
