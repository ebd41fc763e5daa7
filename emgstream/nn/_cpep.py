"""CPEP (NeurIPS 2025 workshop): align the EMG encoder to a frozen pose encoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._encoder import PatchEncoder
from ._model import GestureModel

#: CLIP's clamp on the learnable logit scale (1 / temperature <= 100)
_MAX_LOGIT_SCALE = math.log(100.0)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients and eval mode; owners keep it in eval mode in their ``train()``."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class PoseAnchor(nn.Module):
    """The frozen pose MAE encoder: pose (batch, 20, time) radians -> v (batch, d), unit norm."""

    def __init__(self, encoder: PatchEncoder) -> None:
        super().__init__()
        self.encoder = freeze(encoder)

    def train(self, mode: bool = True) -> "PoseAnchor":
        super().train(mode)
        self.encoder.eval()
        return self

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    @torch.no_grad()
    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(pose)[:, 0].float(), dim=-1)


class LearnableTemperature(nn.Module):
    """CLIP-style log-parameterised logit scale 1/tau, clamped to tau >= 0.01."""

    def __init__(self, init: float = 0.02) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=_MAX_LOGIT_SCALE).exp()

    @property
    def temperature(self) -> float:
        return float(1.0 / self.forward().detach())


def symmetric_info_nce(u: torch.Tensor, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CPEP's loss: u, v (batch, d) unit norm; s_ij = u_i . v_j / tau;
    L = 1/(2N) sum_i [-log softmax_j(s_ij)_i - log softmax_j(s_ji)_i]."""
    logits = scale * u @ v.T
    target = torch.arange(u.shape[0], device=u.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class CPEP(nn.Module):
    """EMG model (encoder + projection head) aligned to the frozen pose anchor.

    ``freeze_emg_encoder`` is the CPEP-E_x-Frozen ablation (only the head trains).
    forward(emg (batch, C, T), pose (batch, 20, T)) -> (loss, logs).
    """

    def __init__(self, emg_model: GestureModel, pose_encoder: PatchEncoder,
                 temperature: float = 0.02, freeze_emg_encoder: bool = False) -> None:
        super().__init__()
        if emg_model.head_type != "projection":
            raise ValueError("CPEP aligns a projection-head model; use EMBridge for a Q-Former")
        self.emg = emg_model
        self.pose = PoseAnchor(pose_encoder)
        if self.pose.dim != emg_model.embed_dim:
            raise ValueError(f"embed_dim ({emg_model.embed_dim}) must equal the pose encoder's "
                             f"d_model ({self.pose.dim})")
        self.freeze_emg_encoder = freeze_emg_encoder
        if freeze_emg_encoder:
            freeze(emg_model.encoder)
        self.temperature = LearnableTemperature(temperature)

    def train(self, mode: bool = True) -> "CPEP":
        super().train(mode)
        if self.freeze_emg_encoder:
            self.emg.encoder.eval()
        return self

    def forward(self, emg: torch.Tensor, pose: torch.Tensor):
        u = self.emg.embed(emg).float()
        v = self.pose(pose)
        loss = symmetric_info_nce(u, v, self.temperature())
        return loss, {"tau": self.temperature.temperature}
