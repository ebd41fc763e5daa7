"""Masked autoencoder pre-training of a :class:`PatchEncoder` (CPEP section 2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import Block
from ._encoder import EncoderConfig, PatchEncoder
from ._model import Normalisation


class MAE(nn.Module):
    """Encoder sees only the unmasked tokens; a light decoder reconstructs every patch.

    x (batch, channels, time) -> scalar loss
        L_MAE = 1/|M| sum_{i in M} || psi(phi({z_j}_{j not in M}))_i - x_i ||^2

    CPEP writes the target as the token z_i; we reconstruct the patch's features x_i (the
    tokenizer's fixed input, :meth:`PatchEncoder.patch_features`: the normalised raw patch
    as in MAE (He et al.), or its log powers) because a learned tokenizer's own output is a
    target it can shrink to zero. The squared error is averaged over the features. ``normalisation``:
    "instance" for EMG (as the deployed model does), "none" for pose (radians).
    """

    def __init__(self, encoder: EncoderConfig, decoder_layers: int = 2,
                 decoder_dim: int | None = None, mask_ratio: float = 0.5,
                 normalisation: str = "instance") -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
        self.mask_ratio = mask_ratio
        self.normalisation = Normalisation(normalisation, encoder.n_channels)
        self.encoder = PatchEncoder(encoder)
        dd = decoder_dim or encoder.d_model
        self.decoder_in = nn.Linear(encoder.d_model, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos = nn.Parameter(torch.randn(1, 1 + encoder.n_patches, dd) * 0.02)
        heads = encoder.n_heads if dd % encoder.n_heads == 0 else 1
        self.decoder = nn.ModuleList(Block(dd, heads, encoder.mlp_ratio)
                                     for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_out = nn.Linear(dd, encoder.feature_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def random_mask(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices kept (batch, K - |M|) and masked (batch, |M|), |M| = round(K * r)."""
        k = self.encoder.n_patches
        n_mask = max(1, min(k - 1, round(k * self.mask_ratio)))
        order = torch.rand(batch, k, device=device).argsort(dim=1)
        return order[:, n_mask:], order[:, :n_mask]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalisation(x)
        target = self.encoder.patch_features(x)  # (batch, K, feature_dim)
        tokens = self.encoder.tokenizer(target) + self.encoder.pos_embed[:, 1:]
        keep, masked = self.random_mask(x.shape[0], x.device)
        d = tokens.shape[-1]
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
        latent = self.decoder_in(self.encoder.encode(visible))  # (batch, 1 + kept, dd)
        b, k = target.shape[:2]
        dd = latent.shape[-1]
        full = self.mask_token.expand(b, k, dd).clone()
        full = full.scatter(1, keep[..., None].expand(-1, -1, dd), latent[:, 1:])
        h = torch.cat([latent[:, :1], full], dim=1) + self.decoder_pos
        for block in self.decoder:
            h = block(h)
        pred = self.decoder_out(self.decoder_norm(h[:, 1:]))
        idx = masked[..., None].expand(-1, -1, pred.shape[-1])
        return F.mse_loss(torch.gather(pred, 1, idx), torch.gather(target, 1, idx))
