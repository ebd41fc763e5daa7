"""Smoothing, confidence threshold and debounce: from per-hop probabilities to events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emgstream.pipeline import Decider, GestureEvent, PipelineConfig


def _feed(config: PipelineConfig, rows) -> list[tuple[int, bool]]:
    decider = Decider(config, n_classes=3)
    out = []
    for row in rows:
        stable, _, smoothed, changed = decider.update(np.asarray(row, dtype=np.float64))
        assert abs(smoothed.sum() - 1) < 1e-9
        out.append((stable, changed))
    return out


A, B, U = [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.4, 0.3, 0.3]


def test_debounce_needs_n_agreeing_hops():
    config = PipelineConfig(smoothing="none", debounce=3, threshold=0.5)
    out = _feed(config, [A, A, B, A, A, A, B, B, B])
    assert [s for s, _ in out] == [-1, -1, -1, -1, -1, 0, 0, 0, 1]
    assert [c for _, c in out] == [False] * 5 + [True, False, False, True]


def test_threshold_makes_hops_uncertain_and_a_gesture_can_recur():
    config = PipelineConfig(smoothing="none", debounce=2, threshold=0.5)
    out = _feed(config, [A, A, U, U, A, A])
    assert [s for s, _ in out] == [-1, 0, 0, -1, -1, 0]
    # uncertainty becomes stable silently; the return of A is a new event
    assert [c for _, c in out] == [False, True, False, False, False, True]


def test_ema_smooths_a_single_outlier_away():
    config = PipelineConfig(smoothing="ema", smoothing_hops=5, debounce=1, threshold=0.5)
    out = _feed(config, [A] * 5 + [B] + [A] * 3)
    assert all(s == 0 for s, _ in out)
    assert sum(c for _, c in out) == 1


def test_ema_span_sets_alpha():
    decider = Decider(PipelineConfig(smoothing="ema", smoothing_hops=3, debounce=1,
                                      threshold=0.0), n_classes=3)
    decider.update(np.array(A))
    _, _, smoothed, _ = decider.update(np.array(B))
    np.testing.assert_allclose(smoothed, 0.5 * np.array(A) + 0.5 * np.array(B))  # 2/(3+1)


def test_majority_vote_over_the_last_hops():
    config = PipelineConfig(smoothing="majority", smoothing_hops=3, debounce=1, threshold=0.3)
    out = _feed(config, [A, B, A, B, B])
    assert [s for s, _ in out] == [0, 0, 0, 1, 1]


def test_config_checks_name_the_argument():
    with pytest.raises(ValueError, match="smoothing"):
        PipelineConfig(smoothing="median")
    with pytest.raises(ValueError, match="threshold"):
        PipelineConfig(threshold=1.5)
    with pytest.raises(ValueError, match="debounce"):
        PipelineConfig(debounce=0)
    with pytest.raises(ValueError, match="emit"):
        PipelineConfig(emit="sometimes")


def test_event_json_round_trip():
    event = GestureEvent("fist", 1, 0.87, (0.1, 0.87, 0.03), 1599, 12.5, 0.0042, 12.51, 2)
    d = json.loads(event.to_json())
    assert d["gesture"] == "fist" and d["class_index"] == 1 and d["sample_index"] == 1599
    assert d["latency_ms"] == pytest.approx(4.2) and d["model_version"] == 2
    assert "fist" in repr(event) and "4.2 ms" in repr(event)
