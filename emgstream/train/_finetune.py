"""The ``finetune`` stage: supervised end-to-end fine-tuning of the aligned gesture model.

Departure from CPEP's evaluation protocol, on purpose: the papers score an aligned encoder by
*linear probing* (frozen encoder, linear classifier; the ``head`` stage, whose scores the
model file keeps as ``linear_probe_*``). The shipped model is a deployed recogniser, not an
evaluation, so after the probe this stage trains the whole EMG model (encoder, projection
head, classifier) on the training users' gesture labels. The encoder and projection learn
at ``encoder_lr_scale`` times the classifier's rate, so that the aligned representation is
adjusted rather than overwritten.

The zero-shot bank holds *pose*-encoder embeddings and zero-shot compares the EMG embedding
with them, so cross-entropy alone would let the EMG embedding drift from the pose space. The
loss therefore keeps CPEP's symmetric InfoNCE against the frozen pose [CLS], weighted by
``align_weight`` (0 turns it off); the model file reports the zero-shot accuracy measured
after fine-tuning.

Stage options (``[stages.finetune.options]``): ``encoder_lr_scale`` (default 0.1),
``align_weight`` (default 0.5).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import GestureModel, LearnableTemperature, PatchEncoder, PoseAnchor, symmetric_info_nce
from ._trainer import Env, StageConfig, fit

OPTIONS = {"encoder_lr_scale": 0.1, "align_weight": 0.5}


class Classify(nn.Module):
    """Plain supervised training of a gesture model: cross-entropy on its logits.

    forward(emg (batch, C, T), labels (batch,)) -> (loss, logs). The loss module that
    :func:`~emgstream.train.fit` trains when there is no pose to align to (the cross-user
    source model of ``emgstream eval``).
    """

    def __init__(self, model: GestureModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, emg: torch.Tensor, labels: torch.Tensor):
        logits = self.model(emg)[0].float()
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": float(ce.detach()),
                    "train_acc": float((logits.argmax(1) == labels).float().mean())}


class FineTune(nn.Module):
    """Cross-entropy on gesture labels plus ``align_weight`` x CPEP's InfoNCE to the frozen
    pose encoder.

    forward(emg (batch, C, T), pose (batch, 20, T), labels (batch,)) -> (loss, logs).
    """

    def __init__(self, model: GestureModel, pose_encoder: PatchEncoder,
                 align_weight: float = 0.5, temperature: float = 0.02) -> None:
        super().__init__()
        if align_weight < 0:
            raise ValueError(f"align_weight must be >= 0, got {align_weight}")
        self.model = model
        self.align_weight = float(align_weight)
        if self.align_weight:
            self.pose = PoseAnchor(pose_encoder)
            self.temperature = LearnableTemperature(temperature)

    def forward(self, emg: torch.Tensor, pose: torch.Tensor, labels: torch.Tensor):
        logits, u = self.model(emg)
        ce = F.cross_entropy(logits.float(), labels)
        logs = {"ce": float(ce.detach()),
                "train_acc": float((logits.argmax(1) == labels).float().mean())}
        if not self.align_weight:
            return ce, logs
        nce = symmetric_info_nce(u.float(), self.pose(pose), self.temperature())
        logs["nce"] = float(nce.detach())
        return ce + self.align_weight * nce, logs


def run_finetune(model: GestureModel, pose_encoder: PatchEncoder, train, cfg: StageConfig,
                 out_dir: str | Path, env: Env, seed: int = 0, rotation: int = 0,
                 temperature: float = 0.02) -> GestureModel:
    """Fine-tune ``model`` (its classifier already fitted by the linear probe) end to end on
    ``train``'s labelled windows (every label a class of the model), with channel-rotation
    augmentation of up to ``rotation`` electrodes. Returns the model, on the CPU, in eval
    mode; checkpoints and resume as every stage (:func:`fit`)."""
    unknown = set(cfg.options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"finetune: unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    opts = {**OPTIONS, **cfg.options}
    if not 0 < opts["encoder_lr_scale"] <= 1:
        raise ValueError(f"finetune: encoder_lr_scale must be in (0, 1], "
                         f"got {opts['encoder_lr_scale']}")
    if len(train) and int(train.labels.min()) < 0:
        raise ValueError("finetune needs labelled windows only (relabel the training set)")
    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(True)
    tuner = FineTune(model, pose_encoder, opts["align_weight"], temperature)
    scale = float(opts["encoder_lr_scale"])
    fit(tuner, train.rotated(rotation), cfg, out_dir, env, seed=seed, inputs=(0, 1, 2),
        desc="finetune", lr_scales={"model.encoder.": scale, "model.projection.": scale,
                                    "model.qformer.": scale})
    return model.cpu().eval()
