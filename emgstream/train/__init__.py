"""Offline training: recipes (TOML), the trainer (DDP via torchrun), export to a model file.

- :func:`to_model_file`: a trained :class:`~emgstream.nn.GestureModel` -> model file.
- :func:`make_test_model`: a small random-weight model file for tests.
"""

from __future__ import annotations

from ._modelfile import make_test_model, to_model_file

__all__ = ["make_test_model", "to_model_file"]
