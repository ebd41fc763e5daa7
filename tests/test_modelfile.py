"""The model file: round trip, and clear errors for every broken part."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emgstream.modelfile import (ModelFile, ModelFileError, Preprocessing, load_model_file,
                                 save_model_file)


def _graph() -> bytes:
    """A real, minimal ONNX graph: the loader parses and checks it (never runs it here)."""
    from onnx import TensorProto, helper

    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("emg", "logits")]
    graph = helper.make_graph([helper.make_node("Identity", ["emg"], ["logits"])], "toy",
                              io_[:1], io_[1:])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]) \
        .SerializeToString()


def _model(**overrides) -> ModelFile:
    fields = dict(
        architecture={"name": "toy", "d_model": 8},
        preprocessing=Preprocessing(sample_rate=2000.0, n_channels=16, window=800, hop=40),
        class_names=["rest", "fist"], onnx=_graph(),
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
    assert loaded.onnx == _graph()
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


# -- untrusted model files: one crafted file per attack ------------------------------------
# Each refusal must be one line, come from our checks (not from a library's traceback), and
# happen before anything outside the declared file is read or anything large is allocated.

def _refused(call, message: str) -> str:
    with pytest.raises(ModelFileError, match=message) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


@pytest.fixture
def secret(tmp_path, monkeypatch, watch_reads):
    """``secret.bin`` in the working directory, where ONNX Runtime resolves external data."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"SECRET!!")
    return watch_reads(tmp_path / "secret.bin")


def _external(name: str, location: str = "secret.bin"):
    """A float32 (2,) tensor whose 8 bytes ONNX Runtime would read from ``location``."""
    from onnx import TensorProto

    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[2],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _onnx(nodes, initializers=(), sparse=(), opsets=(("", 18),), functions=()) -> bytes:
    """emg float32 (2,) -> logits float32 (2,) through ``nodes``."""
    from onnx import TensorProto, helper

    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("emg", "logits")]
    graph = helper.make_graph(nodes, "crafted", io_[:1], io_[1:], list(initializers),
                              sparse_initializer=list(sparse))
    model = helper.make_model(graph, functions=list(functions),
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model.SerializeToString()


def _sparse(values):
    from onnx import TensorProto, helper

    return helper.make_sparse_tensor(values, helper.make_tensor("idx", TensorProto.INT64, [2],
                                                                [0, 1]), [2])


def _hidden_external(where: str) -> bytes:
    """A graph whose logits are ``emg + secret.bin``, the external tensor hidden in ``where``."""
    from onnx import helper

    add = helper.make_node("Add", ["emg", "w"], ["logits"])
    if where == "initializer":
        return _onnx([add], initializers=[_external("w")])
    if where == "sparse initializer":
        return _onnx([add], sparse=[_sparse(_external("w"))])
    if where == "Constant value":
        return _onnx([helper.make_node("Constant", [], ["w"], value=_external("c")), add])
    if where == "Constant sparse_value":
        return _onnx([helper.make_node("Constant", [], ["w"],
                                       sparse_value=_sparse(_external("c"))), add])
    # If body: a subgraph that ONNX Runtime loads with the rest of the model
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=_external("c"))], "branch", [],
        [helper.make_tensor_value_info("w", 1, [2])])
    cond = helper.make_tensor("cond", 9, [], [True])
    return _onnx([helper.make_node("If", ["cond"], ["w"], then_branch=branch,
                                   else_branch=branch), add], initializers=[cond])


_HIDING_PLACES = ["initializer", "sparse initializer", "Constant value",
                  "Constant sparse_value", "If body"]


def test_crafted_external_data_graph_really_reads_the_file(secret):
    """The attack is real: given the crafted bytes directly, ONNX Runtime reads the working
    directory's file into the graph and returns its bytes (and the access time shows it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    session = ort.InferenceSession(_hidden_external("initializer"), opts,
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {"emg": np.zeros(2, np.float32)})[0]
    assert out.tobytes() == b"SECRET!!" and secret.was_read


@pytest.mark.parametrize("where", _HIDING_PLACES)
def test_external_data_refused_before_any_read(tmp_path, secret, where):
    path = save_model_file(tmp_path / "m.emgm", _model(onnx=_hidden_external(where)))
    _refused(lambda: load_model_file(path),
             r"m\.emgm: model\.onnx: .* keeps its data in another file \('secret\.bin'\); a "
             r"model file's graph must be self-contained")
    assert not secret.was_read


@pytest.mark.parametrize("where", ["initializer", "If body"])
def test_external_data_refused_by_the_live_path_too(secret, where):
    """swap_model takes bare ONNX bytes: the check runs before a session is built."""
    from emgstream.pipeline import Pipeline
    from emgstream.sources import open_source

    model = load_model_file(Path(__file__).parents[1] / "models/default.emgm")
    pipeline = Pipeline(open_source("sim://"), model)
    _refused(lambda: pipeline.swap_model(_hidden_external(where)),
             r"^the model's ONNX graph: .* keeps its data in another file \('secret\.bin'\)")
    assert not secret.was_read


def _graph_refused(tmp_path, graph: bytes, message: str) -> None:
    path = save_model_file(tmp_path / "m.emgm", _model(onnx=graph))
    _refused(lambda: load_model_file(path), r"m\.emgm: model\.onnx " + message)


def test_custom_operator_domain_refused(tmp_path):
    from onnx import helper

    node = helper.make_node("Steal", ["emg"], ["logits"], domain="com.evil")
    _graph_refused(tmp_path, _onnx([node], opsets=(("", 18), ("com.evil", 1))),
                   r"imports the custom operator domain 'com\.evil'; only \['', 'ai\.onnx', "
                   r"'ai\.onnx\.ml'\] are accepted")
    # a node of a domain the graph does not even import
    node = helper.make_node("FusedMatMul", ["emg", "emg"], ["logits"], domain="com.microsoft")
    _graph_refused(tmp_path, _onnx([node]), r"uses the operator 'FusedMatMul' of the "
                                                   r"custom domain 'com\.microsoft'")


def test_opset_outside_the_exporters_refused(tmp_path):
    from onnx import helper

    graph = _onnx([helper.make_node("Identity", ["emg"], ["logits"])], opsets=(("", 21),))
    _graph_refused(tmp_path, graph, r"uses opset 21; this emgstream accepts opset 18\.\.18")


def test_operator_no_export_uses_refused(tmp_path):
    from onnx import helper

    graph = _onnx([helper.make_node("RandomNormalLike", ["emg"], ["logits"])])
    _graph_refused(tmp_path, graph, r"uses the operator 'RandomNormalLike', which no graph "
                                    r"emgstream exports contains")


def test_local_functions_refused(tmp_path):
    from onnx import helper

    function = helper.make_function("lib.local", "Twice", ["x"], ["y"],
                                    [helper.make_node("Add", ["x", "x"], ["y"])],
                                    [helper.make_opsetid("", 18)])
    graph = _onnx([helper.make_node("Twice", ["emg"], ["logits"], domain="lib.local")],
                  opsets=(("", 18), ("lib.local", 1)), functions=[function])
    _graph_refused(tmp_path, graph, r"defines 1 functions and 0 training graphs")


def test_every_graph_emgstream_exports_passes_the_check():
    """The allow-list is exactly what our exporter writes: the shipped model, and a fresh
    export of both heads, both token features and both poolings (normalisations: the
    test models of every other test)."""
    torch = pytest.importorskip("torch")
    from emgstream.modelfile import check_onnx_graph
    from emgstream.nn import EncoderConfig, GestureModel, export_onnx

    check_onnx_graph(load_model_file(Path(__file__).parents[1] / "models/default.emgm").onnx)
    torch.manual_seed(0)
    for features, pooling, head in (("raw", "cls", "projection"),
                                    ("log_power", "mean", "qformer")):
        encoder = EncoderConfig(4, 100, 25, d_model=8, n_layers=1, n_heads=2,
                                features=features, power_bins=5 if features != "raw" else 1)
        model = GestureModel(encoder, ["a", "b"], embed_dim=8, pooling=pooling, head=head,
                             normalisation="fixed",
                             qformer={"n_queries": 2, "n_layers": 1} if head == "qformer"
                             else None)
        check_onnx_graph(export_onnx(model))


def test_duplicate_member_refused(tmp_path):
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        _rewrite(good, bad, extra={"model.onnx": _graph()})
    _refused(lambda: load_model_file(bad), r"holds member 'model\.onnx' twice")


def test_decompression_bomb_refused(tmp_path):
    good = save_model_file(tmp_path / "good.emgm", _model())
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    bomb = json.dumps(manifest) + " " * (3 << 20)  # 3 MB of blanks deflate to 3 kB
    bad = tmp_path / "bad.emgm"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = bomb if item.filename == "manifest.json" else zin.read(item.filename)
            zout.writestr(item.filename, data)
    _refused(lambda: load_model_file(bad), r"member 'manifest\.json' would expand \d+ bytes "
                                           r"to \d+, more than 100:1 \(a decompression bomb\)")


def test_corrupt_member_refused(tmp_path):
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad)  # stored, not deflated: the graph's bytes appear as they are
    data = bytearray(bad.read_bytes())
    at = data.index(b"Identity")  # inside model.onnx only
    data[at] ^= 0xFF
    bad.write_bytes(bytes(data))
    _refused(lambda: load_model_file(bad), r"member 'model\.onnx' cannot be read: Bad CRC-32")


def test_array_header_promising_more_than_it_holds_refused(tmp_path):
    """numpy allocates the declared shape before reading: 40 GB from an 80-byte array."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**10,)})
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("w.npy", header.getvalue() + bytes(8))
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, replace={"weights.npz": npz.getvalue()})
    _refused(lambda: load_model_file(bad),
             r"weights\.npz: array 'w\.npy' declares shape \(10000000000,\) of float32 "
             r"\(40000000000 bytes\) but holds 8 bytes")


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m["preprocessing"].update(n_channels=10**9), "n_channels must be at most 4096"),
    (lambda m: m["preprocessing"].update(sample_rate=1e12),
     r"sample_rate must be at most 100000 Hz, got 1e\+12 Hz"),
    (lambda m: m["preprocessing"].update(window=10**8), "window x n_channels must be at most"),
    (lambda m: m["preprocessing"].update(notch_harmonics=10**9),
     "notch_harmonics must be at most 64"),
    (lambda m: m["preprocessing"].update(bandpass=[1, 2, 3]), "bandpass must be"),
    (lambda m: m["preprocessing"].update(units="u" * 10**5), "units must be a string of at "
                                                             "most 256 characters"),
    (lambda m: m.update(class_names=["c"] * 5000), "at most 1024 strings"),
    (lambda m: m.update(output_names=[]), "1..8 outputs"),
    (lambda m: m.update(provenance=[1]), "'provenance' missing or not a dict"),
])
def test_manifest_values_out_of_range_refused(tmp_path, mutate, message):
    good = save_model_file(tmp_path / "good.emgm", _model())
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    mutate(manifest)
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, replace={"manifest.json": json.dumps(manifest)})
    _refused(lambda: load_model_file(bad), message)


def test_deeply_nested_manifest_refused(tmp_path):
    good = save_model_file(tmp_path / "good.emgm", _model())
    bad = tmp_path / "bad.emgm"
    _rewrite(good, bad, replace={"manifest.json": "[" * 100_000})
    _refused(lambda: load_model_file(bad), "manifest.json is not valid JSON: maximum recursion")


def test_bank_labels_outside_the_classes_refused(tmp_path):
    bank = {"embeddings": np.ones((2, 8), np.float32), "labels": np.array([0, 7])}
    path = save_model_file(tmp_path / "m.emgm", _model(bank=bank))
    _refused(lambda: load_model_file(path), r"bank\.npz: bank labels must lie in \[0, 2\), "
                                            r"got \[0, 7\]")


def test_weights_checked_against_the_architecture(tmp_path):
    """Adaptation rebuilds the torch module from the declared architecture: every array must
    have the shape that architecture gives it before torch sees it."""
    pytest.importorskip("torch")
    from emgstream.nn import load_model
    from emgstream.train import make_test_model

    model = make_test_model(n_channels=4, rate=500.0)
    name = next(iter(model.weights))
    model.weights[name] = np.zeros((3, 3), np.float32)
    loaded = load_model_file(save_model_file(tmp_path / "m.emgm", model))
    _refused(lambda: load_model(loaded), rf"weight '{name}' has shape \(3, 3\), the "
                                         r"architecture needs")
