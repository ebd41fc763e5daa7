"""Online EMG-UP: small SSP (and optional SSA) steps on a buffer of the user's recent windows.

The live pipeline's adaptation thread owns an :class:`OnlineAdapter` and is its only caller:

    adapter = OnlineAdapter(model_file)
    while running:
        adapter.observe(windows)        # (batch, channels, window), filtered, un-normalised
        if adapter.step():              # a few optimiser steps; True when a new model is ready
            swap_in(adapter.export())   # ONNX bytes, hot-swapped by inference at a hop boundary
    adapter.save(path, user="alice")

Processing order of :meth:`step`: (1) windows observed since the last step go through the
EMA teacher and its outputs are stored with the buffer (probabilities, confidences and
embeddings); (2) pseudo-labels: with ``method="emg-up+"`` (the default, as offline, see
:mod:`emgstream.adapt.methods`) every buffered window takes the label of its nearest
class centroid of the stored teacher embeddings, and the class prior is the stored
probabilities' mean; with ``method="emg-up"`` (the paper) the kept set is the buffer's
windows whose teacher confidence is above xi inside runs of N_c consistent windows;
(3) ``steps_per_call`` steps on random batches (emg-up+: cross-entropy on the centroid
labels plus information maximisation towards the estimated prior, classifier frozen;
emg-up: cross-entropy on the kept windows), each followed by the EMA update; optionally one
SSA step on a random batch first; (4) the collapse guard checks the served model on a
sample of the buffer against the source model and rolls back to the last good state if
needed. A stored teacher output is at most one buffer old: the teacher moves slowly, and
re-running it over the whole buffer at every call would cost the pipeline's other core.

The served model is the EMA teacher, not the student the paper returns offline: a small noisy
step on a few windows moves the student; the teacher averages hundreds of them, so the live
model changes smoothly. Torch runs on one thread so that inference keeps the other cores.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .._checks import check_option, check_positive_int
from .evaluate import _jsonable
from ._stats import OnlineStats
from .guard import CollapseGuard, GuardConfig
from .ssa import SSAHead, ssa_loss
from .ssp import (centroid_labels, confident_mask, consistent_runs, ema_update,
                  information_maximisation, ssp_loss, teacher_outputs)

__all__ = ["OnlineConfig", "OnlineStats", "OnlineAdapter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineConfig:
    method: str = "emg-up+"  #: "emg-up+" (the default, as offline) or "emg-up" (the paper)
    buffer_windows: int = 1024  #: recent windows kept (about 50 s at a 50 ms hop)
    min_windows: int = 128  #: no step before this many windows were seen
    batch_size: int = 32
    steps_per_call: int = 2  #: SSP steps per :meth:`OnlineAdapter.step`
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.99)
    weight_decay: float = 3e-4
    alpha: float = 0.996
    xi: float = 0.8
    n_consecutive: int = 1  #: as offline (dev users); the paper's 15 is an option
    ssa: bool = False  #: one SSA step per call before the SSP steps
    temperature: float = 0.1
    #: keep a "fixed" input normalisation at the channel statistics of every window observed
    #: since the last reset (online AdaBN, as ``AdaptConfig.renormalise`` offline). All of
    #: them, not the buffer's: a buffer's statistics swing with the gestures in it, and on
    #: 3DC accuracy swung with them (29.7 -> 52.6 -> 41.6 % for P1, bench_adapt_online.py)
    renormalise: bool = True
    #: seconds of windows (one per hop) before the first re-estimate: statistics of the first
    #: 40 s of a 3DC block (rest and a few gestures) took P2 from 53 % to 36 %
    renormalise_after_s: float = 60.0
    guard: GuardConfig | None = field(default_factory=GuardConfig)
    guard_every: int = 10  #: guard check every this many calls that stepped
    guard_windows: int = 256
    seed: int = 0


class OnlineAdapter:
    """EMG-UP adaptation driven by one thread; see the module docstring.

    Parameters
    ----------
    model_file : emgstream.modelfile.ModelFile
        The source model (its ``weights`` and ``architecture`` rebuild the torch module).
    config : OnlineConfig
    """

    def __init__(self, model_file, config: OnlineConfig = OnlineConfig()) -> None:
        from ..nn import load_model

        torch.set_num_threads(1)
        self.model_file = model_file
        self.config = config
        check_positive_int(config.buffer_windows, "buffer_windows")
        check_positive_int(config.batch_size, "batch_size")
        check_option(config.method, "method", {"emg-up+", "emg-up"})
        self._source = load_model(model_file).eval()
        p = model_file.preprocessing
        self._shape = (p.n_channels, p.window)
        self._renormalise_after = int(np.ceil(config.renormalise_after_s * p.sample_rate / p.hop))
        self._lock = threading.Lock()  # observe() may come from another thread than step()
        self.reset()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the user: back to the source model, empty buffer, zero stats."""
        c = self.config
        with self._lock:
            self._buffer = np.zeros((c.buffer_windows, *self._shape), np.float32)
            self._probs = np.zeros((c.buffer_windows, len(self._source.class_names)),
                                   np.float32)
            self._embeddings = np.zeros((c.buffer_windows, self._source.embed_dim), np.float32)
            self._written = 0  # total windows ever observed (ring position)
            # per channel: samples, sum, sum of squares of every window observed (float64)
            self._moments = np.zeros((3, self._shape[0]))
            self._labelled = 0  # windows labelled by the teacher so far
        self._reference = copy.deepcopy(self._source).eval()  # source, maybe renormalised
        self.student = copy.deepcopy(self._source).train()
        self.teacher = copy.deepcopy(self._source).eval()
        # emg-up+ keeps the source's classifier (hypothesis transfer), as offline
        params = [p for n, p in self.student.named_parameters()
                  if c.method == "emg-up" or not n.startswith("classifier.")]
        self._optimizer = torch.optim.Adam(params, lr=c.lr, betas=c.betas,
                                           weight_decay=c.weight_decay)
        self._ssa_head = None
        if c.ssa:
            enc = self.student.encoder
            self._ssa_head = SSAHead(enc.config.d_model, enc.n_patches)
            self._optimizer.add_param_group({"params": list(self._ssa_head.parameters())})
        modules = {"student": self.student, "teacher": self.teacher,
                   "optimizer": self._optimizer}
        if self._ssa_head is not None:
            modules["ssa_head"] = self._ssa_head
        self._guard_modules = modules
        self._guard = None
        self._generator = torch.Generator().manual_seed(c.seed)
        self._calls = 0
        self.stats = OnlineStats()

    @property
    def served(self):
        """The model :meth:`export` and :meth:`save` hand out (the EMA teacher)."""
        return self.teacher

    # -- the thread's calls -----------------------------------------------------------------
    def observe(self, windows) -> None:
        """Add windows float32 (batch, channels, window), filtered and un-normalised."""
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim == 2:
            w = w[None]
        if w.ndim != 3 or w.shape[1:] != self._shape:
            raise ValueError(f"windows must be (batch, {self._shape[0]}, {self._shape[1]}), "
                             f"got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("windows contain non-finite values")
        n = self.config.buffer_windows
        count = len(w)
        with self._lock:
            if self.config.renormalise:
                self._moments[0] += w.shape[0] * w.shape[2]
                self._moments[1] += w.sum(axis=(0, 2), dtype=np.float64)
                self._moments[2] += np.square(w, dtype=np.float64).sum(axis=(0, 2))
            w = w[-n:]  # more than the buffer holds: only the newest can stay
            pos = (self._written + count - len(w) + np.arange(len(w))) % n
            self._buffer[pos] = w
            self._written += count
        self.stats.windows_seen += count

    def step(self) -> bool:
        """A few adaptation steps; True when a new model is ready for :meth:`export`."""
        t0 = time.perf_counter()
        try:
            return self._step()
        finally:
            self.stats.seconds_in_step += time.perf_counter() - t0

    def _ordered(self):
        """Buffer contents in time order: (x (m, C, W), index into the ring (m,))."""
        n = self.config.buffer_windows
        with self._lock:
            m = min(self._written, n)
            idx = (self._written - m + np.arange(m)) % n
            return torch.from_numpy(self._buffer[idx].copy()), idx, self._written

    def _step(self) -> bool:
        c = self.config
        if self.stats.windows_seen < c.min_windows:
            return False
        x, idx, written = self._ordered()
        if (c.renormalise and self.student.normalisation.mode == "fixed"
                and self.stats.windows_seen >= self._renormalise_after):
            self._renormalise()
        # (1) teacher outputs for the windows not yet seen by the teacher
        new = min(written - self._labelled, len(idx))
        if new > 0:
            probs, embeddings = teacher_outputs(self.teacher, x[-new:])
            self._probs[idx[-new:]] = probs.numpy()
            self._embeddings[idx[-new:]] = embeddings.numpy()
            self._labelled = written
        # (2) pseudo-labels (time order; one segment: the buffer is consecutive hops)
        probs = torch.from_numpy(self._probs[idx])
        if c.method == "emg-up+":
            labels = centroid_labels(probs, torch.from_numpy(self._embeddings[idx])).numpy()
            prior = probs.mean(dim=0)
            keep = np.ones(len(idx), bool)
        else:
            confidence, labels = probs.max(dim=1)
            labels = labels.numpy()
            keep = consistent_runs(labels, confident_mask(confidence, c.xi).numpy(),
                                   np.zeros(len(idx), int), c.n_consecutive)
        self.stats.acceptance = float(keep.mean())
        kept = np.flatnonzero(keep)
        if c.guard is not None and self._guard is None:
            # created before the first step, so that its first good state is the source's
            ref = x[torch.randperm(len(x), generator=self._generator)[:c.guard_windows]]
            self._guard = CollapseGuard(self._reference, ref, self._guard_modules, c.guard)
        stepped = False
        self.student.train()
        if self._ssa_head is not None and len(x) >= 2:
            batch = torch.randint(len(x), (min(c.batch_size, len(x)),), generator=self._generator)
            self._optimise(ssa_loss(self.student, self._ssa_head, x[batch], c.temperature))
            stepped = True
        # (3) SSP steps with the EMA teacher
        if len(kept) >= min(c.batch_size, 8):
            y = torch.from_numpy(labels)
            for _ in range(c.steps_per_call):
                pick = torch.from_numpy(kept)[torch.randint(len(kept), (c.batch_size,),
                                                            generator=self._generator)]
                if c.method == "emg-up+":
                    logits = self.student(x[pick])[0]
                    loss = (torch.nn.functional.cross_entropy(logits, y[pick])
                            + information_maximisation(torch.softmax(logits, dim=-1), prior))
                else:
                    loss = ssp_loss(self.student, x[pick], y[pick])
                self._optimise(loss)
                ema_update(self.teacher, self.student, c.alpha)
                self.stats.teacher_updates += 1
                self.stats.pseudo_labels_accepted += len(pick)
            stepped = True
        if not stepped:
            return False
        self._calls += 1
        # (4) guard
        if self._guard is not None and self._calls % c.guard_every == 0:
            ref = x[torch.randperm(len(x), generator=self._generator)[:c.guard_windows]]
            self._guard.set_reference(self._reference, ref)
            check = self._guard.check(self.served)
            self.stats.agreement_with_source = check.agreement
            self.stats.balance = check.balance
            if not check.ok:  # restored to the last checked state: inference takes that
                self.stats.rollbacks += 1
        self.stats.models_ready += 1
        return True

    def _optimise(self, loss) -> None:
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self.stats.steps += 1

    def _renormalise(self) -> None:
        with self._lock:
            n, total, squares = self._moments
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
        with torch.no_grad():
            for model in (self.student, self.teacher, self._reference):
                model.normalisation.mean.copy_(torch.from_numpy(mean))
                model.normalisation.std.copy_(torch.from_numpy(std))

    # -- outputs ----------------------------------------------------------------------------
    def export(self) -> bytes:
        """The served model as an ONNX graph (same inputs/outputs as the model file's)."""
        from ..nn import export_onnx

        return export_onnx(copy.deepcopy(self.served))

    def save(self, path, user: str):
        """Write the personalized model file for ``user``; returns the path."""
        from ..modelfile import save_model_file
        from ..train import to_model_file

        mf = self.model_file
        provenance = {**mf.provenance, "personalized_for": str(user),
                      "adaptation": {"method": f"{self.config.method}-online", "config": _jsonable(asdict(
                          self.config)), "stats": _jsonable(asdict(self.stats))}}
        personal = to_model_file(copy.deepcopy(self.served).eval(), mf.preprocessing,
                                 mf.class_names, bank=mf.bank, provenance=provenance,
                                 metrics=mf.metrics)
        return save_model_file(path, personal)

    def __repr__(self) -> str:
        s = self.stats
        return (f"<OnlineAdapter {self._shape[0]} ch x {self._shape[1]}: {s.windows_seen} "
                f"windows seen, {s.steps} steps, {s.teacher_updates} teacher updates, "
                f"{s.rollbacks} rollbacks>")

