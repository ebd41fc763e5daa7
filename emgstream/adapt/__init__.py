"""EMG-UP source-free personalization (``../shared/papers/emg-up.txt``) and its baselines.

- :mod:`~emgstream.adapt.ssa`: stage 1, sequence-cross perspective contrastive learning
  (eq. 4-6); :mod:`~emgstream.adapt.ssp`: stage 2, pseudo-label fine-tuning with an EMA
  teacher (eq. 7-10).
- :func:`adapt`: offline adaptation of a model to one user's unlabelled windows with EMG-UP,
  either stage alone, AdaBN, SHOT-IM or plain pseudo-labelling (:data:`METHODS`).
- :class:`CollapseGuard`: label-free collapse detection with rollback (offline and online).
- :class:`OnlineAdapter`: the live pipeline's adaptation thread's engine.
- :func:`evaluate`: the cross-user protocol of ``emgstream eval``.
"""

from __future__ import annotations

from .evaluate import EvalConfig, UserData, evaluate
from .guard import CollapseGuard, GuardCheck, GuardConfig
from .methods import METHODS, AdaptConfig, AdaptReport, adabn, adapt
from .online import OnlineAdapter, OnlineConfig, OnlineStats

__all__ = ["METHODS", "AdaptConfig", "AdaptReport", "adapt", "adabn", "CollapseGuard",
           "GuardCheck", "GuardConfig", "OnlineAdapter", "OnlineConfig", "OnlineStats",
           "EvalConfig", "UserData", "evaluate"]
