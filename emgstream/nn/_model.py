"""The deployable gesture model: normalisation -> EMG encoder -> embedding -> classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_option, check_positive_int
from ._encoder import EncoderConfig, PatchEncoder

ARCHITECTURE_NAME = "emgstream-gesture"
ARCHITECTURE_VERSION = 1
_EPS = 1e-5


class Normalisation(nn.Module):
    """Normalisation of a window, inside the graph. x (batch, channels, time).

    ``"instance"``: each window (instance) by its own mean and std over channels and time
    (CPEP appendix B: EMG is instance-normalised). We pool the statistics over channels,
    not per channel as InstanceNorm1d would: per-channel statistics erase the relative
    amplitudes across electrodes, which is the spatial pattern of muscle activity that
    tells held gestures apart within a window. ``"fixed"``: stored per-channel
    ``mean``/``std`` buffers (AdaBN-style baselines re-estimate them). ``"none"``: identity.
    """

    def __init__(self, mode: str, n_channels: int) -> None:
        super().__init__()
        self.mode = check_option(mode, "normalisation", {"instance", "fixed", "none"})
        if mode == "fixed":
            self.register_buffer("mean", torch.zeros(n_channels))
            self.register_buffer("std", torch.ones(n_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "instance":
            mean = x.mean(dim=(1, 2), keepdim=True)
            var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
            return (x - mean) * torch.rsqrt(var + _EPS)
        if self.mode == "fixed":
            return (x - self.mean[:, None]) / (self.std[:, None] + _EPS)
        return x

    def extra_repr(self) -> str:
        return self.mode


class GestureModel(nn.Module):
    """EMG window -> (logits, embedding).

    x (batch, channels, window) float32, band-passed but not normalised
    -> logits (batch, classes), embedding (batch, embed_dim) L2-normalised.

    ``head="projection"``: CPEP's projection head on the [CLS] token (or on the token average,
    ``pooling="mean"``, the CPEP-AvgPool ablation). ``head="qformer"``: EMBridge's Q-Former;
    its M query embeddings are averaged into one (see :class:`~emgstream.nn.QFormer`).
    The classifier is linear on the embedding (linear probing).
    """

    def __init__(self, encoder: EncoderConfig, class_names, embed_dim: int = 256,
                 hop: int | None = None, normalisation: str = "instance",
                 pooling: str = "cls", head: str = "projection", qformer: dict | None = None,
                 sample_rate: float | None = None) -> None:
        super().__init__()
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.hop = check_positive_int(hop if hop is not None else encoder.patch, "hop")
        self.pooling = check_option(pooling, "pooling", {"cls", "mean"})
        self.head_type = check_option(head, "head", {"projection", "qformer"})
        self.sample_rate = sample_rate
        self.normalisation = Normalisation(normalisation, encoder.n_channels)
        self.encoder = PatchEncoder(encoder)
        if head == "projection":
            # CPEP appendix B: "a 1-layer projection head (hidden size 256)": one linear map.
            self.projection = nn.Linear(encoder.d_model, embed_dim)
            self.qformer = None
        else:
            from ._embridge import QFormer
            self.qformer = QFormer(d_model=encoder.d_model, out_dim=embed_dim, **(qformer or {}))
            self.projection = None
        self.classifier = nn.Linear(embed_dim, len(self.class_names))

    # -- the things every model exposes ----------------------------------------------------
    @property
    def window(self) -> int:
        return self.encoder.window

    @property
    def stride(self) -> int:
        """Samples between consecutive windows (live hop)."""
        return self.hop

    @property
    def n_channels(self) -> int:
        return self.encoder.config.n_channels

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def architecture(self) -> dict:
        """JSON-able description from which :func:`build_model` rebuilds this module."""
        return {
            "name": ARCHITECTURE_NAME, "version": ARCHITECTURE_VERSION,
            "encoder": self.encoder.config.to_dict(), "class_names": list(self.class_names),
            "embed_dim": self.embed_dim, "hop": self.hop,
            "normalisation": self.normalisation.mode, "pooling": self.pooling,
            "head": self.head_type,
            "qformer": self.qformer.config if self.qformer is not None else None,
            "sample_rate": self.sample_rate,
        }

    # -- forward ---------------------------------------------------------------------------
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised window -> encoder tokens (batch, 1 + K, d)."""
        return self.encoder(self.normalisation(x))

    def patch_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch latents (batch, K, d) of a raw window: EMG-UP's z_t."""
        return self.tokens(x)[:, 1:]

    def query_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Q-Former head only: tokens -> L2-normalised queries (batch, M, embed_dim)."""
        return F.normalize(self.qformer(tokens), dim=-1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder tokens (batch, 1 + K, d) -> L2-normalised embedding (batch, embed_dim)."""
        if self.qformer is not None:
            return F.normalize(self.query_embeddings(tokens).mean(dim=1), dim=-1)
        pooled = tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)
        return F.normalize(self.projection(pooled), dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(self.tokens(x))

    def forward(self, x: torch.Tensor):
        """x (batch, channels, window) -> (logits (batch, classes), embedding (batch, dim))."""
        embedding = self.embed(x)
        return self.classifier(embedding), embedding

    def __repr__(self) -> str:
        return (f"<GestureModel {self.n_channels} ch x {self.window} (hop {self.hop}), "
                f"{self.encoder.n_patches} patches, d={self.encoder.config.d_model}, "
                f"head={self.head_type}, {self.n_classes} classes>")


def build_model(architecture: dict) -> GestureModel:
    """Rebuild the (untrained) :class:`GestureModel` that ``architecture`` describes."""
    if not isinstance(architecture, dict) or architecture.get("name") != ARCHITECTURE_NAME:
        raise ValueError(f"architecture is not an {ARCHITECTURE_NAME!r} description: "
                         f"name={architecture.get('name') if isinstance(architecture, dict) else None!r}")
    if architecture.get("version") != ARCHITECTURE_VERSION:
        raise ValueError(f"architecture version {architecture.get('version')!r}; this emgstream "
                         f"builds version {ARCHITECTURE_VERSION}")
    a = dict(architecture)
    try:
        return GestureModel(
            EncoderConfig.from_dict(a["encoder"]), a["class_names"], embed_dim=a["embed_dim"],
            hop=a["hop"], normalisation=a["normalisation"], pooling=a["pooling"],
            head=a["head"], qformer=a.get("qformer"), sample_rate=a.get("sample_rate"))
    except KeyError as err:
        raise ValueError(f"architecture lacks the key {err.args[0]!r}") from err
