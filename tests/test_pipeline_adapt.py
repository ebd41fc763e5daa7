"""Online adaptation inside the live pipeline: a real OnlineAdapter (torch) hot-swapping the
ONNX session at hop boundaries while inference goes on."""

from __future__ import annotations

import glob
import os
import threading
import time

import numpy as np
import pytest

from emgstream.modelfile import load_model_file
from emgstream.pipeline import GestureEvent, Pipeline, PipelineConfig
from emgstream.sources import open_source

pytest.importorskip("torch", reason="needs the adapt extra (torch)")
from emgstream import adapt
from emgstream import train


@pytest.fixture(scope="module")
def model():
    return train.make_test_model()


def _child_processes() -> set[int]:
    """Pids of this process's live children (Linux /proc)."""
    pids = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as f:
            pids.update(int(pid) for pid in f.read().split())
    return pids


def _eager_adapter():
    # a random test model is never confident: accept every pseudo-label so steps happen
    return adapt.OnlineConfig(min_windows=16, xi=0.0, n_consecutive=1, batch_size=8,
                              steps_per_call=1, guard=None)


@pytest.mark.slow
def test_adaptation_swaps_models_without_losing_a_hop(model, tmp_path):
    baseline = set(threading.enumerate())
    children = _child_processes()
    config = PipelineConfig(emit="hop", max_catchup_hops=1000, adapt=True,
                            adapt_swap_seconds=0.3, adapt_config=_eager_adapter())
    pipeline = Pipeline(open_source("sim://"), model, config)
    events: list[GestureEvent] = []
    pipeline.subscribe(events.append)
    with pipeline:
        deadline = time.monotonic() + 30
        while pipeline.stats.model_version < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.adaptation_running and pipeline.adaptation_error is None
        stats = pipeline.stats
        assert stats.model_version >= 1, stats
        assert stats.adaptation.windows_seen > 0 and stats.adaptation.steps > 0
        saved = pipeline.save_personalized(tmp_path / "alice.emgm", user="alice")
        pipeline.stop_adaptation()
        assert not pipeline.adaptation_running
        version = pipeline.stats.model_version
        pipeline.reset_adaptation()  # back to the source model, at the next hop
        deadline = time.monotonic() + 10
        while (pipeline.stats.adaptation.windows_seen or pipeline.stats.model_version
               <= version) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeline.stats.adaptation.windows_seen == 0
        assert pipeline.stats.model_version > version
    assert set(threading.enumerate()) == baseline
    assert _child_processes() == children  # the adapter process is gone too
    index = np.array([e.sample_index for e in events])
    np.testing.assert_array_equal(np.diff(index), model.preprocessing.hop)
    versions = [e.model_version for e in events]
    assert versions == sorted(versions) and versions[-1] >= 2
    personal = load_model_file(saved)
    assert personal.provenance["personalized_for"] == "alice"
    assert personal.preprocessing == model.preprocessing
    assert personal.class_names == model.class_names


def test_adaptation_needs_a_running_pipeline(model):
    pipeline = Pipeline(open_source("sim://"), model)
    with pytest.raises(RuntimeError, match="start the pipeline"):
        pipeline.start_adaptation()
    with pipeline:
        with pytest.raises(RuntimeError, match="adaptation has not run"):
            pipeline.save_personalized("x.emgm", "bob")
