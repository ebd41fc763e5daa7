"""The classical rows of ``emgstream eval``: Hudgins features and the three LDA baselines."""

from __future__ import annotations

import numpy as np
import pytest

from emgstream.adapt.classical import (CLASSICAL_ROWS, ClassicalBaselines, hudgins_features,
                                       zscore)


def test_hudgins_features_match_hand_computation():
    # one window, two channels, five samples
    x = np.array([[[1.0, -2.0, 3.0, 3.0, -1.0],
                   [0.5, 0.5, 0.5, 0.5, 0.5]]])
    f = hudgins_features(x)
    assert f.shape == (1, 8)
    mav, zc, ssc, wl = f[0, :2], f[0, 2:4], f[0, 4:6], f[0, 6:]
    np.testing.assert_allclose(mav, [10 / 5, 0.5])
    # channel 0: 1 -> -2 -> 3 changes sign twice, 3 -> -1 once; channel 1 never
    np.testing.assert_array_equal(zc, [3, 0])
    # middle samples -2, 3, 3: (-2-1)(-2-3) = 15 >= 0, (3+2)(3-3) = 0 >= 0, (3-3)(3+1) = 0
    # >= 0; a flat channel counts every middle sample (LibEMG's >= with threshold 0)
    np.testing.assert_array_equal(ssc, [3, 3])
    np.testing.assert_allclose(wl, [3 + 5 + 0 + 4, 0.0])


def test_hudgins_features_refuse_bad_shapes():
    with pytest.raises(ValueError, match=r"\(n, channels, time >= 3\)"):
        hudgins_features(np.zeros((4, 10)))


def test_zscore_uses_the_reference_statistics():
    ref = np.array([[0.0, 1.0], [2.0, 1.0]])
    out = zscore(np.array([[1.0, 3.0]]), ref)
    np.testing.assert_allclose(out, [[0.0, 2.0]])  # a constant column is only centred


def _person(rng, gain, n=120, channels=4, window=50):
    """Three classes, each a different channel pattern of noise amplitude, times ``gain``."""
    patterns = np.array([[1, 1, 1, 1], [4, 1, 1, 1], [1, 1, 4, 4]], float)
    labels = np.repeat(np.arange(3), n // 3)
    amp = patterns[labels][:, :, None] * gain[None, :, None]
    return (rng.standard_normal((len(labels), channels, window)) * amp).astype(np.float32), labels


def test_zscoring_and_self_calibration_recover_a_person_with_other_gains():
    rng = np.random.default_rng(0)
    train = [_person(rng, np.ones(4)) for _ in range(3)]
    baselines = ClassicalBaselines(train, n_classes=3)
    # a new person whose first electrode reads 4 times louder than the others (so their rest
    # looks like another person's class 1): the raw LDA is lost, the per-person z-scoring
    # and the k-means self-calibration are not
    gain = np.array([8.0, 2.0, 2.0, 2.0])
    first, second = _person(rng, gain), _person(rng, gain)
    person = baselines.calibrate(first[0])
    acc = {name: float(np.mean(person.predict(name, second[0]) == second[1]))
           for name in CLASSICAL_ROWS}
    assert acc["lda"] < 0.7
    assert acc["lda-zscore"] > 0.9
    assert acc["lda-kmeans"] > 0.9
    assert "3 classes" in repr(baselines)
