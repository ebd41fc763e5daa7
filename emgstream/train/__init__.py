"""Offline training: recipes (TOML), the trainer (DDP via torchrun), export to a model file.

- :func:`load_recipe`, :func:`run_recipe`: ``emgstream train RECIPE.toml``.
- :func:`fit`, :class:`StageConfig`, :func:`init_distributed`: one stage's training loop;
  :class:`Classify`: its loss module for plain supervised training.
- :class:`WindowSet`, :func:`windows_from_streams`: windows of synthetic data in memory;
  :class:`RecordingWindows`: windows of HDF5 recordings, read lazily by DataLoader workers;
  :class:`LabelledWindows`: labelled windows in memory with rotation and gain augmentation.
- :func:`to_model_file`, :func:`export_checkpoint`: trained model -> model file.
- :func:`make_test_model`: a small random-weight model file for tests.
"""

from __future__ import annotations

from ._data import LabelledWindows, RecordingWindows, WindowSet, windows_from_streams
from ._eval import macro_accuracy
from ._finetune import Classify
from ._modelfile import export_checkpoint, make_test_model, to_model_file
from ._pipeline import run_recipe
from ._recipe import STAGES, DataConfig, ModelConfig, Recipe, load_recipe
from ._trainer import Env, StageConfig, fit, init_distributed

__all__ = ["STAGES", "Classify", "DataConfig", "Env", "LabelledWindows", "ModelConfig", "Recipe",
           "RecordingWindows", "StageConfig", "WindowSet",
           "export_checkpoint", "fit", "init_distributed", "load_recipe", "macro_accuracy",
           "make_test_model", "run_recipe", "to_model_file", "windows_from_streams"]
