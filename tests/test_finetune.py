"""The finetune stage: the whole model learns the labels, the encoder at a lower rate, the
pose encoder stays frozen, and its options and data are checked."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from emgstream.io import LabelledStream
from emgstream.modelfile import Preprocessing
from emgstream.nn import EncoderConfig, GestureModel, PatchEncoder
from emgstream.train import Env, StageConfig, WindowSet, windows_from_streams
from emgstream.train._finetune import FineTune, run_finetune
from emgstream.train._trainer import _param_groups

torch.set_num_threads(1)

PREP = Preprocessing(sample_rate=500.0, n_channels=4, window=100, hop=10, bandpass=None,
                    notch=None)
CLASSES = ["a", "b", "c"]


def _windows(seconds=6.0, seed=0) -> WindowSet:
    """Class k holds an offset on channel k (no filters here to remove it) and bends joint k:
    learnable from one window, and the pose agrees with the label."""
    rng = np.random.default_rng(seed)
    n = int(seconds * PREP.sample_rate)
    labels = np.repeat(np.arange(n // 250) % 3, 250).astype(np.int16)
    emg = rng.standard_normal((n, 4)).astype(np.float32) * 20
    emg[np.arange(n), labels] += 40.0
    pose = rng.standard_normal((n, 20)) * 0.05
    pose[np.arange(n), labels] += 1.0
    stream = LabelledStream(emg=emg, sample_rate=PREP.sample_rate, labels=labels,
                            class_names=CLASSES, pose=pose, user="u0")
    return windows_from_streams([stream], PREP, stride=20)


def _labelled_windows() -> WindowSet:
    return _windows().relabel(CLASSES)


def _models(seed=0):
    torch.manual_seed(seed)
    model = GestureModel(EncoderConfig(4, 100, 10, 16, 2, 2), CLASSES, embed_dim=16, hop=10)
    pose = PatchEncoder(EncoderConfig(20, 100, 25, 16, 2, 2))
    return model, pose


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_finetune_learns_the_labels_with_a_slower_encoder(tmp_path):
    model, pose = _models()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pose_before = {k: v.clone() for k, v in pose.state_dict().items()}
    windows = _labelled_windows()
    x, _, y = windows.__getitems__(range(len(windows)))
    with torch.no_grad():
        start = float((model(x)[0].argmax(1) == y).float().mean())
    cfg = StageConfig(steps=40, batch_size=16, lr=1e-2, log_every=10,
                      options={"encoder_lr_scale": 0.25, "align_weight": 0.5})
    out = run_finetune(model, pose, windows, cfg, tmp_path, Env())
    assert out is model and not model.training
    with torch.no_grad():
        assert start < 0.5 and float((model(x)[0].argmax(1) == y).float().mean()) > 0.9
    rows = _rows(tmp_path / "metrics.csv")
    assert {"ce", "nce", "train_acc"} <= set(rows[0])
    assert float(rows[-1]["ce"]) < float(rows[0]["ce"])
    after = model.state_dict()
    for prefix in ("encoder.", "projection.", "classifier."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
    assert all(torch.equal(pose_before[k], v) for k, v in pose.state_dict().items())
    # the optimiser's groups: encoder and projection at a quarter of the classifier's rate
    groups = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert sorted({g["initial_lr"] for g in groups if g["params"]}) == [0.25 * 1e-2, 1e-2]


def test_param_groups_scale_by_name_and_keep_the_plain_layout():
    model, pose = _models()
    tuner = FineTune(model, pose, align_weight=0.5)
    cfg = StageConfig(steps=1, lr=1e-3, weight_decay=0.1)
    plain = _param_groups(tuner, cfg, {})
    assert [(g["lr"], g["weight_decay"]) for g in plain] == [(1e-3, 0.1), (1e-3, 0.0)]
    scaled = _param_groups(tuner, cfg, {"model.encoder.": 0.1})
    encoder = {id(p) for p in model.encoder.parameters()}
    for g in scaled:
        ids = {id(p) for p in g["params"]}
        assert ids <= encoder if g["lr"] == pytest.approx(1e-4) else not ids & encoder
    assert sum(len(g["params"]) for g in scaled if g["lr"] == pytest.approx(1e-4)) == len(encoder)
    # the frozen pose encoder is in no group
    ids = {id(p) for g in scaled for p in g["params"]}
    assert not ids & {id(p) for p in pose.parameters()}


def test_finetune_without_alignment_needs_no_pose(tmp_path):
    model, pose = _models()
    tuner = FineTune(model, pose, align_weight=0.0)
    x, _, y = _labelled_windows().__getitems__(range(8))
    loss, logs = tuner(x, None, y)
    assert torch.isfinite(loss) and "nce" not in logs


def test_finetune_errors_name_the_problem(tmp_path):
    model, pose = _models()
    windows = _labelled_windows()
    with pytest.raises(ValueError, match=r"unknown options \['align'\]"):
        run_finetune(model, pose, windows, StageConfig(steps=1, options={"align": 1.0}),
                     tmp_path, Env())
    with pytest.raises(ValueError, match=r"encoder_lr_scale must be in \(0, 1\], got 2"):
        run_finetune(model, pose, windows,
                     StageConfig(steps=1, options={"encoder_lr_scale": 2}), tmp_path, Env())
    with pytest.raises(ValueError, match="align_weight must be >= 0, got -1"):
        FineTune(model, pose, align_weight=-1)
    unlabelled = _windows()  # windows across two gestures are labelled -1
    assert int(unlabelled.labels.min()) == -1
    with pytest.raises(ValueError, match="labelled windows only"):
        run_finetune(model, pose, unlabelled, StageConfig(steps=1), tmp_path, Env())
