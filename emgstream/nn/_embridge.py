"""EMBridge (ICLR 2026): Q-Former, masked pose reconstruction (MPRL), CASCLe."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import Block


class QFormer(nn.Module):
    """M learnable queries that read the EMG tokens.

    ``n_layers`` pre-norm blocks; blocks 1, 3, ... (every other one, EMBridge "4 self-attn +
    2 cross-attn") also cross-attend to the EMG encoder's tokens. Self-attention and MLP
    weights can be copied from the pose MAE encoder (:meth:`init_from_encoder`); the
    cross-attention starts random. Output: final norm + linear map to ``out_dim``.

    tokens (batch, 1 + K, d) -> queries (batch, M, out_dim), not normalised.
    """

    def __init__(self, d_model: int, out_dim: int, n_queries: int = 8, n_layers: int = 4,
                 n_heads: int = 8, mlp_ratio: float = 4.0, cross_every: int = 2) -> None:
        super().__init__()
        self.config = {"n_queries": n_queries, "n_layers": n_layers, "n_heads": n_heads,
                       "mlp_ratio": mlp_ratio, "cross_every": cross_every}
        self.n_queries = n_queries
        self.queries = nn.Parameter(torch.randn(1, n_queries, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, mlp_ratio, cross=(i % cross_every == cross_every - 1))
            for i in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, out_dim)

    def init_from_encoder(self, encoder: nn.Module) -> None:
        """Copy self-attention, MLP and norms of ``encoder.blocks`` (the pose MAE) in order."""
        for mine, theirs in zip(self.blocks, encoder.blocks):
            for name in ("ln1", "attn", "ln2", "mlp"):
                getattr(mine, name).load_state_dict(getattr(theirs, name).state_dict())

    def run(self, h: torch.Tensor, context: torch.Tensor, cross_rows: int | None = None):
        for block in self.blocks:
            h = block(h, context=context, cross_rows=cross_rows)
        return self.ln_f(h)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.run(self.queries.expand(tokens.shape[0], -1, -1), tokens)
        return self.out(h)

    def hidden_queries(self, tokens: torch.Tensor) -> torch.Tensor:
        """Q' before the output map (batch, M, d): what the MPRL pass reads."""
        return self.run(self.queries.expand(tokens.shape[0], -1, -1), tokens)
