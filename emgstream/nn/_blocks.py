"""Transformer building blocks (pre-norm, nanoGPT-plain), shared by every encoder here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention; ``context=None`` is self-attention.

    x (batch, n, d), context (batch, m, d) -> (batch, n, d). ``mask`` is a boolean
    (n, m) or (batch, 1, n, m) tensor, True where attention is allowed.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x, context=None, mask=None):
        b, n, d = x.shape
        context = x if context is None else context
        m = context.shape[1]
        h = self.n_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, d_model: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(d_model * mlp_ratio)
        self.fc = nn.Linear(d_model, hidden)
        self.out = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, cross: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln_cross = nn.LayerNorm(d_model) if cross else None
        self.cross = Attention(d_model, n_heads, dropout) if cross else None
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, context=None, mask=None, cross_rows: int | None = None):
        """``cross_rows``: only the first rows attend to ``context`` (EMBridge's MPRL pass)."""
        x = x + self.drop(self.attn(self.ln1(x), mask=mask))
        if self.cross is not None and context is not None:
            rows = x.shape[1] if cross_rows is None else cross_rows
            update = self.drop(self.cross(self.ln_cross(x[:, :rows]), context))
            x = torch.cat([x[:, :rows] + update, x[:, rows:]], dim=1)
        return x + self.mlp(self.ln2(x))
