"""Torch modules: the patch-Transformer encoder, MAE, CPEP, EMBridge, heads, ONNX export.

- :class:`EncoderConfig`, :class:`PatchEncoder`: the EMG / pose encoder (CPEP 2.2).
- :class:`GestureModel`, :func:`build_model`: the deployable model,
  ``(batch, channels, window) -> (logits, embedding)``, with in-graph normalisation.
- :class:`MAE`: masked-autoencoder pre-training of an encoder.
- :class:`CPEP`, :class:`EMBridge`: alignment of the EMG model to a frozen pose encoder.
- :func:`knn_predict`, :func:`knn_vote`: zero-shot k-NN over a pose-embedding bank.
- :func:`export_onnx`, :func:`load_model`: model <-> ONNX graph / model file.
"""

from __future__ import annotations

from ._cpep import CPEP, LearnableTemperature, PoseAnchor, symmetric_info_nce
from ._embridge import EMBridge, QFormer
from ._encoder import EncoderConfig, PatchEncoder
from ._export import export_onnx, load_model
from ._heads import knn_predict, knn_vote
from ._mae import MAE
from ._model import GestureModel, Normalisation, build_model

__all__ = ["EncoderConfig", "PatchEncoder", "GestureModel", "Normalisation", "QFormer", "MAE",
           "CPEP", "EMBridge", "PoseAnchor", "LearnableTemperature", "symmetric_info_nce",
           "build_model", "export_onnx", "load_model", "knn_predict", "knn_vote"]
