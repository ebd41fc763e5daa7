"""EMG-UP stage 2, pseudo-label-guided fine-tuning (SSP), eq. 7-10.

- eq. 7: the teacher's argmax is the pseudo-label;
- eq. 8: a pseudo-label is kept when its confidence (the teacher's softmax maximum) is
  strictly above xi = 0.8;
- the paper's sequence-level strategy (xi = 0.8, N_c = 15, its Table 3) is not spelled out;
  we read it as temporal consistency: a window is kept only inside a run of at least N_c
  consecutive windows of one recording that all pass eq. 8 with the same pseudo-label. A
  gesture is held for hundreds of milliseconds, so an isolated confident window between
  disagreeing neighbours is more likely a transition or an error. ``n_consecutive=1`` is
  eq. 8 alone;
- eq. 9: cross-entropy of the student on the kept windows, averaged over the kept windows
  (eq. 9 writes 1/N_T over the target set; averaging over the kept ones keeps the step size
  independent of the acceptance rate);
- eq. 10: EMA of the student's parameters into the teacher, alpha = 0.996, after every step.
  Only parameters are averaged: buffers (the fixed input normalisation) stay the teacher's
  own, so the teacher never takes over statistics from the student (the failure DESIGN.md
  records for batch-norm CNNs on 3DC).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["confident_mask", "consistent_runs", "teacher_outputs", "pseudo_labels", "ema_update",
           "ssp_loss",
           "centroid_labels", "information_maximisation"]


def confident_mask(confidence, xi: float = 0.8):
    """Eq. 8: True where ``confidence`` > ``xi`` (strictly)."""
    return confidence > xi


def consistent_runs(labels: np.ndarray, keep: np.ndarray, segments: np.ndarray,
                    n_consecutive: int) -> np.ndarray:
    """Keep only windows inside runs of >= ``n_consecutive`` kept windows with one label.

    labels, keep, segments: (n,) in time order; a run never crosses a change of segment
    (recording). Returns a boolean (n,) mask, a subset of ``keep``.
    """
    keep = np.asarray(keep, bool)
    if n_consecutive <= 1:
        return keep.copy()
    labels = np.asarray(labels)
    segments = np.asarray(segments)
    # a run breaks where keep is False, where the label changes, or where the segment changes
    breaks = np.ones(len(labels) + 1, bool)
    breaks[1:-1] = ((labels[1:] != labels[:-1]) | (segments[1:] != segments[:-1])
                    | ~keep[1:] | ~keep[:-1])
    starts = np.flatnonzero(breaks)
    out = np.zeros(len(labels), bool)
    for a, b in zip(starts[:-1], starts[1:]):
        if keep[a] and b - a >= n_consecutive:
            out[a:b] = True
    return out


@torch.no_grad()
def teacher_outputs(model, windows: torch.Tensor, batch_size: int = 256):
    """(probabilities (n, classes), embeddings (n, dim)) of ``model`` on (n, channels,
    window), in eval mode and batches; the model's mode is restored."""
    was_training = model.training
    model.eval()
    outs = [model(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
    model.train(was_training)
    return (torch.cat([F.softmax(o[0], dim=-1) for o in outs]),
            torch.cat([o[1] for o in outs]))


def pseudo_labels(model, windows: torch.Tensor, batch_size: int = 256):
    """Eq. 7: (labels (n,) long, confidence (n,) float) of ``model`` on (n, channels, window)."""
    confidence, labels = teacher_outputs(model, windows, batch_size)[0].max(dim=-1)
    return labels, confidence


@torch.no_grad()
def ema_update(teacher, student, alpha: float = 0.996) -> None:
    """Eq. 10: theta_T <- alpha * theta_T + (1 - alpha) * theta, for every parameter."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)


def ssp_loss(student, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 9 on the kept windows x (n, channels, window) with pseudo-labels (n,)."""
    return F.cross_entropy(student(x)[0], labels)


@torch.no_grad()
def centroid_labels(probs: torch.Tensor, embeddings: torch.Tensor,
                    iterations: int = 2) -> torch.Tensor:
    """Pseudo-labels from class centroids in the embedding space (SHOT's, Liang et al. 2020).

    probs (n, classes), embeddings (n, dim) of the same windows. Each class's centroid is
    the probability-weighted mean of the L2-normalised embeddings; every window takes the
    label of its nearest centroid (cosine); then ``iterations - 1`` more rounds with hard
    assignments (k-means steps). A new person's windows of one gesture cluster together even
    where the source classifier's boundaries cut through them, so the centroid labels are
    right more often than the argmax (measured in ``benchmarks/results/cross_user_3dc.md``).
    Returns labels (n,) long.
    """
    e = F.normalize(embeddings, dim=1)
    weights = probs
    labels = probs.argmax(dim=1)
    for _ in range(iterations):
        centroids = F.normalize(weights.T @ e, dim=1)
        labels = (e @ centroids.T).argmax(dim=1)
        weights = F.one_hot(labels, probs.shape[1]).to(e.dtype)
    return labels


def information_maximisation(probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Mean per-window entropy plus KL(mean prediction || ``prior``).

    SHOT's information maximisation with the uniform target replaced by ``prior`` (classes,):
    a person's stream is not balanced (a live stream is mostly rest), so the diversity term
    pulls the batch's mean prediction towards a prior *estimated* from the person's data,
    not towards equal classes. With a uniform prior this is SHOT-IM's loss plus log(classes).
    """
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(dim=1).mean()
    mean = probs.mean(dim=0)
    divergence = (mean * (mean.clamp_min(1e-8).log() - prior.clamp_min(1e-8).log())).sum()
    return entropy + divergence
