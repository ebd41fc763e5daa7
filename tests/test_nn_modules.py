"""Encoders, MAE, CPEP and EMBridge pieces, against the papers' equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emgstream.nn import (CPEP, MAE, EMBridge, EncoderConfig, GestureModel, PatchEncoder,
                          build_model, knn_vote, symmetric_info_nce)
from emgstream.nn._embridge import best_query_info_nce, cascle_loss, cascle_targets

torch.set_num_threads(1)
EMG = EncoderConfig(4, 100, 10, d_model=16, n_layers=2, n_heads=2)
POSE = EncoderConfig(20, 100, 25, d_model=16, n_layers=2, n_heads=2)


def test_encoder_shapes_and_patch_layout():
    enc = PatchEncoder(EMG)
    assert (enc.window, enc.patch, enc.stride, enc.n_patches) == (100, 10, 10, 10)
    x = torch.randn(3, 4, 100)
    assert enc(x).shape == (3, 11, 16) and enc.patch_latents(x).shape == (3, 10, 16)
    patches = enc.patch_features(x)
    # patch k flattens time points k*10 .. k*10+9 of all channels, time-major
    torch.testing.assert_close(patches[:, 2].reshape(3, 10, 4), x[:, :, 20:30].transpose(1, 2))
    with pytest.raises(ValueError, match=r"expected input \(batch, 4, 100\)"):
        enc(torch.randn(3, 5, 100))


def test_log_power_features_are_bin_log_mean_squares():
    cfg = EncoderConfig(4, 100, 10, d_model=16, n_layers=1, n_heads=2, features="log_power",
                        power_bins=2)
    enc = PatchEncoder(cfg)
    x = 10 * torch.randn(3, 4, 100)  # well above the power floor
    feats = enc.patch_features(x)
    assert feats.shape == (3, 10, 8) == (3, cfg.n_patches, cfg.feature_dim)
    # patch 2, channel 1, second bin: samples 25..29
    expected = torch.log(x[:, 1, 25:30].pow(2).mean(dim=1) + 1e-4)
    torch.testing.assert_close(feats[:, 2, 1 * 2 + 1], expected)
    # a gain on the input shifts every feature by the log of the power gain
    torch.testing.assert_close(enc.patch_features(10 * x), feats + math.log(100), atol=1e-3,
                               rtol=0)
    assert enc(x).shape == (3, 11, 16)
    with pytest.raises(ValueError, match=r"patch \(10\) must be a multiple of power_bins \(3\)"):
        EncoderConfig(4, 100, 10, features="log_power", power_bins=3, d_model=16, n_heads=2)
    with pytest.raises(ValueError, match="features"):
        EncoderConfig(4, 100, 10, features="spectrogram", d_model=16, n_heads=2)


def test_window_not_multiple_of_patch_drops_oldest_samples():
    enc = PatchEncoder(EncoderConfig(2, 105, 10, d_model=8, n_layers=1, n_heads=2)).eval()
    x = torch.randn(1, 2, 105)
    y = x.clone()
    y[..., :5] = 0.0  # the 5 oldest samples are not seen
    torch.testing.assert_close(enc(x), enc(y))
    y[..., -1] += 1.0  # the newest is
    assert not torch.allclose(enc(x), enc(y))


@pytest.mark.parametrize("mode", ["instance", "fixed", "none"])
def test_normalisation(mode):
    model = GestureModel(EMG, ["a", "b"], embed_dim=16, normalisation=mode)
    x = torch.randn(2, 4, 100) * 30 + 7
    z = model.normalisation(x)
    if mode == "instance":
        torch.testing.assert_close(z.mean((1, 2)), torch.zeros(2), atol=1e-4, rtol=0)
        torch.testing.assert_close(z.std((1, 2), unbiased=False), torch.ones(2), atol=1e-3,
                                   rtol=0)
        # one window's scale goes, the relative amplitudes across channels stay
        y = x.clone()
        y[:, 1] *= 3.0
        ratio = model.normalisation(y).std(-1) / model.normalisation(y * 5 + 2).std(-1)
        torch.testing.assert_close(ratio, torch.ones(2, 4), atol=1e-3, rtol=0)
        zy = model.normalisation(y)
        assert torch.all(zy[:, 1].std(-1) > 2 * zy[:, 0].std(-1))
    elif mode == "fixed":
        model.normalisation.mean.fill_(7.0)
        model.normalisation.std.fill_(30.0)
        torch.testing.assert_close(model.normalisation(x), (x - 7) / (30 + 1e-5))
        assert "normalisation.mean" in model.state_dict()
    else:
        assert torch.equal(z, x)


@pytest.mark.parametrize("kwargs", [{}, {"pooling": "mean"},
                                    {"head": "qformer", "qformer": {"n_queries": 3,
                                                                     "n_layers": 2,
                                                                     "n_heads": 2}}])
def test_gesture_model_outputs_and_rebuild(kwargs):
    model = GestureModel(EMG, ["a", "b", "c"], embed_dim=16, hop=5, **kwargs).eval()
    logits, emb = model(torch.randn(4, 4, 100))
    assert logits.shape == (4, 3) and emb.shape == (4, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    twin = build_model(model.architecture)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 100)
    torch.testing.assert_close(twin.eval()(x)[0], model(x)[0])
    assert (twin.window, twin.stride, twin.class_names) == (100, 5, ["a", "b", "c"])


def test_mae_reconstructs_only_masked_patches():
    torch.manual_seed(0)
    mae = MAE(EMG, decoder_layers=1, mask_ratio=0.5)
    keep, masked = mae.random_mask(8, "cpu")
    assert keep.shape == (8, 5) and masked.shape == (8, 5)
    for k, m in zip(keep, masked):
        assert sorted(torch.cat([k, m]).tolist()) == list(range(10))
    loss = mae(torch.randn(8, 4, 100))
    loss.backward()
    assert loss.item() > 0 and mae.encoder.tokenizer.weight.grad.abs().sum() > 0
    # the loss falls when the model can learn (a few steps on one fixed batch)
    x = torch.sin(torch.linspace(0, 20, 100)).repeat(8, 4, 1) * torch.rand(8, 4, 1)
    opt = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = mae(x)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def test_symmetric_info_nce_matches_the_equation():
    torch.manual_seed(0)
    u = F.normalize(torch.randn(5, 8), dim=1)
    v = F.normalize(torch.randn(5, 8), dim=1)
    tau = 0.07
    s = u @ v.T / tau
    expected = -(torch.log_softmax(s, 1).diag() + torch.log_softmax(s.T, 1).diag()).sum() / 10
    torch.testing.assert_close(symmetric_info_nce(u, v, torch.tensor(1 / tau)), expected)
    assert symmetric_info_nce(v, v, torch.tensor(50.0)) < 0.01 < expected


def test_cpep_freezes_pose_and_learns_temperature():
    pose = PatchEncoder(POSE)
    before = {k: v.clone() for k, v in pose.state_dict().items()}
    model = GestureModel(EMG, ["a"], embed_dim=16)
    cpep = CPEP(model, pose, temperature=0.02)
    assert cpep.temperature.temperature == pytest.approx(0.02)
    assert math.isclose(cpep.temperature.log_scale.item(), math.log(50), rel_tol=1e-6)
    with torch.no_grad():  # the clamp: tau never below 1/100
        cpep.temperature.log_scale.fill_(10.0)
    assert cpep.temperature.temperature == pytest.approx(0.01)
    opt = torch.optim.AdamW([p for p in cpep.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = cpep(torch.randn(6, 4, 100), torch.randn(6, 20, 100))
    loss.backward()
    opt.step()
    cpep.train()
    assert not cpep.pose.encoder.training
    for k, v in pose.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.encoder.tokenizer.weight.grad is not None


def test_cascle_targets_are_community_soft_labels():
    torch.manual_seed(0)
    centroids = F.normalize(torch.eye(3, 8), dim=1)
    v = F.normalize(centroids[[0, 0, 1, 2]] + 0.05 * torch.randn(4, 8), dim=1)
    y = cascle_targets(v, centroids, top_k=1, temperature=0.1)
    torch.testing.assert_close(y.sum(1), torch.ones(4))
    assert torch.all(y.diag() == 0)
    assert y[0, 1] > 0.9 and y[1, 0] > 0.9  # same community
    logits = torch.randn(4, 4)
    expected = -(y * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(cascle_loss(logits, y), expected)


def test_best_query_is_the_most_similar_one():
    v = F.normalize(torch.randn(3, 8), dim=1)
    q = F.normalize(torch.randn(3, 4, 8), dim=-1)
    q[:, 2] = v  # query 2 is each sample's own pose
    loss, logits = best_query_info_nce(q, v, torch.tensor(10.0))
    torch.testing.assert_close(logits, 10.0 * v @ v.T)


def test_embridge_qformer_starts_from_pose_mae_and_trains():
    torch.manual_seed(0)
    pose = PatchEncoder(POSE)
    model = GestureModel(EMG, ["a"], embed_dim=16, head="qformer",
                         qformer={"n_queries": 3, "n_layers": 2, "n_heads": 2})
    bridge = EMBridge(model, pose, n_communities=3)
    qf = model.qformer
    assert torch.equal(qf.blocks[0].attn.q.weight, pose.blocks[0].attn.q.weight)
    assert torch.equal(qf.blocks[1].mlp.fc.weight, pose.blocks[1].mlp.fc.weight)
    assert qf.blocks[0].cross is None and qf.blocks[1].cross is not None  # every other layer
    x, p = torch.randn(6, 4, 100), torch.randn(6, 20, 100)
    with torch.no_grad():
        bridge.set_communities(bridge.pose(p).numpy())
    assert bridge.centroids.shape == (3, 16)
    loss, logs = bridge(x, p)
    loss.backward()
    assert {"nce", "cascle", "mprl"} <= set(logs)
    assert qf.blocks[1].cross.q.weight.grad.abs().sum() > 0
    assert bridge.pose_decoder.weight.grad.abs().sum() > 0


def test_mprl_pose_rows_do_not_read_emg():
    torch.manual_seed(0)
    model = GestureModel(EMG, ["a"], embed_dim=16, head="qformer",
                         qformer={"n_queries": 3, "n_layers": 2, "n_heads": 2}).eval()
    h = torch.randn(2, 5, 16)
    ctx1, ctx2 = torch.randn(2, 11, 16), torch.randn(2, 11, 16)
    block = model.qformer.blocks[1]
    a, b = block(h, context=ctx1, cross_rows=3), block(h, context=ctx2, cross_rows=3)
    torch.testing.assert_close(a[:, 3:], b[:, 3:])  # pose rows: no cross-attention
    assert not torch.allclose(a[:, :3], b[:, :3])  # query rows: cross-attention


def test_knn_vote():
    labels = np.array([0, 0, 0, 1, 1, 2])
    sim = np.array([[0.9, 0.8, 0.1, 0.95, 0.2, 0.0],   # top-3: 1 (0.95), 0, 0 -> 0
                    [0.1, 0.1, 0.1, 0.9, 0.8, 0.7]])   # top-3: 1, 1, 2 -> 1
    assert knn_vote(sim, labels, 3, k=3).tolist() == [0, 1]
    # a tie (one vote each) goes to the most similar
    assert knn_vote(np.array([[0.5, 0.0, 0.0, 0.0, 0.0, 0.6]]), labels, 3, k=2).tolist() == [2]
    with pytest.raises(ValueError, match=r"similarity must be \(n, 6\)"):
        knn_vote(np.zeros((2, 5)), labels, 3)
