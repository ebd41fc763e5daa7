"""The model file: round trip, and clear errors for every broken part."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from emgstream.modelfile import (ModelFile, ModelFileError, Preprocessing, load_model_file,
                                 save_model_file)


def _model(**overrides) -> ModelFile:
    fields = dict(
        architecture={"name": "toy", "d_model": 8},
        preprocessing=Preprocessing(sample_rate=2000.0, n_channels=16, window=800, hop=40),
        class_names=["rest", "fist"], onnx=b"\x08\x07fake-onnx",
        weights={"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        bank={"embeddings": np.ones((4, 8), np.float32), "labels": np.array([0, 1, 0, 1])},
        provenance={"recipe": "toy.toml", "seed": 0}, metrics={"acc": 0.5})
    fields.update(overrides)
    return ModelFile(**fields)


def test_round_trip(tmp_path):
    path = save_model_file(tmp_path / "m.emgm", _model())
    loaded = load_model_file(path)
    assert loaded.preprocessing == _model().preprocessing
    assert loaded.class_names == ["rest", "fist"]
    assert loaded.onnx == b"\x08\x07fake-onnx"
    np.testing.assert_array_equal(loaded.weights["w"], _model().weights["w"])
    np.testing.assert_array_equal(loaded.bank["labels"], [0, 1, 0, 1])
    assert loaded.provenance["seed"] == 0 and loaded.metrics["acc"] == 0.5
    assert "16 ch @ 2000 Hz" in repr(loaded)


def test_without_bank(tmp_path):
    loaded = load_model_file(save_model_file(tmp_path / "m.emgm", _model(bank=None)))
    assert loaded.bank is None


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "nope.emgm")


def test_not_a_zip(tmp_path):
    path = tmp_path / "m.emgm"
    path.write_bytes(b"definitely not a zip")
    with pytest.raises(ModelFileError, match="not a zip"):
        load_model_file(path)


def _rewrite(src, dst, drop=(), replace=None, extra=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            data = (replace or {}).get(item.filename, zin.read(item.filename))
            zout.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)


@pytest.mark.parametrize("member", ["manifest.json", "model.onnx", "weights.npz"])
def test_missing_member_named(tmp_path, member):
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, drop={member})
    with pytest.raises(ModelFileError, match=member.replace(".", r"\.")):
        load_model_file(bad)


def test_unexpected_member(tmp_path):
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, extra={"evil.pkl": b"cos\nsystem\n"})
    with pytest.raises(ModelFileError, match="unexpected member 'evil.pkl'"):
        load_model_file(bad)


def test_pickled_array_refused(tmp_path):
    import io
    buf = io.BytesIO()
    np.savez(buf, w=np.array([{"a": 1}], dtype=object))
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, replace={"weights.npz": buf.getvalue()})
    with pytest.raises(ModelFileError, match="weights.npz"):
        load_model_file(bad)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(format_version=99), "format version 99"),
    (lambda m: m.pop("class_names"), "class_names"),
    (lambda m: m.update(class_names=[]), "non-empty"),
    (lambda m: m["preprocessing"].update(window=-5), "window must be a positive integer"),
    (lambda m: m["preprocessing"].update(extra_key=1), "unknown keys"),
])
def test_bad_manifest_named(tmp_path, mutate, message):
    good = save_model_file(tmp_path / "good.emgm", _model())
    with zipfile.ZipFile(good) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    mutate(manifest)
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, replace={"manifest.json": json.dumps(manifest)})
    with pytest.raises(ModelFileError, match=message):
        load_model_file(bad)


def test_check_stream_names_both_sides():
    model = _model()
    model.check_stream(16, 2000.0)
    with pytest.raises(ModelFileError, match="8 channels at 1000 Hz.*16 channels at 2000 Hz"):
        model.check_stream(8, 1000.0)
