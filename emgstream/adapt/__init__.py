"""EMG-UP source-free personalization (``../shared/papers/emg-up.txt``) and its baselines.

- :mod:`~emgstream.adapt.ssa`: stage 1, sequence-cross perspective contrastive learning
  (eq. 4-6); :mod:`~emgstream.adapt.ssp`: stage 2, pseudo-label fine-tuning with an EMA
  teacher (eq. 7-10).
- :func:`adapt`: offline adaptation of a model to one user's unlabelled windows with
  EMG-UP+ (:data:`DEFAULT_METHOD`: EMG-UP's framework with the departures listed in
  :mod:`~emgstream.adapt.methods`), the paper's EMG-UP, either stage alone, AdaBN, SHOT-IM or
  plain pseudo-labelling (:data:`METHODS`).
- :mod:`~emgstream.adapt.classical`: the classical bar, LDA on Hudgins features (raw,
  per-person z-scored, k-means self-calibrated).
- :class:`CollapseGuard`: label-free collapse detection with rollback (offline and online).
- :class:`OnlineAdapter`: the engine of the live pipeline's adapter process.
- :func:`evaluate`: the cross-user protocol of ``emgstream eval``.

Names resolve lazily: the live pipeline unpickles :class:`OnlineStats` from its adapter
process and must not import torch by doing so.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_LAZY = {
    "METHODS": "methods", "DEFAULT_METHOD": "methods", "AdaptConfig": "methods", "AdaptReport": "methods",
    "adapt": "methods", "adabn": "methods",
    "CollapseGuard": "guard", "GuardCheck": "guard", "GuardConfig": "guard",
    "OnlineAdapter": "online", "OnlineConfig": "online", "OnlineStats": "_stats",
    "EvalConfig": "evaluate", "UserData": "evaluate", "evaluate": "evaluate",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
