"""Torch modules: the patch-Transformer encoder, MAE, CPEP, EMBridge, heads, ONNX export.

- :class:`EncoderConfig`, :class:`PatchEncoder`: the EMG / pose encoder (CPEP 2.2).
- :class:`GestureModel`, :func:`build_model`: the deployable model,
  ``(batch, channels, window) -> (logits, embedding)``, with in-graph normalisation.
- :func:`export_onnx`, :func:`load_model`: model <-> ONNX graph / model file.
"""

from __future__ import annotations

from ._embridge import QFormer
from ._encoder import EncoderConfig, PatchEncoder
from ._export import export_onnx, load_model
from ._model import GestureModel, Normalisation, build_model

__all__ = ["EncoderConfig", "PatchEncoder", "GestureModel", "Normalisation", "QFormer",
           "build_model", "export_onnx", "load_model"]
