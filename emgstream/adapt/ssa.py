"""EMG-UP stage 1, sequence-cross perspective contrastive learning (SSA), eq. 4-6.

Mapping onto our patch-Transformer (the paper uses a CNN over a long sequence):

- z_t (eq. 4) are the encoder's per-patch latents of one window,
  :meth:`GestureModel.patch_latents` -> (batch, L, d), L = ``window // patch`` patches. The
  reversed view X' is the same window flipped in time and encoded again (not the forward
  latents reversed: the encoder sees a genuinely different input).
- T (eq. 5) counts patches. The paper's T = 17 needs L >= 17 + K patches; the 3DC recipe
  (250 ms windows of 10-sample patches, L = 25) gives T = 17 and K = 8. When a model has
  fewer patches (the shipped 16-patch model) T is cut to ``L - K``, with a log line.
- g (eq. 5) is a one-layer causal Transformer over T steps; its last output is the context.
- Cross-view prediction (eq. 6): the forward context C = g(z_1..z_T) predicts, with linear
  maps W_k, the *reversed view's* latents of the next K patches in time (T+1..T+K); the
  reversed context C' = g(z'_1..z'_T), which reads the window's end backwards, predicts the
  *forward view's* latents of the K patches before them. The paper's indices for the second
  term are ambiguous; this is the symmetric reading of "C' predicts future steps in Z and C
  predicts past steps in Z'". Both terms are averaged.
- Negatives: every latent of the target view in the batch (the set 𝒵 of eq. 6), positive =
  the latent at the aligned time step of the same window.
- Departure: eq. 6 uses raw cosine similarity (temperature 1). Cosines lie in [-1, 1], so a
  softmax over hundreds of candidates is nearly flat and gives almost no gradient; we divide
  by a temperature (default 0.1, as in most InfoNCE work). ``temperature=1`` is eq. 6 exactly.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContextNetwork", "SSAHead", "info_nce", "ssa_loss"]

logger = logging.getLogger(__name__)


def info_nce(pred: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
    """Mean InfoNCE of eq. 6 with cosine similarity.

    pred (n, d): predicted latents; candidates (m, d): the set 𝒵; positive (n,) long: index
    into ``candidates`` of each prediction's true latent.
    """
    sim = F.normalize(pred, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    return F.cross_entropy(sim, positive)


class ContextNetwork(nn.Module):
    """g of eq. 5: causal Transformer over latents (batch, T, d) -> context (batch, d)."""

    def __init__(self, d_model: int, n_heads: int = 4, n_layers: int = 1,
                 max_steps: int = 64) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.pos = nn.Parameter(torch.zeros(1, max_steps, d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = z.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=z.device)
        return self.layers(z + self.pos[:, :t], mask=mask, is_causal=True)[:, -1]


class SSAHead(nn.Module):
    """g plus the K linear predictors W_k (shared by both views)."""

    def __init__(self, d_model: int, n_patches: int, steps: int = 17, future: int = 8,
                 n_heads: int = 4) -> None:
        super().__init__()
        if n_patches < 2:
            raise ValueError(f"SSA needs at least 2 patches per window, got {n_patches}")
        self.future = max(1, min(future, n_patches - 1))
        self.steps = min(steps, n_patches - self.future)
        if (self.steps, self.future) != (steps, future):
            logger.info("SSA: %d patches per window; context T=%d, K=%d future steps "
                        "(asked T=%d, K=%d)", n_patches, self.steps, self.future, steps, future)
        heads = n_heads if d_model % n_heads == 0 else 1
        self.context = ContextNetwork(d_model, heads, max_steps=self.steps)
        self.predictors = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(self.future))

    def __repr__(self) -> str:
        return f"SSAHead(T={self.steps}, K={self.future})"


def ssa_loss(model, head: SSAHead, x: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """L_C of eq. 6 for a batch of windows x (batch, channels, window), both directions."""
    patch, n = model.encoder.patch, model.encoder.n_patches
    # the encoder drops the oldest window - L * patch samples; reverse only what it sees
    # (the padding is dropped again by the encoder), so that the two views align patch by patch
    seen = x[..., x.shape[-1] - n * patch:]
    pad = (x.shape[-1] - seen.shape[-1], 0)
    z = model.patch_latents(F.pad(seen, pad))  # (b, L, d), time order
    zr = model.patch_latents(F.pad(torch.flip(seen, dims=[-1]), pad))  # (b, L, d), reversed
    b, length, d = z.shape
    t, k = head.steps, head.future
    # reversed view's patch j covers forward patch L-1-j (when window = L * patch)
    zr_aligned = torch.flip(zr, dims=[1])
    forward_context = head.context(z[:, :t])  # C: forward patches 0..T-1
    reverse_context = head.context(zr[:, :t])  # C': forward patches L-1 .. L-T, read backwards
    rows = torch.arange(b, device=z.device)
    losses = []
    for j, w in enumerate(head.predictors):
        # C -> reversed view at forward time T + j
        target = t + j
        losses.append(info_nce(w(forward_context), zr_aligned.reshape(b * length, d),
                               rows * length + target, temperature))
        # C' -> forward view at forward time L - T - 1 - j
        target = length - t - 1 - j
        losses.append(info_nce(w(reverse_context), z.reshape(b * length, d),
                               rows * length + target, temperature))
    return torch.stack(losses).mean()
