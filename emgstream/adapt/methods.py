"""Offline source-free adaptation of a :class:`~emgstream.nn.GestureModel` to one user.

:func:`adapt` runs one method on the user's unlabelled windows and returns a new model:

==================  =========================================================================
method              what it does
==================  =========================================================================
``"ssa"``           EMG-UP stage 1 only (eq. 4-6), :mod:`emgstream.adapt.ssa`
``"ssp"``           EMG-UP stage 2 only (eq. 7-10), :mod:`emgstream.adapt.ssp`
``"emg-up"``        stage 1 then stage 2 (Algorithm 1)
``"adabn"``         re-estimate the input normalisation statistics on the user's windows
``"shot-im"``       SHOT's information maximisation (Liang et al. 2020): mean per-window
                    entropy minus entropy of the mean prediction; the classifier is frozen
``"pseudo-label"``  self-training on the model's own confident pseudo-labels, no EMA teacher
``"emg-up+"``       the product's default: EMG-UP's framework (stage 1, then stage 2 with the
                    EMA teacher) with the departures below
==================  =========================================================================

``"emg-up+"`` departs from the paper's stage 2 where the paper's version loses to the
baselines on new people (each departure is a row or an ablation in
``benchmarks/results/cross_user_3dc.md``):

- pseudo-labels for every window, refreshed every epoch, instead of the teacher's argmax
  above xi = 0.8 (on the dev tuning group the confident argmax kept too few windows and too
  many wrong ones: SSP 34.9 % against AdaBN 41.8 %). When the caller has the source's
  classical bar (``emgstream eval`` does: LDA on per-person z-scored Hudgins features of
  the training people), the label is the argmax of the teacher's probabilities times the
  person's self-calibrated LDA posteriors (``classical``, the ``lda-kmeans`` row's view):
  the person's own feature clusters carry what the cross-user network cannot know
  (tuning group: 51.5 % against 43.8 % with centroids alone and 48.4 % for lda-kmeans;
  on the test group the fusion stayed the best deep row but fell 3.4 points under
  lda-kmeans, see ``benchmarks/results/cross_user.md``).
  Without it, the label is the nearest class centroid of the teacher's embeddings
  (:func:`~emgstream.adapt.ssp.centroid_labels`). Self-calibrating the LDA from the
  teacher's own labels instead of the source LDA's fell back to 41.7 %: the start matters;
- an information-maximisation term (SHOT) whose diversity target is the class prior
  *estimated* as the teacher's mean prediction on the person's windows, not a uniform
  prior (:func:`~emgstream.adapt.ssp.information_maximisation`): a live stream is mostly
  rest;
- the classifier is frozen (SHOT's hypothesis transfer): the source's decision rule stays,
  the features move to it;
- the collapse guard (as for every method) rolls a person back to the last state that
  passed its label-free checks.

Tried on the tuning group and not kept (no gain beyond noise): temporal smoothing of the
teacher's probabilities, gain-jitter consistency between the student's and the teacher's
views, a learning rate of 3e-4, an LDA / k-means head on the adapted embeddings.

Every gradient method updates the whole backbone (encoder, projection) and, except SHOT-IM,
the classifier. By default (``AdaptConfig.renormalise``) each starts from the model with the
user's own input statistics (AdaBN), then leaves the normalisation buffers alone. Each is
watched by the :class:`~emgstream.adapt.guard.CollapseGuard`, checked after every epoch.

Why renormalise by default: the paper adapts a batch-norm CNN and fine-tunes "the whole
backbone"; a batch-norm network fine-tuned in training mode on the user's data re-estimates
its statistics on that user. Our LayerNorm Transformer keeps its only data statistics in the
input normalisation, so re-estimating those is the same step. It is applied to every method
alike (the AdaBN row is that step alone), so the comparison between methods stays fair.

AdaBN on a LayerNorm Transformer: LayerNorm keeps no running statistics, so the only
statistics that describe the data are the input normalisation's. With ``"fixed"``
normalisation (the 3DC recipe) AdaBN replaces the stored per-channel mean and std by the
user's; with ``"instance"`` normalisation every window is already normalised by its own
statistics, so AdaBN is the identity (reported as such, not hidden).

Hyper-parameters: the paper's (Adam betas (0.5, 0.99), weight decay 3e-4, batch 64, 5 SSA
epochs, 10 SSP epochs, T = 17, alpha = 0.996, xi = 0.8) except these, chosen on the 3DC dev
people P1-P3 with a source model trained on P4-P11 (``benchmarks/bench_adapt.py``, table in
``benchmarks/results/adapt_dev_3dc.md``; the source model of ``emgstream eval``, trained on
per-user statistics, :attr:`~emgstream.adapt.evaluate.EvalConfig.per_user_statistics`;
source-only 29.9 %, AdaBN alone 36.4 %):

- learning rate 1e-4, not the paper's 1e-7: at 1e-7 (both stages, 15 epochs) the relative
  parameter change is 1.2e-4 and EMG-UP scores 36.5 %, AdaBN alone plus 0.1 points: nothing
  is adapted; at 1e-4, 40.6 %;
- stage-1 learning rate 1e-6: SSA lowered accuracy whenever it moved the model (EMG-UP with
  SSA at 1e-4: 32.3 %), so it is kept small;
- N_c = 1 (eq. 8 alone): with the paper's N_c = 15, 15 % of windows pass and SSP scores
  37.8 %; with N_c = 1, 43 % pass and SSP scores 41.1 %;
- AdaBN before the gradient methods (``renormalise``): SSP without it scores 32.4 %. (On a
  source trained on pooled statistics AdaBN helped one dev person and hurt two: such a
  source never saw a user's own statistics.)
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .guard import CollapseGuard, GuardConfig
from .ssa import SSAHead, ssa_loss
from .ssp import (centroid_labels, confident_mask, consistent_runs, ema_update,
                  information_maximisation, pseudo_labels, ssp_loss, teacher_outputs)

__all__ = ["METHODS", "DEFAULT_METHOD", "AdaptConfig", "AdaptReport", "adapt", "adabn", "parameter_change"]

logger = logging.getLogger(__name__)

METHODS = ("ssa", "ssp", "emg-up", "adabn", "shot-im", "pseudo-label", "emg-up+")
DEFAULT_METHOD = "emg-up+"  #: what calibrate, online adaptation and the window use


@dataclass(frozen=True)
class AdaptConfig:
    """Hyper-parameters of every method (see the module docstring for their origin)."""

    lr: float = 1e-4  #: paper: 1e-7, which does not move the model (measured)
    ssa_lr: float | None = 1e-6  #: stage-1 learning rate; None = ``lr`` (the paper: same)
    betas: tuple[float, float] = (0.5, 0.99)
    weight_decay: float = 3e-4
    batch_size: int = 64
    ssa_epochs: int = 5
    ssp_epochs: int = 10
    steps: int = 17  #: T, context length in patches
    future: int = 8  #: K, predicted steps
    temperature: float = 0.1  #: InfoNCE temperature; 1.0 is eq. 6 verbatim
    alpha: float = 0.996  #: EMA decay (eq. 10)
    xi: float = 0.8  #: confidence threshold (eq. 8)
    n_consecutive: int = 1  #: N_c, sequence-level consistency (1 = eq. 8 alone; paper 15)
    final: str = "student"  #: which SSP model is returned ("student" as Algorithm 1, "teacher")
    renormalise: bool = True  #: AdaBN first (the user's input statistics), then the method
    guard: GuardConfig | None = field(default_factory=GuardConfig)
    guard_windows: int = 512
    seed: int = 0

    def replace(self, **changes) -> "AdaptConfig":
        return AdaptConfig(**{**asdict(self), "guard": self.guard, **changes})


@dataclass
class AdaptReport:
    """What an adaptation did, measurable without labels."""

    method: str
    windows: int
    seconds: float = 0.0
    steps: int = 0
    losses: list = field(default_factory=list)  #: mean loss per epoch
    accepted: float = float("nan")  #: fraction of windows with a kept pseudo-label (last epoch)
    teacher_updates: int = 0
    rollbacks: int = 0
    parameter_change: float = 0.0  #: ||theta - theta_0|| / ||theta_0||
    balance: float = float("nan")  #: class balance of the final model on the guard's windows
    agreement: float = float("nan")  #: agreement with the source model, same windows

    def to_dict(self) -> dict:
        return asdict(self)


def parameter_change(model, reference) -> float:
    """Relative L2 distance ||theta - theta_ref|| / ||theta_ref|| over all parameters."""
    num = den = 0.0
    for p, q in zip(model.parameters(), reference.parameters()):
        num += float((p.detach() - q.detach()).pow(2).sum())
        den += float(q.detach().pow(2).sum())
    return (num / max(den, 1e-30)) ** 0.5


def adabn(model, windows: torch.Tensor):
    """AdaBN for our models: the user's per-channel mean/std into ``"fixed"`` normalisation.

    windows (n, channels, window), filtered and un-normalised. Returns a new model; with
    ``"instance"`` or ``"none"`` normalisation a plain copy (there are no statistics).
    """
    model = copy.deepcopy(model)
    norm = model.normalisation
    if norm.mode == "fixed":
        with torch.no_grad():
            norm.mean.copy_(windows.mean(dim=(0, 2)))
            norm.std.copy_(windows.std(dim=(0, 2)))
    else:
        logger.info("AdaBN: %r normalisation has no statistics; the model is unchanged",
                    norm.mode)
    return model


def adapt(model, windows, segments=None, method: str = "emg-up",
          config: AdaptConfig = AdaptConfig(), progress=None, classical=None):
    """Adapt ``model`` to one user's unlabelled ``windows`` with ``method``.

    Parameters
    ----------
    model : GestureModel
        The source model; it is not modified.
    windows : ndarray or Tensor, float32 (n, channels, window)
        Filtered, un-normalised, in time order within each recording.
    segments : ndarray (n,), optional
        Recording id of each window (runs of N_c never cross recordings); default one.
    method : one of :data:`METHODS`
    progress : callable(int), optional
        Called with the number of optimiser steps just done (a tqdm ``update``).
    classical : ndarray (n, classes), optional
        ``"emg-up+"`` only: class probabilities of the same windows from the label-free
        classical self-calibration (``PersonalLDA.posteriors``, see
        :mod:`emgstream.adapt.classical`), fused with the teacher's into the pseudo-labels.
        Without it the
        pseudo-labels are the teacher's class centroids.

    Returns
    -------
    (GestureModel, AdaptReport)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    if x.ndim != 3 or x.shape[1:] != (model.n_channels, model.window):
        raise ValueError(f"windows must be (n, {model.n_channels}, {model.window}), got "
                         f"{tuple(x.shape)}")
    if len(x) == 0:
        raise ValueError("no windows to adapt on")
    segments = np.zeros(len(x), int) if segments is None else np.asarray(segments)
    if segments.shape != (len(x),):
        raise ValueError(f"segments must have shape ({len(x)},), got {segments.shape}")
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    report = AdaptReport(method, len(x))
    original = model
    if config.renormalise or method == "adabn":
        model = adabn(model, x)
    source = copy.deepcopy(model).eval()
    if classical is not None:
        classical = torch.as_tensor(np.asarray(classical, dtype=np.float32))
        if classical.shape != (len(x), model.n_classes):
            raise ValueError(f"classical must be ({len(x)}, {model.n_classes}) probabilities, "
                             f"got {tuple(classical.shape)}")
    if method == "adabn":
        adapted = model
    else:
        adapted = _Run(source, x, segments, config, report, progress, classical).run(method)
    report.seconds = time.perf_counter() - t0
    report.parameter_change = parameter_change(adapted, original)
    return adapted.eval(), report


class _Run:
    """One gradient-based adaptation: student, optional teacher, guard, optimiser."""

    def __init__(self, source, x, segments, config: AdaptConfig, report: AdaptReport,
                 progress, classical=None) -> None:
        self.source, self.x, self.segments, self.classical = source, x, segments, classical
        self.config, self.report, self.progress = config, report, progress
        self.student = copy.deepcopy(source).train()
        self.generator = torch.Generator().manual_seed(config.seed)
        idx = torch.randperm(len(x), generator=self.generator)[:config.guard_windows]
        self.reference = x[idx]

    def _optimizer(self, params, lr=None):
        c = self.config
        return torch.optim.Adam(params, lr=lr or c.lr, betas=c.betas,
                                weight_decay=c.weight_decay)

    def _batches(self, index: torch.Tensor):
        order = index[torch.randperm(len(index), generator=self.generator)]
        for i in range(0, len(order), self.config.batch_size):
            yield order[i:i + self.config.batch_size]

    def _guard(self, modules: dict):
        if self.config.guard is None:
            return None
        return CollapseGuard(self.source, self.reference, modules, self.config.guard)

    def _step(self, optimizer, loss, losses: list) -> None:
        """One optimiser step on ``loss``; its value goes to ``losses``."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        self.report.steps += 1
        if self.progress is not None:
            self.progress(1)

    def run(self, method: str):
        if method in ("ssa", "emg-up", "emg-up+"):
            self._ssa()
        if method in ("ssp", "emg-up"):
            return self._ssp(teacher=True)
        if method == "emg-up+":
            return self._ssp_centroids()
        if method == "pseudo-label":
            return self._ssp(teacher=False)
        if method == "shot-im":
            self._shot_im()
        return self._finish(self.student)

    def _finish(self, model):
        guard = self._guard({})
        if guard is not None:
            check = guard.evaluate(model)
            self.report.balance, self.report.agreement = check.balance, check.agreement
        return model

    def _ssa(self) -> None:
        c = self.config
        enc = self.student.encoder
        head = SSAHead(enc.config.d_model, enc.n_patches, c.steps, c.future)
        # the classifier and projection get no gradient from L_C; only the encoder and g, W_k
        optimizer = self._optimizer([*enc.parameters(), *head.parameters()], c.ssa_lr)
        guard = self._guard({"student": self.student, "head": head, "optimizer": optimizer})
        everything = torch.arange(len(self.x))
        for _ in range(c.ssa_epochs):
            losses = []
            for batch in self._batches(everything):
                if len(batch) < 2:
                    continue
                self._step(optimizer, ssa_loss(self.student, head, self.x[batch], c.temperature),
                           losses)
            self.report.losses.append(float(np.mean(losses)) if losses else float("nan"))
            if guard is not None:
                self.report.rollbacks += not guard.check(self.student).ok

    def _ssp(self, teacher: bool):
        c = self.config
        student = self.student
        teacher_model = copy.deepcopy(student).eval() if teacher else student
        optimizer = self._optimizer(student.parameters())
        modules = {"student": student, "optimizer": optimizer}
        if teacher:
            modules["teacher"] = teacher_model
        guard = self._guard(modules)
        for _ in range(c.ssp_epochs):
            # pseudo-labels are refreshed once per epoch from the current teacher: the
            # sequence filter needs the windows in time order, the batches are shuffled
            labels, confidence = pseudo_labels(teacher_model, self.x)
            keep = consistent_runs(labels.numpy(), confident_mask(confidence, c.xi).numpy(),
                                   self.segments, c.n_consecutive)
            self.report.accepted = float(keep.mean())
            kept = torch.from_numpy(np.flatnonzero(keep))
            losses = []
            student.train()
            for batch in self._batches(kept):
                self._step(optimizer, ssp_loss(student, self.x[batch], labels[batch]), losses)
                if teacher:
                    ema_update(teacher_model, student, c.alpha)
                    self.report.teacher_updates += 1
            self.report.losses.append(float(np.mean(losses)) if losses else float("nan"))
            if guard is not None:
                served = teacher_model if (teacher and c.final == "teacher") else student
                self.report.rollbacks += not guard.check(served).ok
        final = teacher_model if (teacher and c.final == "teacher") else student
        return self._finish(final)

    def _ssp_centroids(self):
        """Stage 2 of ``"emg-up+"``: the EMA teacher's pseudo-labels (fused with the
        classical self-calibration's when given, else its class centroids) plus information
        maximisation towards the estimated prior; classifier frozen."""
        c = self.config
        student = self.student
        teacher = copy.deepcopy(student).eval()
        params = [p for n, p in student.named_parameters() if not n.startswith("classifier.")]
        optimizer = self._optimizer(params)
        guard = self._guard({"student": student, "teacher": teacher, "optimizer": optimizer})
        everything = torch.arange(len(self.x))
        self.report.accepted = 1.0  # every window gets a pseudo-label
        for _ in range(c.ssp_epochs):
            probs, embeddings = teacher_outputs(teacher, self.x)
            if self.classical is not None:
                # product of the two views; the floor keeps a class the LDA dropped reachable
                probs = probs * (self.classical + 1e-3)
                probs = probs / probs.sum(dim=1, keepdim=True)
                labels = probs.argmax(dim=1)
            else:
                labels = centroid_labels(probs, embeddings)
            prior = probs.mean(dim=0)
            losses = []
            student.train()
            for batch in self._batches(everything):
                logits = student(self.x[batch])[0]
                self._step(optimizer, F.cross_entropy(logits, labels[batch])
                           + information_maximisation(F.softmax(logits, dim=-1), prior), losses)
                ema_update(teacher, student, c.alpha)
                self.report.teacher_updates += 1
            self.report.losses.append(float(np.mean(losses)) if losses else float("nan"))
            if guard is not None:
                self.report.rollbacks += not guard.check(student).ok
        return self._finish(student)

    def _shot_im(self) -> None:
        c = self.config
        student = self.student
        # SHOT keeps the source hypothesis (classifier) fixed and adapts the feature extractor
        params = [p for n, p in student.named_parameters() if not n.startswith("classifier.")]
        optimizer = self._optimizer(params)
        guard = self._guard({"student": student, "optimizer": optimizer})
        everything = torch.arange(len(self.x))
        for _ in range(c.ssp_epochs):
            losses = []
            student.train()
            for batch in self._batches(everything):
                probs = F.softmax(student(self.x[batch])[0], dim=-1)
                entropy = -(probs * probs.clamp_min(1e-8).log()).sum(dim=1).mean()
                mean = probs.mean(dim=0)
                diversity = -(mean * mean.clamp_min(1e-8).log()).sum()
                self._step(optimizer, entropy - diversity, losses)
            self.report.losses.append(float(np.mean(losses)) if losses else float("nan"))
            if guard is not None:
                self.report.rollbacks += not guard.check(student).ok


def total_steps(method: str, n_windows: int, config: AdaptConfig) -> int:
    """Upper bound of optimiser steps, for a progress bar."""
    per_epoch = -(-n_windows // config.batch_size)
    epochs = {"ssa": config.ssa_epochs, "ssp": config.ssp_epochs,
              "emg-up": config.ssa_epochs + config.ssp_epochs,
              "emg-up+": config.ssa_epochs + config.ssp_epochs, "adabn": 0,
              "shot-im": config.ssp_epochs, "pseudo-label": config.ssp_epochs}[method]
    return epochs * per_epoch
