"""From a trained :class:`~emgstream.nn.GestureModel` to a :class:`~emgstream.modelfile.ModelFile`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..modelfile import ModelFile, ModelFileError, Preprocessing, check_bank
from ..nn import EncoderConfig, GestureModel, export_onnx

#: synthetic-style class names for :func:`make_test_model`
_TEST_CLASSES = ("rest", "fist", "open", "pinch", "point")


def to_model_file(model: GestureModel, preprocessing: Preprocessing, class_names=None,
                  bank: dict | None = None, provenance: dict | None = None,
                  metrics: dict | None = None) -> ModelFile:
    """Package ``model`` (exported to ONNX, weights as float32 arrays) with its metadata.

    ``bank``: optional zero-shot bank ``{"embeddings": (n, dim), "labels": (n,)}`` whose labels
    index ``class_names``. Refuses a preprocessing or class list that disagrees with the model.
    """
    class_names = list(model.class_names if class_names is None else class_names)
    if class_names != model.class_names:
        raise ModelFileError(f"class_names {class_names} differ from the model's "
                             f"{model.class_names}")
    p = preprocessing
    if (p.n_channels, p.window, p.hop) != (model.n_channels, model.window, model.hop):
        raise ModelFileError(
            f"preprocessing says {p.n_channels} channels, window {p.window}, hop {p.hop}; the "
            f"model has {model.n_channels} channels, window {model.window}, hop {model.hop}")
    if p.normalisation != model.normalisation.mode:
        raise ModelFileError(f"preprocessing normalisation {p.normalisation!r} differs from the "
                             f"model's {model.normalisation.mode!r}")
    if bank is not None:
        bank = check_bank(bank, model.embed_dim, len(class_names))
    weights = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    return ModelFile(architecture=model.architecture, preprocessing=preprocessing,
                     class_names=class_names, onnx=export_onnx(model), weights=weights,
                     bank=bank, provenance=dict(provenance or {}), metrics=dict(metrics or {}))


def make_test_model(n_channels: int = 16, rate: float = 2000.0, classes=_TEST_CLASSES,
                    seed: int = 0, window_s: float = 0.4, hop_s: float = 0.02,
                    normalisation: str = "instance") -> ModelFile:
    """A small, randomly initialised, real model file for tests (fast to build and run).

    Patches are 25 ms (50 samples at 2 kHz) and the window 16 patches (400 ms): 17 tokens
    with [CLS], as the shipped model (12.5 ms patches, 200 ms); the encoder is tiny (d=32,
    1 layer). The zero-shot bank holds 8 random unit embeddings per class.
    """
    patch = max(1, round(0.025 * rate))
    window = max(patch, round(window_s * rate) // patch * patch)
    hop = max(1, round(hop_s * rate))
    classes = [str(c) for c in classes]
    torch.manual_seed(seed)
    model = GestureModel(EncoderConfig(n_channels, window, patch, d_model=32, n_layers=1,
                                       n_heads=4, mlp_ratio=2.0),
                         classes, embed_dim=32, hop=hop, normalisation=normalisation,
                         sample_rate=float(rate)).eval()
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((8 * len(classes), 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    bank = {"embeddings": emb, "labels": np.repeat(np.arange(len(classes)), 8)}
    prep = Preprocessing(sample_rate=float(rate), n_channels=n_channels, window=window, hop=hop,
                         normalisation=normalisation)
    return to_model_file(model, prep, classes, bank=bank,
                         provenance={"recipe": "make_test_model", "seed": seed,
                                     "trained": False}, metrics={})


def export_checkpoint(path) -> ModelFile:
    """The model file of a finished recipe's ``model.pt`` (see ``run_recipe``)."""
    from ..nn import build_model

    if Path(path).is_dir():
        raise ModelFileError(f"{path} is a folder, not a recipe's model.pt; a recipe without "
                             "a head stage trains encoders only and has no model to export")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"checkpoint {str(path)!r} does not exist") from None
    except Exception as err:  # torch raises several kinds for a damaged or foreign file
        raise ModelFileError(f"{path} is not a readable emgstream checkpoint: {err}") from err
    missing = {"architecture", "state_dict", "preprocessing"} - set(ckpt)
    if missing:
        raise ModelFileError(f"{path} lacks {sorted(missing)}; is it a recipe's model.pt?")
    model = build_model(ckpt["architecture"])
    model.load_state_dict(ckpt["state_dict"])
    prep = Preprocessing.from_dict(dict(ckpt["preprocessing"]))
    bank = ckpt.get("bank")
    bank = {k: v.numpy() for k, v in bank.items()} if bank is not None else None
    return to_model_file(model.eval(), prep, model.class_names, bank=bank,
                         provenance=ckpt.get("provenance"), metrics=ckpt.get("metrics"))
