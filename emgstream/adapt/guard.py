"""A guard against adaptation collapse, usable offline and online.

Source-free adaptation can collapse: the model drifts to predicting one or two classes for
everything (DESIGN.md: SHOT-IM did this for some 3DC people). The user cannot check labels,
so the guard watches label-free signals on a fixed reference set of the user's windows,
against the source model's predictions on the same windows:

- class balance: entropy of the mean prediction, as a fraction of the source model's on
  the same windows (a relative floor, so a buffer that is mostly rest is not called a
  collapse);
- agreement with the source model's argmax (a floor: adaptation should refine the source's
  decisions, not replace them wholesale);
- mean per-sample entropy, reported (falling entropy is the goal of adaptation, not a fault).

When a check fails, the guarded modules are restored to the last state that passed.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["GuardConfig", "GuardCheck", "CollapseGuard", "prediction_stats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardConfig:
    min_balance_ratio: float = 0.7  #: class balance >= this x the source model's balance
    min_agreement: float = 0.4  #: argmax agreement with the source model


@dataclass(frozen=True)
class GuardCheck:
    """One check: the label-free statistics and whether they passed."""

    ok: bool
    balance: float  #: entropy of the mean prediction / log(classes), in [0, 1]
    source_balance: float
    agreement: float  #: fraction of windows with the source model's argmax
    mean_entropy: float  #: mean per-window entropy / log(classes)


@torch.no_grad()
def prediction_stats(probs: torch.Tensor) -> tuple[float, float]:
    """(balance, mean entropy) of probabilities (n, classes), both normalised to [0, 1]."""
    log_c = math.log(probs.shape[1])
    mean = probs.mean(dim=0)
    balance = float(-(mean * mean.clamp_min(1e-12).log()).sum()) / log_c
    entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()) / log_c
    return balance, entropy


@torch.no_grad()
def _probs(model, windows: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([F.softmax(model(windows[i:i + batch_size])[0], dim=-1)
                     for i in range(0, len(windows), batch_size)])
    model.train(was_training)
    return out


class CollapseGuard:
    """Checks a model on reference windows and keeps the last good state of some modules.

    Parameters
    ----------
    source_model : GestureModel
        The un-adapted model; its predictions on ``reference`` are the yardstick.
    reference : Tensor (n, channels, window)
        The user's windows (unlabelled) on which every check runs.
    modules : dict of name -> nn.Module or optimizer
        What a rollback restores (student, teacher, their optimizer...).
    """

    def __init__(self, source_model, reference: torch.Tensor, modules: dict,
                 config: GuardConfig = GuardConfig()) -> None:
        self.config = config
        self.modules = modules
        self.set_reference(source_model, reference)
        self.rollbacks = 0
        self.checks = 0
        self.last: GuardCheck | None = None
        self._good = self._snapshot()

    def set_reference(self, source_model, reference: torch.Tensor) -> None:
        """Replace the reference windows (online: the buffer moves on)."""
        self.reference = reference
        source = _probs(source_model, reference)
        self._source_argmax = source.argmax(dim=1)
        self._source_balance, _ = prediction_stats(source)

    def evaluate(self, model) -> GuardCheck:
        probs = _probs(model, self.reference)
        balance, entropy = prediction_stats(probs)
        agreement = float((probs.argmax(dim=1) == self._source_argmax).float().mean())
        ok = (balance >= self.config.min_balance_ratio * self._source_balance
              and agreement >= self.config.min_agreement)
        return GuardCheck(ok, balance, self._source_balance, agreement, entropy)

    def check(self, model) -> GuardCheck:
        """Check ``model``; keep the guarded state when it passes, restore it when not."""
        self.checks += 1
        result = self.evaluate(model)
        self.last = result
        if result.ok:
            self._good = self._snapshot()
        else:
            self.rollbacks += 1
            logger.warning("adaptation guard: collapse suspected (balance %.2f vs source %.2f, "
                           "agreement %.2f); rolling back", result.balance,
                           result.source_balance, result.agreement)
            self._restore()
        return result

    def _snapshot(self) -> dict:
        return {name: copy.deepcopy(m.state_dict()) for name, m in self.modules.items()}

    def _restore(self) -> None:
        for name, m in self.modules.items():
            m.load_state_dict(copy.deepcopy(self._good[name]))

    def __repr__(self) -> str:
        return (f"<CollapseGuard {len(self.reference)} reference windows, {self.checks} "
                f"checks, {self.rollbacks} rollbacks>")
