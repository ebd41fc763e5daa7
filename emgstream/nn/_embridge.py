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


def best_query_info_nce(queries: torch.Tensor, v: torch.Tensor, scale: torch.Tensor):
    """EMBridge's instance loss. queries (batch, M, e), v (batch, e), both unit norm.

    u_i is the query of sample i most similar to its own pose v_i (chosen without gradient);
    L = -1/B sum_i log softmax_k(u_i . v_k / tau)_i (EMG -> pose only, as the paper writes it).
    Returns (loss, logits (batch, batch)) so CASCLe can reuse the similarities.
    """
    best = torch.einsum("bme,be->bm", queries, v).argmax(dim=1).detach()
    u = queries[torch.arange(queries.shape[0], device=queries.device), best]
    logits = scale * u @ v.T
    target = torch.arange(u.shape[0], device=u.device)
    return F.cross_entropy(logits, target), logits


def cascle_targets(v: torch.Tensor, centroids: torch.Tensor, top_k: int,
                   temperature: float) -> torch.Tensor:
    """CASCLe soft targets (batch, batch) from pose embeddings v (batch, e) and the k-means
    centroids (n_c, e), both unit norm.

    S_pc = v C^T kept on each row's ``top_k`` nearest communities (others 0);
    S_pp = S_pc S_pc^T; the diagonal is removed and each row softmax-normalised.
    The softmax temperature is ours: the paper does not state one, and S_pp in [-k, k] with
    temperature 1 gives targets too flat to carry the community structure.
    """
    s_pc = v @ centroids.T
    top = s_pc.topk(min(top_k, centroids.shape[0]), dim=1)
    sparse = torch.zeros_like(s_pc).scatter(1, top.indices, top.values)
    s_pp = sparse @ sparse.T
    eye = torch.eye(v.shape[0], dtype=torch.bool, device=v.device)
    return torch.softmax(s_pp.masked_fill(eye, float("-inf")) / temperature, dim=1)


def cascle_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_CASCLe = -1/B sum_i sum_{j != i} y_ij log q_ij, q_i = softmax_j(u_i . v_j / tau)."""
    log_q = torch.log_softmax(logits, dim=1)
    off = ~torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return -(targets * log_q * off).sum(dim=1).mean()


def kmeans_communities(embeddings, n_clusters: int, seed: int = 0) -> torch.Tensor:
    """Offline k-means (scipy) on unit pose embeddings (n, e) -> unit centroids (n_c, e)."""
    import numpy as np
    from scipy.cluster.vq import kmeans2

    x = np.asarray(embeddings, dtype=np.float64)
    n_clusters = min(n_clusters, len(x))
    centroids, _ = kmeans2(x, n_clusters, minit="++", seed=seed)
    return F.normalize(torch.as_tensor(centroids, dtype=torch.float32), dim=1)


class EMBridge(nn.Module):
    """EMG model with a Q-Former head aligned to the frozen pose anchor with
    L = L_InfoNCE(best query) + w_mprl L_MPRL + w_cascle L_CASCLe.

    The summary of the paper we follow gives no loss weights; both default to 1.
    forward(emg (batch, C, T), pose (batch, 20, T)) -> (loss, logs).
    """

    def __init__(self, emg_model, pose_encoder, temperature: float = 0.02,
                 n_communities: int = 32, top_k: int = 3, community_temperature: float = 0.1,
                 mask_ratio: float = 0.5, w_mprl: float = 1.0, w_cascle: float = 1.0,
                 init_from_pose: bool = True) -> None:
        super().__init__()
        from ._cpep import LearnableTemperature, PoseAnchor

        if emg_model.head_type != "qformer":
            raise ValueError("EMBridge needs a GestureModel built with head='qformer'")
        self.emg = emg_model
        self.pose = PoseAnchor(pose_encoder)
        d = pose_encoder.config.d_model
        if emg_model.encoder.config.d_model != d or emg_model.embed_dim != d:
            raise ValueError(f"EMG d_model and embed_dim must equal the pose encoder's d_model "
                             f"({d}) so that the Q-Former can start from the pose MAE")
        if init_from_pose:
            emg_model.qformer.init_from_encoder(pose_encoder)
        self.temperature = LearnableTemperature(temperature)
        self.top_k, self.community_temperature = top_k, community_temperature
        self.n_communities = n_communities
        self.register_buffer("centroids", torch.zeros(0, d))
        self.mask_ratio, self.w_mprl, self.w_cascle = mask_ratio, w_mprl, w_cascle
        self.pose_mask_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        cfg = pose_encoder.config
        self.pose_decoder = nn.Linear(d, cfg.feature_dim)  # g in L_MPRL

    def set_communities(self, pose_embeddings, seed: int = 0) -> None:
        """k-means on the training set's pose embeddings (n, e), once before training."""
        self.centroids = kmeans_communities(pose_embeddings, self.n_communities, seed).to(
            self.pose_mask_token.device)

    def mprl(self, hidden_queries, emg_tokens, pose):
        """Second pass: [Q'; masked pose tokens] through the Q-Former; only the query rows
        cross-attend to the EMG tokens, so masked poses must be read from Q'."""
        pe = self.pose.encoder
        with torch.no_grad():
            target = pe.patch_features(pose)
            tokens = pe.embed(pose)
        b, k, d = tokens.shape
        n_mask = max(1, min(k - 1, round(k * self.mask_ratio)))
        masked = torch.rand(b, k, device=pose.device).argsort(dim=1)[:, :n_mask]
        is_masked = torch.zeros(b, k, dtype=torch.bool, device=pose.device)
        is_masked.scatter_(1, masked, True)
        filler = self.pose_mask_token + pe.pos_embed[:, 1:]
        tokens = torch.where(is_masked[..., None], filler.to(tokens.dtype), tokens)
        m = hidden_queries.shape[1]
        h = self.emg.qformer.run(torch.cat([hidden_queries, tokens], dim=1), emg_tokens,
                                 cross_rows=m)
        pred = self.pose_decoder(h[:, m:])
        return F.mse_loss(pred[is_masked].float(), target[is_masked].float())

    def forward(self, emg: torch.Tensor, pose: torch.Tensor):
        tokens = self.emg.tokens(emg)
        hidden = self.emg.qformer.hidden_queries(tokens)
        queries = F.normalize(self.emg.qformer.out(hidden), dim=-1).float()
        v = self.pose(pose)
        loss_nce, logits = best_query_info_nce(queries, v, self.temperature())
        logs = {"nce": float(loss_nce.detach()), "tau": self.temperature.temperature}
        loss = loss_nce
        if self.w_cascle and len(self.centroids):
            targets = cascle_targets(v, self.centroids, self.top_k, self.community_temperature)
            loss_c = cascle_loss(logits, targets)
            loss = loss + self.w_cascle * loss_c
            logs["cascle"] = float(loss_c.detach())
        if self.w_mprl:
            loss_m = self.mprl(hidden, tokens, pose)
            loss = loss + self.w_mprl * loss_m
            logs["mprl"] = float(loss_m.detach())
        return loss, logs
