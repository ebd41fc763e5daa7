"""The model file: everything needed to use a trained model, in one zip archive.

=====================  =====================================================================
member                 holds
=====================  =====================================================================
``manifest.json``      format version, architecture config, preprocessing, class names,
                       ONNX input/output names, provenance (recipe, data, seed), metrics
``model.onnx``         the inference graph: ``emg`` float32 (batch, channels, time), filtered
                       but not normalised -> ``logits`` (batch, classes) and ``embedding``
                       (batch, dim); normalisation lives inside the graph
``weights.npz``        the torch state dict as float32 arrays, for adaptation (no pickle)
``bank.npz``           optional zero-shot bank: ``embeddings`` (n, dim), ``labels`` (n,)
=====================  =====================================================================

The file is untrusted input (model files travel between labs; the threat model is in
``docs/ARCHITECTURE.md``): member names, sizes and compression ratios are checked before
anything is decompressed, every array's header (dtype, shape) is checked against the bytes
that hold it before the array is allocated, arrays are loaded with ``allow_pickle=False``, the
manifest's values are bounded, and a missing or malformed part is an error that names it.

The graph is self-contained: no initializer or constant keeps its data in another file (ONNX
"external data"), it imports only the standard operator domains at the opset the exporter
writes (:data:`ONNX_OPSETS`), and it uses only the operators the exported graphs use
(:data:`ONNX_OPERATORS`); :func:`check_onnx_graph` enforces this before ONNX Runtime sees the
bytes. Loading needs numpy and onnx; torch is not imported here.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._checks import (MAX_CHANNELS, MAX_SAMPLE_RATE, MAX_TEXT, check_at_most, check_option,
                      check_positive_float, check_positive_int, check_text, shown)

__all__ = ["FORMAT_VERSION", "ONNX_OPERATORS", "ONNX_OPSETS", "Preprocessing", "ModelFile",
           "ModelFileError", "check_bank", "check_onnx_graph", "load_model_file",
           "save_model_file"]

FORMAT_VERSION = 1
_MAX_MEMBER_BYTES = {"manifest.json": 4 << 20, "model.onnx": 256 << 20,
                     "weights.npz": 512 << 20, "bank.npz": 256 << 20}
_REQUIRED = ("manifest.json", "model.onnx", "weights.npz")
#: Uncompressed size / compressed size above which a zip member is refused: the parts of a
#: real model compress by 1.1x (weights, graph) to 5x (manifest); deflate reaches 1000x on
#: a run of zeros, which is how a small file would claim gigabytes of memory.
_MAX_COMPRESSION = 100
_COMPRESSION_SLACK = 64 << 10  # tiny members may compress better; they cannot hurt
_MAX_CLASSES = 1024
_MAX_WINDOW_VALUES = 1 << 24  # channels x window samples: 64 MiB of float32 per window
_MAX_FILTER_ORDER = 16
_MAX_NOTCH_HARMONICS = 64
_MAX_OUTPUTS = 8
_NPY_VERSIONS = ((1, 0), (2, 0))  # what np.save writes; 3.0 only adds unicode field names
_NPY_KINDS = "biuf"  # bool, integers, floats: what weights and banks hold

#: Operators of the default domain that the graphs emgstream exports contain, taken from
#: :func:`emgstream.nn.export_onnx` (opset 18) of the shipped model and of every variant:
#: normalisation instance / fixed / none, projection and Q-Former heads, raw and log-power
#: tokens, [CLS] and mean pooling (``tests/test_modelfile.py`` re-exports both heads; every
#: test model of the suite is checked when it loads). Any other operator is refused: it is
#: attack surface of ONNX Runtime that no model of ours needs. An architecture or exporter
#: that needs more adds them here.
ONNX_OPERATORS = frozenset({
    "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Div", "Equal", "Erf",
    "Expand", "Gather", "Gemm", "Identity", "LayerNormalization", "Log", "MatMul", "Mul",
    "Pow", "ReduceL2", "ReduceMean", "Reshape", "Shape", "Slice", "Softmax", "Split", "Sqrt",
    "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where"})
#: Default-domain opset versions accepted: what the exporter writes (``emgstream.nn``'s
#: ``OPSET``). Operator semantics change between opsets; the list above was taken at this one.
ONNX_OPSETS = range(18, 19)
#: The operator domains ONNX itself defines; any other names a custom-operator library,
#: i.e. native code outside ONNX Runtime's standard kernels.
_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


class ModelFileError(ValueError):
    """A model file is missing a part, has a malformed part, or does not fit the stream."""


@dataclass(frozen=True)
class Preprocessing:
    """How raw samples become model input; the live path and the loaders both obey it.

    Processing order: causal band-pass -> causal notch (+ harmonics) -> window of
    ``window`` samples every ``hop`` samples -> (inside the ONNX graph) normalisation.
    """

    sample_rate: float
    n_channels: int
    window: int  #: samples per window
    hop: int  #: samples between consecutive windows (live) / stride (offline)
    bandpass: tuple[float, float] | None = (20.0, 450.0)
    bandpass_order: int = 4
    notch: float | None = 50.0  #: mains frequency, or None
    notch_harmonics: int = 1  #: 1 = the fundamental only
    normalisation: str = "instance"  #: "instance" | "fixed" | "none" (applied in the graph)
    units: str = "microvolts"

    def __post_init__(self) -> None:
        # bounded as well as typed: a model file's manifest is untrusted, and the live path
        # sizes buffers and designs filters from these numbers
        check_at_most(check_positive_float(self.sample_rate, "sample_rate"), MAX_SAMPLE_RATE,
                      "sample_rate", " Hz")
        check_at_most(check_positive_int(self.n_channels, "n_channels"), MAX_CHANNELS,
                      "n_channels")
        check_positive_int(self.window, "window")
        check_at_most(self.window * self.n_channels, _MAX_WINDOW_VALUES,
                      "window x n_channels")
        check_positive_int(self.hop, "hop")
        check_at_most(check_positive_int(self.bandpass_order, "bandpass_order"),
                      _MAX_FILTER_ORDER, "bandpass_order")
        check_at_most(check_positive_int(self.notch_harmonics, "notch_harmonics"),
                      _MAX_NOTCH_HARMONICS, "notch_harmonics")
        if self.notch is not None:
            check_positive_float(self.notch, "notch")
        check_option(self.normalisation, "normalisation", {"instance", "fixed", "none"})
        check_text(self.units, "units")
        if self.bandpass is not None:
            if not isinstance(self.bandpass, (tuple, list)) or len(self.bandpass) != 2:
                raise ValueError(f"bandpass must be (low, high) in Hz or None, got "
                                 f"{shown(self.bandpass)}")
            low, high = (check_positive_float(f, "bandpass edge") for f in self.bandpass)
            object.__setattr__(self, "bandpass", (low, high))

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ModelFileError(f"preprocessing has unknown keys {sorted(unknown)}")
        d = dict(d)
        if d.get("bandpass") is not None:
            d["bandpass"] = tuple(d["bandpass"])
        return cls(**d)


@dataclass
class ModelFile:
    """A loaded model file. ``onnx`` is the serialized graph (bytes).

    ``architecture`` is what :func:`emgstream.nn.build_model` needs to rebuild the torch
    module that ``weights`` belong to; ``provenance`` and ``metrics`` are free-form dicts.
    """

    architecture: dict
    preprocessing: Preprocessing
    class_names: list[str]
    onnx: bytes
    weights: dict[str, np.ndarray]
    bank: dict[str, np.ndarray] | None = None
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    input_name: str = "emg"
    output_names: tuple[str, ...] = ("logits", "embedding")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        p = self.preprocessing
        return (f"<ModelFile {self.architecture.get('name', '?')}: {p.n_channels} ch @ "
                f"{p.sample_rate:g} Hz, window {p.window}, hop {p.hop}, "
                f"{self.n_classes} classes, {len(self.onnx) / 1e6:.1f} MB graph>")

    def check_stream(self, n_channels: int, sample_rate: float) -> None:
        """Refuse a stream that does not match, naming both sides."""
        p = self.preprocessing
        if n_channels != p.n_channels or abs(sample_rate - p.sample_rate) > 1e-6 * p.sample_rate:
            raise ModelFileError(
                f"stream has {n_channels} channels at {sample_rate:g} Hz but the model expects "
                f"{p.n_channels} channels at {p.sample_rate:g} Hz")


def save_model_file(path: str | Path, model: ModelFile) -> Path:
    """Write ``model`` to ``path`` (a zip archive; written to a temp name, then renamed),
    creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "emgstream-model",
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "preprocessing": asdict(model.preprocessing),
        "class_names": list(model.class_names),
        "input_name": model.input_name,
        "output_names": list(model.output_names),
        "provenance": model.provenance,
        "metrics": model.metrics,
    }
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=_json_default))
        zf.writestr("model.onnx", model.onnx)
        zf.writestr("weights.npz", _npz_bytes(model.weights))
        if model.bank is not None:
            zf.writestr("bank.npz", _npz_bytes(model.bank))
    tmp.replace(path)
    return path


def load_model_file(path: str | Path) -> ModelFile:
    """Load and validate a model file; raise :class:`ModelFileError` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ModelFileError(f"{path} is not an emgstream model file (not a zip archive)") from err
    with zf:
        members = _check_members(path, zf.infolist(), _MAX_MEMBER_BYTES)
        missing = [m for m in _REQUIRED if m not in members]
        if missing:
            raise ModelFileError(f"{path} lacks {missing}; a model file holds {list(_REQUIRED)}")
        raw_manifest = _read_member(path, zf, "manifest.json")
        try:
            manifest = json.loads(raw_manifest)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise ModelFileError(f"{path}: manifest.json is not valid JSON: {err}") from None
        _check_manifest(path, manifest)
        onnx_bytes = _read_member(path, zf, "model.onnx")
        check_onnx_graph(onnx_bytes, f"{path}: model.onnx")
        weights = _read_npz(path, _read_member(path, zf, "weights.npz"), "weights.npz")
        bank = _read_npz(path, _read_member(path, zf, "bank.npz"), "bank.npz") \
            if "bank.npz" in members else None
    try:
        preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: bad preprocessing in manifest: {err}") from err
    class_names = list(manifest["class_names"])
    if bank is not None:
        dim = manifest["architecture"].get("embed_dim")
        try:
            bank = check_bank(bank, dim if isinstance(dim, int) else None, len(class_names))
        except ModelFileError as err:
            raise ModelFileError(f"{path}: bank.npz: {err}") from None
    return ModelFile(
        architecture=manifest["architecture"], preprocessing=preprocessing,
        class_names=class_names, onnx=onnx_bytes, weights=weights, bank=bank,
        provenance=manifest.get("provenance", {}), metrics=manifest.get("metrics", {}),
        input_name=manifest["input_name"], output_names=tuple(manifest["output_names"]))


def check_bank(bank: dict, dim: int | None, n_classes: int) -> dict:
    """A zero-shot bank ``{"embeddings": (n, dim) finite float, "labels": (n,) int in
    [0, n_classes)}``, as float32 / int64; ``dim=None`` accepts any width."""
    if set(bank) != {"embeddings", "labels"}:
        raise ModelFileError(f"bank must hold 'embeddings' and 'labels', got {sorted(bank)}")
    emb, labels = np.asarray(bank["embeddings"]), np.asarray(bank["labels"])
    if emb.ndim != 2 or (dim is not None and emb.shape[1] != dim) or \
            labels.shape != (emb.shape[0],):
        raise ModelFileError(f"bank must be embeddings (n, {dim if dim else 'dim'}) and labels "
                             f"(n,), got {emb.shape} and {labels.shape}")
    if emb.dtype.kind != "f" or not np.isfinite(emb).all() or labels.dtype.kind not in "iu":
        raise ModelFileError(f"bank embeddings must be finite floats and labels integers, got "
                             f"{emb.dtype} and {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ModelFileError(f"bank labels must lie in [0, {n_classes}), got "
                             f"[{labels.min()}, {labels.max()}]")
    return {"embeddings": emb.astype(np.float32), "labels": labels.astype(np.int64)}


def check_onnx_graph(data: bytes, where: str = "the ONNX graph") -> None:
    """Refuse a graph that is not self-contained or steps outside what our exporter writes.

    Checked, in every graph including the bodies of If / Loop / Scan: no tensor (initializer,
    sparse initializer, ``Constant`` or other tensor attribute) keeps its data in an external
    file, no model-local functions or training graphs, only the standard operator domains,
    the default domain at an opset in :data:`ONNX_OPSETS`, and only :data:`ONNX_OPERATORS`.
    ONNX Runtime would read an external-data file (any path under the working directory, or
    process memory through its in-memory tag) into the graph while loading it, so this must
    run before the bytes reach an ``InferenceSession``. Raises :class:`ModelFileError`.
    """
    # onnx is a core dependency for this check: its generated classes parse the graph with
    # protobuf's C implementation (onnxruntime depends on protobuf already), which bounds
    # nesting and lengths. A hand-written walk over the wire format would be one more parser
    # of hostile bytes to get right. Imported here: `import emgstream.modelfile` stays light.
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(bytes(data))
    except DecodeError as err:
        raise ModelFileError(f"{where} is not an ONNX model: {err}") from None
    if not model.HasField("graph"):
        raise ModelFileError(f"{where} is not an ONNX model: it has no graph")
    graphs = list(_onnx_graphs(model.graph))
    for graph in graphs:
        for kind, tensor in _onnx_tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
                location = next((e.value for e in tensor.external_data if e.key == "location"),
                                "")
                raise ModelFileError(
                    f"{where}: {kind} {shown(tensor.name)} keeps its data in another file "
                    f"({shown(location)}); a model file's graph must be self-contained")
    if model.functions or model.training_info:
        raise ModelFileError(f"{where} defines {len(model.functions)} functions and "
                             f"{len(model.training_info)} training graphs; exported graphs "
                             f"have neither")
    for opset in model.opset_import:
        if opset.domain not in _ONNX_DOMAINS:
            raise ModelFileError(f"{where} imports the custom operator domain "
                                 f"{shown(opset.domain)}; only {sorted(_ONNX_DOMAINS)} are "
                                 f"accepted")
        if opset.domain in ("", "ai.onnx") and opset.version not in ONNX_OPSETS:
            raise ModelFileError(f"{where} uses opset {opset.version}; this emgstream accepts "
                                 f"opset {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1}")
    for graph in graphs:
        for node in graph.node:
            if node.domain not in _ONNX_DOMAINS:
                raise ModelFileError(f"{where} uses the operator {shown(node.op_type)} of "
                                     f"the custom domain {shown(node.domain)}; only "
                                     f"{sorted(_ONNX_DOMAINS)} are accepted")
            if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_OPERATORS:
                raise ModelFileError(f"{where} uses the operator {shown(node.op_type)}, which "
                                     f"no graph emgstream exports contains")


def _onnx_graphs(graph):
    """``graph`` and every subgraph in its nodes' attributes, depth first. Nesting is
    bounded by protobuf's own recursion limit on parsing."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _onnx_graphs(attr.g)
            for sub in attr.graphs:
                yield from _onnx_graphs(sub)


def _onnx_tensors(graph):
    """(kind, TensorProto) of every tensor one graph holds itself (not its subgraphs')."""
    for tensor in graph.initializer:
        yield "initializer", tensor
    for sparse in graph.sparse_initializer:
        yield "sparse initializer", sparse.values
        yield "sparse initializer", sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            kind = f"attribute {shown(attr.name)} of node {shown(node.name)}"
            tensors = ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + \
                    list(attr.sparse_tensors):
                tensors += [sparse.values, sparse.indices]
            for tensor in tensors:
                yield kind, tensor


def _check_members(path: str | Path, infos: list[zipfile.ZipInfo], limits: dict | int) -> dict:
    """Names, sizes and compression ratios of an archive's members, from its directory,
    before anything is decompressed. ``limits``: the allowed names and their sizes, or one
    size for any name (the arrays inside an npz)."""
    members = {}
    for info in infos:
        name = info.filename
        if name in members:
            raise ModelFileError(f"{path} holds member {shown(name)} twice")
        if isinstance(limits, dict) and name not in limits:
            raise ModelFileError(f"{path} has an unexpected member {shown(name)}")
        limit = limits[name] if isinstance(limits, dict) else limits
        if info.file_size > limit:
            raise ModelFileError(f"{path}: member {shown(name)} is {info.file_size} bytes, "
                                 f"over the limit of {limit}")
        if info.file_size > _MAX_COMPRESSION * info.compress_size + _COMPRESSION_SLACK:
            raise ModelFileError(
                f"{path}: member {shown(name)} would expand {info.compress_size} bytes to "
                f"{info.file_size}, more than {_MAX_COMPRESSION}:1 (a decompression bomb)")
        members[name] = info
    return members


def _read_member(path: Path, zf: zipfile.ZipFile, name: str) -> bytes:
    # zipfile stops at the declared size, so a lying header costs at most the checked limit
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError) as err:  # RuntimeError: encrypted; NotImplementedError: method
        raise ModelFileError(f"{path}: member {name!r} cannot be read: {err}") from None


def _check_manifest(path: Path, manifest) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != "emgstream-model":
        raise ModelFileError(f"{path}: manifest.json is not an emgstream model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {shown(version)}, this emgstream "
                             f"reads version {FORMAT_VERSION}")
    optional = ("provenance", "metrics")
    for key, kind in (("architecture", dict), ("preprocessing", dict), ("class_names", list),
                      ("input_name", str), ("output_names", list), ("provenance", dict),
                      ("metrics", dict)):
        if (key in manifest or key not in optional) and not isinstance(manifest.get(key), kind):
            raise ModelFileError(f"{path}: manifest key {key!r} missing or not a "
                                 f"{kind.__name__}")
    names = manifest["class_names"]
    if not 0 < len(names) <= _MAX_CLASSES or \
            not all(isinstance(c, str) and len(c) <= MAX_TEXT for c in names):
        raise ModelFileError(f"{path}: class_names must be a non-empty list of at most "
                             f"{_MAX_CLASSES} strings of at most {MAX_TEXT} characters")
    outputs = manifest["output_names"]
    if not 0 < len(outputs) <= _MAX_OUTPUTS or \
            not all(isinstance(o, str) and len(o) <= MAX_TEXT for o in outputs) or \
            len(manifest["input_name"]) > MAX_TEXT:
        raise ModelFileError(f"{path}: input_name and output_names must be names of at most "
                             f"{MAX_TEXT} characters, 1..{_MAX_OUTPUTS} outputs")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _read_npz(path: Path, data: bytes, member: str) -> dict[str, np.ndarray]:
    where = f"{path}: {member}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            infos = _check_members(where, inner.infolist(), _MAX_MEMBER_BYTES[member])
            for info in infos.values():
                _check_npy_header(where, inner, info)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ModelFileError(f"{where} is not a valid array archive: {err}") from err


def _check_npy_header(where: str, inner: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """An npz member's dtype and shape, from its header, against the bytes it holds: numpy
    allocates the declared shape before reading, so a header may not promise more."""
    if not info.filename.endswith(".npy"):
        raise ModelFileError(f"{where} has a member {shown(info.filename)} that is not an array")
    with inner.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version not in _NPY_VERSIONS:
            raise ModelFileError(f"{where}: array {shown(info.filename)} has npy format "
                                 f"{version}, expected one of {list(_NPY_VERSIONS)}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(fp)
        held = info.file_size - fp.tell()
    if dtype.kind not in _NPY_KINDS or dtype.fields is not None:
        raise ModelFileError(f"{where}: array {shown(info.filename)} has dtype {dtype}; "
                             f"expected numbers (bool, integer or float)")
    declared = math.prod(shape) * dtype.itemsize
    if declared != held:
        raise ModelFileError(f"{where}: array {shown(info.filename)} declares shape {shape} "
                             f"of {dtype} ({declared} bytes) but holds {held} bytes")


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a model manifest")
