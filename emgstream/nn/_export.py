"""ONNX export of a :class:`GestureModel` and rebuilding one from a model file."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch

from ..modelfile import ModelFile, ModelFileError
from ._model import GestureModel, build_model

logger = logging.getLogger(__name__)

OPSET = 18


def export_onnx(model: GestureModel) -> bytes:
    """The inference graph: ``emg`` float32 (batch, channels, window) -> ``logits``,
    ``embedding``; dynamic batch axis; normalisation included.

    Uses the TorchScript-based exporter (``dynamo=False``): in torch 2.13 it is still present,
    needs no extra packages and gives a graph whose outputs match eager torch to ~1e-6
    (``tests/test_export_parity.py``). The model is exported in eval mode on CPU in float32.
    """
    was_training = model.training
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, model.n_channels, model.window)
    buf = io.BytesIO()
    try:
        model.cpu().float()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation chatter
            torch.onnx.export(
                model, (example,), buf, input_names=["emg"],
                output_names=["logits", "embedding"],
                dynamic_axes={"emg": {0: "batch"}, "logits": {0: "batch"},
                              "embedding": {0: "batch"}},
                opset_version=OPSET, dynamo=False)
    finally:
        model.to(device).train(was_training)
    return buf.getvalue()


def load_model(model_file: ModelFile) -> GestureModel:
    """Rebuild the torch module of a model file and load its weights (for adaptation).

    Raises :class:`~emgstream.modelfile.ModelFileError` when the architecture is not one we
    build, or when the weights do not fit it (missing, unexpected or mis-shaped arrays).
    """
    try:
        model = build_model(model_file.architecture)
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"model file architecture cannot be built: {err}") from err
    expected = model.state_dict()
    weights = model_file.weights
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"model file weights do not fit the architecture: missing "
                             f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                             f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    state = {}
    for name, ref in expected.items():
        arr = weights[name]
        if tuple(arr.shape) != tuple(ref.shape):
            raise ModelFileError(f"model file weight {name!r} has shape {tuple(arr.shape)}, the "
                                 f"architecture needs {tuple(ref.shape)}")
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise ModelFileError(f"model file weight {name!r} is not finite floating point "
                                 f"(dtype {arr.dtype})")
        state[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    model.load_state_dict(state)
    if model.n_classes != model_file.n_classes or model.class_names != model_file.class_names:
        raise ModelFileError(f"model file class names {model_file.class_names} differ from the "
                             f"architecture's {model.class_names}")
    return model.eval()
