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

The file is untrusted input: member names and sizes are checked before anything is read,
arrays are loaded with ``allow_pickle=False``, and a missing or malformed part is an error
that names it. Loading needs numpy only; torch is not imported here.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._checks import check_option, check_positive_float, check_positive_int

__all__ = ["FORMAT_VERSION", "Preprocessing", "ModelFile", "ModelFileError",
           "load_model_file", "save_model_file"]

FORMAT_VERSION = 1
_MAX_MEMBER_BYTES = {"manifest.json": 4 << 20, "model.onnx": 256 << 20,
                     "weights.npz": 512 << 20, "bank.npz": 256 << 20}
_REQUIRED = ("manifest.json", "model.onnx", "weights.npz")


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
        check_positive_float(self.sample_rate, "sample_rate")
        check_positive_int(self.n_channels, "n_channels")
        check_positive_int(self.window, "window")
        check_positive_int(self.hop, "hop")
        check_option(self.normalisation, "normalisation", {"instance", "fixed", "none"})
        if self.bandpass is not None:
            object.__setattr__(self, "bandpass", tuple(float(f) for f in self.bandpass))

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
        members = {info.filename: info for info in zf.infolist()}
        missing = [m for m in _REQUIRED if m not in members]
        if missing:
            raise ModelFileError(f"{path} lacks {missing}; a model file holds {list(_REQUIRED)}")
        for name, info in members.items():
            if name not in _MAX_MEMBER_BYTES:
                raise ModelFileError(f"{path} has an unexpected member {name!r}")
            if info.file_size > _MAX_MEMBER_BYTES[name]:
                raise ModelFileError(f"{path}: member {name!r} is {info.file_size} bytes, "
                                     f"over the limit of {_MAX_MEMBER_BYTES[name]}")
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ModelFileError(f"{path}: manifest.json is not valid JSON: {err}") from err
        _check_manifest(path, manifest)
        onnx_bytes = zf.read("model.onnx")
        weights = _read_npz(path, zf.read("weights.npz"), "weights.npz")
        bank = _read_npz(path, zf.read("bank.npz"), "bank.npz") if "bank.npz" in members else None
    try:
        preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: bad preprocessing in manifest: {err}") from err
    return ModelFile(
        architecture=manifest["architecture"], preprocessing=preprocessing,
        class_names=list(manifest["class_names"]), onnx=onnx_bytes, weights=weights, bank=bank,
        provenance=manifest.get("provenance", {}), metrics=manifest.get("metrics", {}),
        input_name=manifest["input_name"], output_names=tuple(manifest["output_names"]))


def _check_manifest(path: Path, manifest) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != "emgstream-model":
        raise ModelFileError(f"{path}: manifest.json is not an emgstream model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {version!r}, this emgstream reads "
                             f"version {FORMAT_VERSION}")
    for key, kind in (("architecture", dict), ("preprocessing", dict), ("class_names", list),
                      ("input_name", str), ("output_names", list)):
        if not isinstance(manifest.get(key), kind):
            raise ModelFileError(f"{path}: manifest key {key!r} missing or not a "
                                 f"{kind.__name__}")
    if not manifest["class_names"] or not all(isinstance(c, str) for c in manifest["class_names"]):
        raise ModelFileError(f"{path}: class_names must be a non-empty list of strings")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _read_npz(path: Path, data: bytes, member: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path}: {member} is not a valid array archive: {err}") from err


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a model manifest")
