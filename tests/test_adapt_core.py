"""EMG-UP pieces: InfoNCE, SSA, confidence filter, EMA, guard, offline methods."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from emgstream.adapt import METHODS, AdaptConfig, CollapseGuard, GuardConfig, adapt
from emgstream.adapt.ssa import SSAHead, info_nce, ssa_loss
from emgstream.adapt.ssp import confident_mask, consistent_runs, ema_update
from emgstream.nn import EncoderConfig, GestureModel

torch.set_num_threads(1)


def _model(window=40, patch=2, channels=2, classes=("a", "b", "c"), normalisation="instance",
           seed=0):
    torch.manual_seed(seed)
    enc = EncoderConfig(channels, window, patch, d_model=16, n_layers=1, n_heads=2,
                        mlp_ratio=2.0)
    return GestureModel(enc, list(classes), embed_dim=16, hop=10, normalisation=normalisation)


def _toy_windows(n=64, window=40, channels=2, seed=0):
    """Sinusoids of random frequency and phase: predictable forward and backward."""
    rng = np.random.default_rng(seed)
    t = np.arange(window)
    f = rng.uniform(0.05, 0.3, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
    return torch.from_numpy(np.sin(2 * np.pi * f * t + phase).astype(np.float32))


def test_info_nce_matches_hand_computation():
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    cands = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positive = torch.tensor([0, 2])
    # cosine similarities: row 0 -> [1, 0, 1/sqrt2]; row 1 -> [0, 1, 1/sqrt2]
    r = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(0) + math.exp(r)))
    l1 = -math.log(math.exp(r) / (math.exp(0) + math.exp(1) + math.exp(r)))
    assert float(info_nce(pred, cands, positive)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # a temperature divides the similarities
    l0t = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(2 * r)))
    l1t = -math.log(math.exp(2 * r) / (1 + math.exp(2) + math.exp(2 * r)))
    assert float(info_nce(pred, cands, positive, temperature=0.5)) == pytest.approx(
        (l0t + l1t) / 2, rel=1e-6)


def test_ssa_head_maps_t17_onto_patches():
    assert (SSAHead(16, 25).steps, SSAHead(16, 25).future) == (17, 8)
    head = SSAHead(16, 16)  # the shipped 16-patch model: T is cut so that K fits
    assert head.steps + head.future == 16 and head.future == 8


def test_ssa_loss_decreases_on_toy_problem():
    model = _model()
    head = SSAHead(16, model.encoder.n_patches, steps=17, future=3)
    assert (head.steps, head.future) == (17, 3)
    x = _toy_windows()
    opt = torch.optim.Adam([*model.encoder.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(40):
        loss = ssa_loss(model, head, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_ssa_views_align_when_window_is_not_a_patch_multiple():
    """The encoder drops the oldest samples; the reversed view must cover the same ones."""
    model = _model(window=41)
    x = _toy_windows(n=8, window=41)
    x2 = x.clone()
    x2[..., 0] = 1e3  # the dropped sample must not matter
    head = SSAHead(16, model.encoder.n_patches, future=3)
    with torch.no_grad():
        assert float(ssa_loss(model, head, x)) == pytest.approx(float(ssa_loss(model, head, x2)))


def test_confidence_filter_is_strict():
    conf = torch.tensor([0.79, 0.8, 0.8000001, 0.95])
    assert confident_mask(conf, 0.8).tolist() == [False, False, True, True]


def test_consistent_runs():
    labels = np.array([1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    keep = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    segs = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    out = consistent_runs(labels, keep, segs, 3)
    # run of three 1s kept; 2s broken by a rejected window; the 3s split by a segment change
    assert out.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert consistent_runs(labels, keep, segs, 1).tolist() == keep.tolist()
    assert consistent_runs(labels, keep, np.zeros(10), 3)[7:].all()


def test_ema_update_is_eq10():
    teacher, student = _model(seed=0), _model(seed=1)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, alpha=0.9)
    for t, b, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s, rtol=0, atol=1e-7)


def test_guard_rolls_back_forced_collapse():
    model = _model(classes=("a", "b", "c", "d"))
    x = _toy_windows(n=64)
    with torch.no_grad():  # a source model that uses all classes
        model.classifier.weight.normal_(0, 5.0)
    source = copy.deepcopy(model)
    guard = CollapseGuard(source, x, {"model": model}, GuardConfig(0.7, 0.4))
    assert guard.check(model).ok
    good = copy.deepcopy(model.state_dict())
    with torch.no_grad():  # collapse: one class wins everywhere
        model.classifier.bias[2] = 100.0
    result = guard.check(model)
    assert not result.ok and result.balance < 0.1 and guard.rollbacks == 1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, good[k])
    assert guard.check(model).ok


@pytest.mark.parametrize("method", METHODS)
def test_adapt_methods_run_and_leave_source_untouched(method):
    model = _model(normalisation="fixed")
    x = _toy_windows(n=48) * 7 + 3
    before = copy.deepcopy(model.state_dict())
    cfg = AdaptConfig(lr=1e-3, ssa_epochs=1, ssp_epochs=2, batch_size=16, xi=0.0,
                      n_consecutive=1, future=3)
    adapted, report = adapt(model, x.numpy(), None, method, cfg)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert report.windows == 48
    # every method starts from the user's own input statistics (AdaptConfig.renormalise)
    torch.testing.assert_close(adapted.normalisation.mean, x.mean(dim=(0, 2)))
    torch.testing.assert_close(adapted.normalisation.std, x.std(dim=(0, 2)))
    if method == "adabn":
        assert report.parameter_change == 0.0
    else:
        assert report.steps > 0 and report.parameter_change > 0
    if method in ("ssp", "emg-up"):
        assert report.teacher_updates == report.steps - (3 if method == "emg-up" else 0)


def test_without_renormalise_the_source_statistics_stay():
    model = _model(normalisation="fixed")
    x = _toy_windows(n=48) * 7 + 3
    cfg = AdaptConfig(lr=1e-3, ssp_epochs=1, batch_size=16, xi=0.0, renormalise=False)
    adapted, _ = adapt(model, x.numpy(), None, "ssp", cfg)
    torch.testing.assert_close(adapted.normalisation.mean, model.normalisation.mean)
    torch.testing.assert_close(adapted.normalisation.std, model.normalisation.std)


def test_source_windows_give_each_user_the_pooled_statistics():
    from emgstream.adapt.evaluate import EvalConfig, load_users, source_windows

    users, prep, _ = load_users("synth", users=[0, 1], synth_duration_s=6.0)
    names = sorted(users)
    gain = np.linspace(0.5, 4.0, prep.n_channels)[:, None]  # user 1's electrodes differ
    for s in (*users[names[1]].first, *users[names[1]].second):
        s.emg = s.emg * gain.T.astype(np.float32)
    pooled = source_windows(users, names, prep, EvalConfig(per_user_statistics=False))
    scaled = source_windows(users, names, prep, EvalConfig())
    assert scaled.x.shape == pooled.x.shape
    np.testing.assert_array_equal(scaled.y, pooled.y)
    mean, std = pooled.x.mean(axis=(0, 2)), pooled.x.std(axis=(0, 2))
    for user_segments in ((0, 1), (2, 3)):  # two recordings per user, in order
        part = scaled.x[np.isin(scaled.segment, user_segments)]
        np.testing.assert_allclose(part.std(axis=(0, 2)), std, rtol=1e-3)
        np.testing.assert_allclose(part.mean(axis=(0, 2)), mean, atol=1e-3 * std.max())
    # unscaled, the second user's channels keep their gains: the statistics differ
    second = pooled.x[np.isin(pooled.segment, (2, 3))].std(axis=(0, 2))
    assert not np.allclose(second, std, rtol=0.1)


def test_tiny_learning_rate_barely_moves_the_model():
    """The paper's lr of 1e-7: Adam's step is ~lr per weight, far below the weights' scale."""
    model = _model()
    x = _toy_windows(n=48)
    cfg = AdaptConfig(lr=1e-7, ssp_epochs=2, batch_size=16, xi=0.0, n_consecutive=1,
                      guard=None)
    _, report = adapt(model, x.numpy(), None, "ssp", cfg)
    assert 0 < report.parameter_change < 1e-5


def test_adapt_rejects_bad_windows():
    model = _model()
    with pytest.raises(ValueError, match=r"\(n, 2, 40\)"):
        adapt(model, np.zeros((4, 3, 40), np.float32))
    with pytest.raises(ValueError, match="method"):
        adapt(model, np.zeros((4, 2, 40), np.float32), method="magic")


def test_centroid_labels_follow_the_clusters_not_the_classifier():
    from emgstream.adapt.ssp import centroid_labels

    # two tight clusters in embedding space; the classifier puts the boundary through the
    # second one, so its argmax is wrong for half of that cluster
    emb = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.2, 0.8]] * 2 + [[0.6, 0.4]] * 2)
    assert probs.argmax(1).tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert centroid_labels(probs, emb).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_information_maximisation_targets_the_given_prior():
    from emgstream.adapt.ssp import information_maximisation

    confident = torch.tensor([[0.98, 0.01, 0.01]] * 8 + [[0.01, 0.98, 0.01], [0.01, 0.01, 0.98]])
    rest_heavy = confident.mean(dim=0)
    uniform = torch.full((3,), 1 / 3)
    # a rest-dominated stream whose predictions match its estimated prior costs less against
    # that prior than against a uniform one: the uniform target would push it off rest
    assert information_maximisation(confident, rest_heavy) < information_maximisation(
        confident, uniform)
    # with the uniform prior the loss is SHOT-IM's (entropy - diversity) plus log(classes)
    entropy = -(confident * confident.log()).sum(1).mean()
    diversity = -(rest_heavy * rest_heavy.log()).sum()
    torch.testing.assert_close(information_maximisation(confident, uniform),
                               entropy - diversity + math.log(3))


def test_emg_up_plus_follows_the_classical_view_when_given():
    """With the classical self-calibration's probabilities, EMG-UP+ trains towards their
    fusion with the teacher: a confident classical view that disagrees with the source model
    pulls the adapted model's predictions towards it."""
    model = _model(normalisation="fixed", seed=2)
    x = _toy_windows(n=96) * 7 + 3
    with torch.no_grad():
        source_pred = model(x)[0].argmax(1)
    target = (source_pred + 1) % 3  # every window: another class than the source says
    classical = torch.nn.functional.one_hot(target, 3).float().numpy() * 0.98 + 0.01 / 3
    cfg = AdaptConfig(lr=3e-3, ssa_epochs=0, ssp_epochs=4, batch_size=16, guard=None)
    with_view, _ = adapt(model, x.numpy(), None, "emg-up+", cfg, classical=classical)
    without, _ = adapt(model, x.numpy(), None, "emg-up+", cfg)
    with torch.no_grad():
        agree_with = (with_view(x)[0].argmax(1) == target).float().mean()
        agree_without = (without(x)[0].argmax(1) == target).float().mean()
    assert agree_with > agree_without + 0.3
    with pytest.raises(ValueError, match=r"\(96, 3\) probabilities"):
        adapt(model, x.numpy(), None, "emg-up+", cfg, classical=classical[:10])
