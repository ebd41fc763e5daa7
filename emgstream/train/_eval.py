"""The papers' evaluation protocols: linear probing and zero-shot k-NN, macro accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..nn import knn_vote
from ._trainer import _keep


def macro_accuracy(y_true, y_pred, n_classes: int) -> float:
    """Mean over the classes present in ``y_true`` of the per-class accuracy (CPEP 3.2)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    accs = [np.mean(y_pred[y_true == c] == c) for c in range(n_classes) if np.any(y_true == c)]
    return float(np.mean(accs)) if accs else float("nan")


@torch.no_grad()
def embed_windows(fn, windows, which: int = 0, batch_size: int = 512,
                  device: torch.device | str = "cpu", num_workers: int = 0) -> torch.Tensor:
    """Apply ``fn`` to every window's EMG (``which=0``) or pose (``which=1``) in batches,
    read by ``num_workers`` DataLoader workers (0: in this process).

    Returns the outputs concatenated on the CPU, in window order.
    """
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_keep,
                        # its own generator leaves the global RNG (later MAE masks) untouched
                        generator=torch.Generator().manual_seed(0))
    return torch.cat([fn(batch[which].to(device)).float().cpu() for batch in loader])


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int,
                     steps: int = 300, lr: float = 1e-2, weight_decay: float = 1e-4,
                     seed: int = 0) -> nn.Linear:
    """A randomly initialised softmax linear classifier on frozen features (batch, d),
    full-batch AdamW on the cross-entropy; features are used as they are (unit norm for
    aligned embeddings)."""
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(features), labels).backward()
        opt.step()
    return head.eval()


def standardise(train: torch.Tensor, *others: torch.Tensor):
    """Z-score features with the training set's statistics (for un-normalised features)."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    return ((train - mean) / std, *((o - mean) / std for o in others))


def linear_probe_accuracy(train_x, train_y, test_x, test_y, n_classes: int, **kwargs) -> float:
    train_x, test_x = standardise(train_x, test_x)
    head = fit_linear_probe(train_x, train_y, n_classes, **kwargs)
    with torch.no_grad():
        pred = head(test_x).argmax(1)
    return macro_accuracy(test_y.numpy(), pred.numpy(), n_classes)


def zero_shot_accuracy(similarity, bank_labels, test_y, n_classes: int, k: int = 10) -> float:
    """k-NN vote (k=10) over a pose bank; ``similarity`` (n_test, n_bank)."""
    pred = knn_vote(np.asarray(similarity), np.asarray(bank_labels), n_classes, k)
    return macro_accuracy(np.asarray(test_y), pred, n_classes)
