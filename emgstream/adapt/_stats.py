"""The online adapter's counters, in a module without torch.

The adapter runs in a child process and reports these to the live pipeline, whose process
must not import torch: unpickling them there imports only this module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OnlineStats"]


@dataclass
class OnlineStats:
    """What the online adapter has done since its start or last reset (all counters grow)."""

    windows_seen: int = 0
    steps: int = 0  #: optimiser steps
    pseudo_labels_accepted: int = 0  #: kept pseudo-labels used in steps (with repetition)
    acceptance: float = 0.0  #: fraction of the buffer kept at the last step
    teacher_updates: int = 0
    agreement_with_source: float = float("nan")  #: at the last guard check
    balance: float = float("nan")  #: class balance at the last guard check
    rollbacks: int = 0
    models_ready: int = 0
    seconds_in_step: float = 0.0
