"""The training loop: resume equals an uninterrupted run; DDP ranks stay in step (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from emgstream.io import LabelledStream
from emgstream.modelfile import Preprocessing
from emgstream.nn import MAE, EncoderConfig
from emgstream.train import Env, StageConfig, fit, windows_from_streams

torch.set_num_threads(1)


def _streams(n_users=2, seconds=2.0, rate=500.0, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = []
    for u in range(n_users):
        labels = np.repeat(np.arange(n // 250) % 3, 250).astype(np.int16)
        labels = np.pad(labels, (0, n - len(labels)), constant_values=-1)
        out.append(LabelledStream(
            emg=(rng.standard_normal((n, channels)) * 20).astype(np.float32), sample_rate=rate,
            labels=labels, class_names=["a", "b", "c"],
            pose=rng.standard_normal((n, 20)) * 0.3, user=f"u{u}"))
    return out


def _windows():
    prep = Preprocessing(sample_rate=500.0, n_channels=4, window=100, hop=10)
    return windows_from_streams(_streams(), prep, stride=20)


def _mae():
    torch.manual_seed(0)
    return MAE(EncoderConfig(4, 100, 10, d_model=16, n_layers=1, n_heads=2), decoder_layers=1)


def test_windows_are_cut_filtered_and_labelled():
    ws = _windows()
    emg, pose, labels = ws.__getitems__([0, 5])
    assert emg.shape == (2, 4, 100) and pose.shape == (2, 20, 100) and labels.shape == (2,)
    assert set(ws.labels.tolist()) <= {-1, 0, 1, 2}
    assert (ws.labels == -1).any() and (ws.labels >= 0).any()  # windows over label changes
    sub = ws.relabel(["c", "a"])
    assert set(sub.labels.tolist()) == {0, 1} and len(sub) < len(ws)
    # channel rotation: every window is its own channels turned by -1, 0 or +1
    torch.manual_seed(0)
    rot, _, _ = ws.rotated(1).__getitems__(list(range(20)))
    plain, _, _ = ws.__getitems__(list(range(20)))
    shifts = [next(s for s in (-1, 0, 1) if torch.equal(r, torch.roll(p, s, dims=0)))
              for r, p in zip(rot, plain)]
    assert set(shifts) == {-1, 0, 1}


def test_resume_repeats_an_uninterrupted_run(tmp_path):
    ws = _windows()
    cfg = StageConfig(steps=6, batch_size=8, lr=1e-3, checkpoint_every=3, log_every=1)
    straight = fit(_mae(), ws, cfg, tmp_path / "a", Env(), seed=1)
    fit(_mae(), ws, cfg, tmp_path / "b", Env(), seed=1, stop_after=3)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    resumed = fit(_mae(), ws, cfg, tmp_path / "b", Env(), seed=1)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 6
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,lr,windows_per_s") and len(rows) == 7
    # and training moved the weights
    assert not torch.equal(straight.state_dict()["encoder.tokenizer.weight"],
                           _mae().state_dict()["encoder.tokenizer.weight"])


_DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_train_trainer import _mae, _windows
    from emgstream.train import StageConfig, fit, init_distributed
    env = init_distributed()
    assert env.world_size == 2, env
    cfg = StageConfig(steps=4, batch_size=8, lr=1e-3, checkpoint_every=2)
    model = fit(_mae(), _windows(), cfg, {out!r}, env, seed=0)
    torch.save(model.state_dict(), {out!r} + f"/rank{{env.rank}}.pt")
""")


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree(tmp_path):
    script = tmp_path / "ddp.py"
    out = str(tmp_path / "run")
    script.write_text(_DDP_SCRIPT.format(tests=os.path.dirname(__file__), out=out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--standalone", str(script)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(f"{out}/rank0.pt", weights_only=True)
    b = torch.load(f"{out}/rank1.pt", weights_only=True)
    start = _mae().state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(a["encoder.tokenizer.weight"], start["encoder.tokenizer.weight"])
    assert torch.load(f"{out}/checkpoint.pt", weights_only=True)["step"] == 4
