"""One training stage: AdamW + cosine warm restarts, DDP, bf16 autocast, checkpoints, logs.

Runs the same on one CPU, one GPU, or many GPUs / nodes under ``torchrun`` (the process group
is set up by :func:`init_distributed` from torchrun's environment variables). Only rank 0
writes checkpoints, the metrics CSV and the progress bar.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

logger = logging.getLogger(__name__)


@dataclass
class StageConfig:
    """Optimisation settings of one stage (defaults: CPEP appendix B).

    ``steps``: optimiser steps in all; ``restart_steps``: T_0 of the cosine schedule with warm
    restarts (CPEP cites SGDR); ``options``: what the stage itself reads (mask ratio, ...).
    """

    steps: int
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-5
    restart_steps: int | None = None  #: None = one cosine period over all steps
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    log_every: int = 25
    checkpoint_every: int = 200
    num_workers: int = 0
    options: dict = field(default_factory=dict)


class Env:
    """Where this process runs: device, rank, world size, autocast."""

    def __init__(self) -> None:
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast on CUDA; plain float32 on CPU."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.device.type == "cuda")

    def __repr__(self) -> str:
        return f"<Env {self.device}, rank {self.rank}/{self.world_size}>"


def init_distributed() -> Env:
    """Join torchrun's process group when launched by it (NCCL on GPUs, gloo on CPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Env()


def _keep(batch):
    return batch


def _param_groups(module: nn.Module, cfg: StageConfig, lr_scales: dict[str, float]) -> list:
    """AdamW groups: per learning-rate scale, one with weight decay and one without (biases,
    norms, tokens, positions and the temperature: 1-D or scalar). Without ``lr_scales``
    exactly two groups, decay first, as checkpoints of earlier runs hold them."""
    groups: dict[float, tuple[list, list]] = {1.0: ([], [])}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((s for prefix, s in lr_scales.items() if name.startswith(prefix)), 1.0)
        decay, no_decay = groups.setdefault(float(scale), ([], []))
        (decay if p.ndim >= 2 and p.shape[0] > 1 else no_decay).append(p)
    return [g for scale, (decay, no_decay) in groups.items()
            for g in ({"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr * scale},
                      {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr * scale})]


def fit(module: nn.Module, dataset: Dataset, cfg: StageConfig, out_dir: str | Path,
        env: Env, seed: int = 0, inputs: tuple[int, ...] = (0,), desc: str = "train",
        resume: bool = True, stop_after: int | None = None,
        lr_scales: dict[str, float] | None = None) -> nn.Module:
    """Train ``module`` whose ``forward(*(batch[i] for i in inputs))`` returns the loss or
    ``(loss, logs dict)``.

    Checkpoints go to ``out_dir/checkpoint.pt`` (every ``checkpoint_every`` steps and at the
    end) and are resumed from when ``resume``; ``stop_after`` ends early after that many
    steps in all (to test resume). Metrics go to ``out_dir/metrics.csv``. Returns the module
    (unwrapped from DDP) in eval mode.

    ``lr_scales`` maps parameter-name prefixes to multipliers of ``cfg.lr`` (the first
    matching prefix wins, others get 1). The schedule's floor stays ``cfg.lr *
    cfg.min_lr_ratio`` for every group (``CosineAnnealingWarmRestarts`` has one).
    """
    out_dir = Path(out_dir)
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    module.to(env.device)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"stage {desc!r} has nothing to train")
    optimizer = torch.optim.AdamW(_param_groups(module, cfg, lr_scales or {}), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_steps or cfg.steps, eta_min=cfg.lr * cfg.min_lr_ratio)
    model = module
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=False)

    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank,
                                 shuffle=True, seed=seed, drop_last=True)
    per_rank = cfg.batch_size // env.world_size
    if per_rank < 1 or len(sampler) < per_rank:
        raise ValueError(f"stage {desc!r}: {len(dataset)} windows are too few for batches of "
                         f"{cfg.batch_size} on {env.world_size} processes")
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, collate_fn=_keep,
                        # workers keep the recordings they have read and filtered across epochs
                        persistent_workers=cfg.num_workers > 0,
                        pin_memory=env.device.type == "cuda",
                        # its own generator, so that starting an epoch leaves the global RNG
                        # (MAE masks) alone and a resumed run repeats an uninterrupted one
                        generator=torch.Generator().manual_seed(seed))
    steps_per_epoch = len(loader)

    step = 0
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=env.device, weights_only=True)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        step = int(state["step"])
        logger.info("%s: resumed at step %d from %s", desc, step, ckpt_path)

    def save() -> None:
        if env.is_main:
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                        "step": step}, tmp)
            tmp.replace(ckpt_path)

    log = _MetricsLog(out_dir / "metrics.csv", enabled=env.is_main)
    bar = None
    if env.is_main:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=desc, unit="step", dynamic_ncols=True,
                   disable=None)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    module.train()
    t0, seen, start = time.perf_counter(), 0, time.perf_counter()
    while step < end:
        epoch, skip = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i < skip:  # resume mid-epoch on the same data order
                continue
            batch = [batch[i].to(env.device, non_blocking=True) for i in inputs]
            with env.autocast():
                out = model(*batch)
            loss, logs = out if isinstance(out, tuple) else (out, {})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(batch[0]) * env.world_size
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"{desc}: loss is {float(loss.detach())} at step {step}")
            if step % cfg.log_every == 0 or step == end:
                dt = time.perf_counter() - t0
                row = {"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                       "windows_per_s": seen / dt if dt > 0 else 0.0, **logs}
                log.write(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", win_s=f"{row['windows_per_s']:.0f}")
                t0, seen = time.perf_counter(), 0
            if bar is not None:
                bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == end:
                save()
            if step >= end:
                break
    if bar is not None:
        bar.close()
    log.close()
    if env.is_main:
        logger.info("%s: %d steps in %.1f s", desc, end, time.perf_counter() - start)
    return module.eval()


class _MetricsLog:
    """Rows to a CSV (header from the first row) and to TensorBoard when it is installed."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self._file = self._writer = self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                pass

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            new = not self.path.exists()
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row), extrasaction="ignore")
            if new:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step":
                    self._tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
