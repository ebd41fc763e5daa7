"""OnlineAdapter round trip: observe, step, export -> ONNX Runtime, save -> load_model_file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from emgstream.adapt import GuardConfig, OnlineAdapter, OnlineConfig
from emgstream.modelfile import load_model_file
from emgstream.nn import load_model
from emgstream.train import make_test_model


@pytest.fixture(scope="module")
def model_file():
    return make_test_model(n_channels=4, rate=500.0, window_s=0.2, hop_s=0.05, seed=1)


def _windows(mf, n, seed=0):
    rng = np.random.default_rng(seed)
    p = mf.preprocessing
    return (rng.standard_normal((n, p.n_channels, p.window)) * 20).astype(np.float32)


@pytest.mark.parametrize("method", ["emg-up+", "emg-up"])
def test_round_trip(model_file, tmp_path, method):
    config = OnlineConfig(method=method, min_windows=32, batch_size=8, xi=0.0, n_consecutive=1,
                          lr=1e-3, guard_every=1, ssa=True)
    adapter = OnlineAdapter(model_file, config)
    assert not adapter.step()  # nothing observed yet
    adapter.observe(_windows(model_file, 40))
    before = [p.detach().clone() for p in adapter.teacher.parameters()]
    assert adapter.step()
    s = adapter.stats
    assert s.windows_seen == 40 and s.teacher_updates == config.steps_per_call
    assert s.steps == config.steps_per_call + 1  # + the SSA step
    assert s.pseudo_labels_accepted == config.steps_per_call * config.batch_size
    assert 0.0 <= s.agreement_with_source <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, adapter.teacher.parameters()))
    source = load_model(model_file)
    # emg-up+ moves the features and keeps the source's classifier; the paper trains both
    assert torch.equal(adapter.student.classifier.weight, source.classifier.weight) == (
        method == "emg-up+")
    assert not torch.equal(adapter.student.encoder.tokenizer.weight,
                           source.encoder.tokenizer.weight)

    graph = adapter.export()
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    x = _windows(model_file, 3, seed=5)
    logits, embedding = session.run(["logits", "embedding"], {"emg": x})
    with torch.no_grad():
        ref = adapter.teacher.eval()(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4)
    assert embedding.shape == (3, 32)

    path = adapter.save(tmp_path / "alice.emgm", user="alice")
    mf = load_model_file(path)
    assert mf.provenance["personalized_for"] == "alice"
    assert mf.provenance["adaptation"]["method"] == f"{method}-online"
    assert mf.provenance["adaptation"]["stats"]["teacher_updates"] == config.steps_per_call
    assert mf.preprocessing == model_file.preprocessing
    reloaded = load_model(mf)
    for a, b in zip(reloaded.parameters(), adapter.teacher.parameters()):
        torch.testing.assert_close(a, b)


def test_observe_checks_shape_and_values(model_file):
    adapter = OnlineAdapter(model_file)
    p = model_file.preprocessing
    with pytest.raises(ValueError, match=rf"\(batch, {p.n_channels}, {p.window}\)"):
        adapter.observe(np.zeros((2, p.n_channels + 1, p.window), np.float32))
    bad = np.zeros((1, p.n_channels, p.window), np.float32)
    bad[0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        adapter.observe(bad)
    assert adapter.stats.windows_seen == 0


def test_confidence_filter_blocks_updates_and_reset(model_file):
    # an untrained model is never more than 99.9 % sure: no pseudo-label passes, no step
    adapter = OnlineAdapter(model_file, OnlineConfig(method="emg-up", min_windows=8,
                                                     xi=0.999, n_consecutive=1))
    adapter.observe(_windows(model_file, 16))
    assert not adapter.step()
    assert adapter.stats.teacher_updates == 0 and adapter.stats.acceptance == 0.0
    adapter.reset()
    assert adapter.stats.windows_seen == 0


def test_buffer_keeps_the_newest_windows(model_file):
    adapter = OnlineAdapter(model_file, OnlineConfig(buffer_windows=10))
    w = _windows(model_file, 25)
    adapter.observe(w[:7])
    adapter.observe(w[7:])
    x, _, written = adapter._ordered()
    assert written == 25
    np.testing.assert_array_equal(x.numpy(), w[-10:])


@pytest.mark.parametrize("method", ["emg-up+", "emg-up"])
def test_online_guard_rolls_back(model_file, method):
    """A huge learning rate on self-labels drives the teacher to one class; the guard
    restores the last good state."""
    config = OnlineConfig(method=method, min_windows=16, batch_size=16, xi=0.0, n_consecutive=1,
                          lr=1.0, alpha=0.0, steps_per_call=3, guard_every=1,
                          guard=GuardConfig(min_balance_ratio=0.9, min_agreement=0.9))
    adapter = OnlineAdapter(model_file, config)
    adapter.observe(_windows(model_file, 64))
    for _ in range(5):
        adapter.step()
    assert adapter.stats.rollbacks >= 1
    check = adapter._guard.evaluate(adapter.served)
    assert check.ok


def test_unknown_online_method_is_refused(model_file):
    with pytest.raises(ValueError, match="method"):
        OnlineAdapter(model_file, OnlineConfig(method="shot"))


def test_online_renormalise_uses_every_window_observed_not_the_buffer():
    mf = make_test_model(n_channels=4, rate=500.0, window_s=0.2, hop_s=0.05, seed=1,
                         normalisation="fixed")
    hop_s = mf.preprocessing.hop / mf.preprocessing.sample_rate  # 0.05
    adapter = OnlineAdapter(mf, OnlineConfig(buffer_windows=16, min_windows=8, batch_size=8,
                                             renormalise_after_s=44 * hop_s, guard=None))
    source_mean = adapter.teacher.normalisation.mean.clone()
    quiet, loud = _windows(mf, 40, seed=1) * 0.1, _windows(mf, 8, seed=2) * 3 + 5
    adapter.observe(quiet)
    adapter.step()  # 40 windows seen, 44 needed: the source's statistics still
    torch.testing.assert_close(adapter.teacher.normalisation.mean, source_mean)
    adapter.observe(loud)  # the buffer now holds mostly loud windows
    adapter.step()
    seen = np.concatenate([quiet, loud]).astype(np.float64)
    for model in (adapter.student, adapter.teacher):
        np.testing.assert_allclose(model.normalisation.mean.numpy(), seen.mean(axis=(0, 2)),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(model.normalisation.std.numpy(), seen.std(axis=(0, 2)),
                                   rtol=1e-4)
    adapter.reset()  # a new user: nothing observed, the source's statistics again
    for _ in range(6):
        adapter.observe(loud)
    adapter.step()
    np.testing.assert_allclose(adapter.teacher.normalisation.mean.numpy(),
                               loud.astype(np.float64).mean(axis=(0, 2)), rtol=1e-4)
