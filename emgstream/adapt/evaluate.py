"""Cross-user evaluation of source-free adaptation (``emgstream eval``).

Protocol, for every test user:

1. the source model is trained on the train users' labelled data (both blocks): EMG MAE
   pre-training of the encoder, then supervised training of the whole model (encoder,
   projection, classifier) -- the 3DC recipe, where there is no pose to align to. Each
   training user's windows are standardised by that user's own channel statistics
   (:attr:`EvalConfig.per_user_statistics`);
2. the test user's *first* block (3DC ``train``) is given to each method **unlabelled**;
3. the test user's *second* block (3DC ``test``) is used only for scoring.

Rows: ``upper-bound`` (the source model fine-tuned *with* the first block's labels: what a
labelled calibration would reach), ``source-only``, the classical bar ``lda``,
``lda-zscore``, ``lda-kmeans`` (:mod:`emgstream.adapt.classical`, fitted on the same
training users), ``adabn``, ``ssa``, ``ssp``, ``emg-up`` (the paper's method), ``shot-im``,
``pseudo-label`` and ``emg-up+``, the product's default (see
:mod:`emgstream.adapt.methods`). Accuracy, macro-F1, balanced accuracy and the confusion
matrices come from scikit-learn.

The source model is trained by the project's one training loop (:func:`emgstream.train.fit`):
MAE pre-training of the encoder, then cross-entropy, both on windows turned by up to
``rotation`` electrodes and scaled per channel by ``gain_std`` (augmentations chosen on the
dev people's tuning group, see ``benchmarks/results/cross_user_3dc.md``).

Windows are cut from each recording separately (never across two), after the model's causal
filter chain (:func:`emgstream.dsp.filter_offline`, the live chain); a window's label is the
label of its last sample, as live events are stamped.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..modelfile import Preprocessing
from .classical import CLASSICAL_ROWS, ClassicalBaselines
from .methods import AdaptConfig, adabn, adapt, total_steps

__all__ = ["EvalConfig", "UserData", "Windows", "cut_windows", "training_windows",
           "source_windows", "train_source",
           "load_users", "evaluate", "score", "write_results", "ROWS"]

logger = logging.getLogger(__name__)

ROWS = ("upper-bound", "source-only", *CLASSICAL_ROWS, "adabn", "ssa", "ssp", "emg-up",
        "shot-im", "pseudo-label", "emg-up+")


@dataclass(frozen=True)
class EvalConfig:
    """Model shape and schedules of an evaluation.

    The defaults are the 3DC recipe for 2 CPU cores: with 250 ms windows (the
    preprocessing's), 10 ms patches give 25 patches, so T = 17, K = 8 fit; d = 64, 2 layers.
    Strides are in seconds.
    """

    patch_s: float = 0.01
    features: str = "log_power"  #: token inputs (see :class:`emgstream.nn.EncoderConfig`)
    power_bins: int = 1
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    embed_dim: int = 64
    train_stride_s: float = 0.1  #: between source-training windows
    adapt_stride_s: float = 0.1  #: between adaptation windows (2 x the live hop, for time)
    score_stride_s: float = 0.1  #: between scored windows
    #: standardise each training user's windows by that user's own per-channel mean and std
    #: (rescaled to the pooled statistics that the model's "fixed" normalisation holds), as a
    #: batch-norm network trained per domain would see them; the user's own statistics
    #: (AdaBN, ``AdaptConfig.renormalise``) are then what the model was trained on
    per_user_statistics: bool = True
    mae_epochs: int = 2
    supervised_epochs: int = 6
    train_lr: float = 1e-3
    train_batch: int = 128
    rotation: int = 1  #: source training: turn each window by up to this many electrodes
    gain_std: float = 0.4  #: source training: per-channel log-normal gain, std of the log
    lda_window_s: float = 0.2  #: the classical rows read the newest 200 ms of each window
    upper_epochs: int = 5  #: supervised fine-tuning epochs of the upper bound
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    rows: tuple[str, ...] = ROWS
    seed: int = 0


@dataclass
class Windows:
    """Windows (n, channels, window) float32, labels (n,) int64, segment (n,) recording id."""

    x: np.ndarray
    y: np.ndarray
    segment: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        offset, segs = 0, []
        for p in parts:
            segs.append(p.segment + offset)
            offset += int(p.segment.max()) + 1 if len(p) else 0
        return Windows(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                       np.concatenate(segs))


@dataclass
class UserData:
    """One user's labelled recordings: ``first`` block (adaptation), ``second`` (scoring)."""

    name: str
    first: list
    second: list


def dataset_preprocessing(dataset: str, sample_rate: float, n_channels: int,
                          notch: float | None = None) -> Preprocessing:
    """The evaluation's preprocessing: 250 ms windows, 50 ms hop, 20-450 Hz, mains notch.

    "fixed" input normalisation (per-channel statistics of the source users): per-window
    ("instance") normalisation would scale every channel of a window to unit variance and
    so erase which channels are active, the main cue of a gesture on a band.
    """
    if notch is None:
        notch = 60.0 if dataset == "3dc" else 50.0  # 3DC was recorded on 60 Hz mains
    window = round(0.25 * sample_rate)
    return Preprocessing(sample_rate=float(sample_rate), n_channels=int(n_channels),
                         window=window, hop=max(1, round(0.05 * sample_rate)),
                         bandpass=(20.0, 450.0), notch=notch, normalisation="fixed")


def load_users(dataset: str, root=None, users=None, *, synth_duration_s: float = 120.0,
               seed: int = 0, notch: float | None = None):
    """(users dict name -> :class:`UserData`, preprocessing, class names) of a dataset.

    - ``"3dc"``: ``root`` holds ``Participant<N>``; first block ``train``, second ``test``;
      ``users`` are numbers or ``Participant<N>`` names (default all).
    - ``"hdf5"``: ``root`` holds labelled recordings (``*.h5``, ``*.hdf5``) in our layout;
      per user the sessions sorted by name: the first is the first block, the rest the second.
    - ``"synth"``: with ``root``, as ``"hdf5"`` (files of ``emgstream synth``); without,
      users generated in memory (``users`` are indices), sessions 0 and 1 of
      ``synth_duration_s`` each.
    """
    if dataset == "3dc":
        from ..io.threedc import load_3dc

        streams = load_3dc(root, participants=users)
        out = {}
        for s in streams:
            entry = out.setdefault(s.user, UserData(s.user, [], []))
            (entry.first if s.meta["block"] == "train" else entry.second).append(s)
        first = streams[0]
        return (out, dataset_preprocessing("3dc", first.sample_rate, first.n_channels, notch),
                list(first.class_names))
    if dataset == "synth" and root is None:
        from ..synth import CLASS_NAMES, generate_session, make_user, user_name

        indices = [int(u) for u in (users if users is not None else range(6))]
        out = {}
        for i in indices:
            profile = make_user(i, seed)
            out[user_name(i)] = UserData(user_name(i),
                                         [generate_session(profile, 0, synth_duration_s)],
                                         [generate_session(profile, 1, synth_duration_s)])
        first = next(iter(out.values())).first[0]
        # the vocabulary ends with the zero-shot gestures, never performed in these sessions
        performed = 1 + max(int(s.labels.max()) for u in out.values() for s in (*u.first,
                                                                               *u.second))
        return (out, dataset_preprocessing("synth", first.sample_rate, first.n_channels, notch),
                list(CLASS_NAMES[:performed]))
    if dataset in ("hdf5", "synth"):
        return _load_hdf5_users(root, users, notch)
    raise ValueError(f"dataset must be 'synth', '3dc' or 'hdf5', got {dataset!r}")


def _load_hdf5_users(root, users, notch):
    from ..io.recording import read_recording

    if root is None:
        raise ValueError("an hdf5 dataset needs --root, the folder of recordings")
    files = sorted([*Path(root).glob("*.h5"), *Path(root).glob("*.hdf5")])
    if not files:
        raise FileNotFoundError(f"no .h5/.hdf5 recordings under {str(root)!r}")
    by_user: dict = {}
    for f in files:
        rec = read_recording(f)
        if rec.labels is None:
            raise ValueError(f"{f} has no labels; evaluation needs labelled recordings")
        stream = rec.to_stream()
        if users is not None and stream.user not in users:
            continue
        by_user.setdefault(stream.user, []).append((str(stream.session), f.name, stream))
    out = {}
    for user, items in by_user.items():
        items.sort(key=lambda t: (t[0], t[1]))
        if len(items) < 2:
            raise ValueError(f"user {user!r} has one recording; evaluation needs two sessions "
                             f"(one to adapt on, one to score)")
        out[user] = UserData(user, [items[0][2]], [t[2] for t in items[1:]])
    if users is not None and set(users) - set(out):
        raise ValueError(f"users {sorted(set(users) - set(out))} not found under {root}")
    first = next(iter(out.values())).first[0]
    classes = list(first.class_names)
    for u in out.values():
        for s in (*u.first, *u.second):
            if list(s.class_names) != classes or s.n_channels != first.n_channels:
                raise ValueError(f"recordings disagree: {s!r} vs {first!r}")
    return out, dataset_preprocessing("hdf5", first.sample_rate, first.n_channels, notch), classes


def cut_windows(streams, preprocessing: Preprocessing, stride: int) -> Windows:
    """Filter each :class:`~emgstream.io.LabelledStream` like live, then cut windows.

    A window ends every ``stride`` samples (its first end ``window`` samples in); windows
    whose last sample is unlabelled (-1) are dropped. Returns a :class:`Windows`.
    """
    from ..dsp import filter_offline

    w = preprocessing.window
    xs, ys, segs = [], [], []
    for s_id, stream in enumerate(streams):
        if stream.n_channels != preprocessing.n_channels:
            raise ValueError(f"{stream!r} has {stream.n_channels} channels, the model expects "
                             f"{preprocessing.n_channels}")
        filtered = filter_offline(stream.emg, stream.sample_rate, preprocessing)
        ends = np.arange(w, len(filtered) + 1, stride)
        labels = stream.labels[ends - 1]
        ends = ends[labels >= 0]
        if len(ends) == 0:
            continue
        view = np.lib.stride_tricks.sliding_window_view(filtered, w, axis=0)  # (n, C, w)
        xs.append(np.ascontiguousarray(view[ends - w], dtype=np.float32))
        ys.append(stream.labels[ends - 1].astype(np.int64))
        segs.append(np.full(len(ends), s_id))
    if not xs:
        c = preprocessing.n_channels
        return Windows(np.zeros((0, c, w), np.float32), np.zeros(0, np.int64), np.zeros(0, int))
    return Windows(np.concatenate(xs), np.concatenate(ys), np.concatenate(segs))


def training_windows(users: dict, names, preprocessing: Preprocessing,
                     config: EvalConfig = EvalConfig()) -> list[Windows]:
    """Both blocks of every user in ``names``, one :class:`Windows` per user (those with
    any), filtered and cut every ``config.train_stride_s``: what the source model and the
    classical rows train on."""
    step = max(1, round(config.train_stride_s * preprocessing.sample_rate))
    parts = [cut_windows(users[u].first + users[u].second, preprocessing, step) for u in names]
    return [p for p in parts if len(p)]


def source_windows(users: dict, names, preprocessing: Preprocessing,
                   config: EvalConfig = EvalConfig(), parts: list[Windows] | None = None
                   ) -> Windows:
    """Both blocks of every user in ``names``: the source model's training windows.

    With ``config.per_user_statistics`` each user's windows are standardised per channel by
    that user's mean and std, then scaled to the pooled mean and std of all of them (which
    the source model's "fixed" normalisation stores, so a new user's windows normalised by
    the pooled statistics are what source-only sees). ``parts``: the users'
    :func:`training_windows` when already cut (they are standardised in place).
    """
    if parts is None:
        parts = training_windows(users, names, preprocessing, config)
    if config.per_user_statistics and parts:
        # per user and channel: mean and variance; pooled from them without a pooled copy
        means = np.stack([p.x.mean(axis=(0, 2), dtype=np.float64) for p in parts])
        variances = np.stack([p.x.var(axis=(0, 2), dtype=np.float64) for p in parts])
        weights = np.array([p.x.shape[0] * p.x.shape[2] for p in parts], np.float64)[:, None]
        mean = (weights * means).sum(axis=0) / weights.sum()
        std = np.sqrt((weights * (variances + (means - mean) ** 2)).sum(axis=0) / weights.sum())
        for p, m, v in zip(parts, means, variances):
            p.x -= m[None, :, None].astype(np.float32)
            p.x *= (std / np.maximum(np.sqrt(v), 1e-12))[None, :, None].astype(np.float32)
            p.x += mean[None, :, None].astype(np.float32)
    return Windows.concat(parts)


@torch.no_grad()
def predict(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    t = torch.from_numpy(x)
    return torch.cat([model(t[i:i + batch_size])[0].argmax(dim=1)
                      for i in range(0, len(t), batch_size)]).numpy()


def _build(preprocessing: Preprocessing, class_names, config: EvalConfig):
    from ..nn import EncoderConfig, GestureModel

    patch = max(1, round(config.patch_s * preprocessing.sample_rate))
    enc = EncoderConfig(preprocessing.n_channels, preprocessing.window, patch,
                        d_model=config.d_model, n_layers=config.n_layers,
                        n_heads=config.n_heads, mlp_ratio=2.0, features=config.features,
                        power_bins=config.power_bins)
    return GestureModel(enc, class_names, embed_dim=config.embed_dim, hop=preprocessing.hop,
                        normalisation=preprocessing.normalisation,
                        sample_rate=preprocessing.sample_rate)


def _stage(n_windows: int, epochs: int, lr: float, batch: int):
    from ..train import StageConfig

    return StageConfig(steps=max(1, epochs * (n_windows // batch)), batch_size=batch, lr=lr,
                       weight_decay=0.01, log_every=50, checkpoint_every=10 ** 9)


def _supervised(model, data: Windows, epochs: int, lr: float, batch: int, seed: int,
                rotation: int = 0, gain_std: float = 0.0, desc: str = "supervised") -> None:
    """Cross-entropy training of ``model`` on ``data`` through :func:`emgstream.train.fit`."""
    import tempfile

    from ..train import Classify, Env, LabelledWindows, fit

    windows = LabelledWindows(torch.from_numpy(data.x), torch.from_numpy(data.y), rotation,
                              gain_std)
    cfg = _stage(len(windows), epochs, lr, batch)
    with tempfile.TemporaryDirectory(prefix="emgstream-eval-") as run_dir:
        fit(Classify(model), windows, cfg, run_dir, Env(), seed=seed, inputs=(0, 1),
            desc=desc, resume=False)
    model.cpu().eval()


def train_source(data: Windows, preprocessing: Preprocessing, class_names,
                 config: EvalConfig = EvalConfig()):
    """EMG MAE pre-training, then supervised training: the source model (GestureModel).

    Both stages run in :func:`emgstream.train.fit` on ``data`` augmented by channel
    rotation and per-channel gain (``config.rotation``, ``config.gain_std``). With
    ``"fixed"`` normalisation the per-channel mean/std come from ``data``.
    """
    import tempfile

    from ..nn._mae import MAE
    from ..train import Env, LabelledWindows, fit

    torch.manual_seed(config.seed)
    model = _build(preprocessing, class_names, config)
    x = torch.from_numpy(data.x)
    if model.normalisation.mode == "fixed":
        with torch.no_grad():
            model.normalisation.mean.copy_(x.mean(dim=(0, 2)))
            model.normalisation.std.copy_(x.std(dim=(0, 2)))
    if config.mae_epochs:
        mae = MAE(model.encoder.config, decoder_layers=1, mask_ratio=0.5,
                  normalisation=model.normalisation.mode)
        mae.normalisation.load_state_dict(model.normalisation.state_dict())
        windows = LabelledWindows(x, torch.from_numpy(data.y), config.rotation, config.gain_std)
        cfg = _stage(len(windows), config.mae_epochs, config.train_lr, config.train_batch)
        with tempfile.TemporaryDirectory(prefix="emgstream-eval-") as run_dir:
            fit(mae, windows, cfg, run_dir, Env(), seed=config.seed, desc="source MAE",
                resume=False)
        model.encoder.load_state_dict(mae.encoder.cpu().state_dict())
    _supervised(model, data, config.supervised_epochs, config.train_lr, config.train_batch,
                config.seed, config.rotation, config.gain_std, desc="source")
    return model


def score(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """scikit-learn's accuracy, macro-F1 (over the classes present) and balanced accuracy,
    and the confusion matrix (true x predicted, ``n_classes`` square) as nested lists."""
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 f1_score)

    present = np.unique(y_true)
    with warnings.catch_warnings():
        # a new person's model may well predict a class they did not perform in the block
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y_true, y_pred))
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro",
                                       zero_division=0)),
            "balanced_accuracy": balanced,
            "confusion": confusion_matrix(y_true, y_pred,
                                          labels=np.arange(n_classes)).tolist()}


def _score(model, data: Windows, n_classes: int) -> dict:
    return score(data.y, predict(model, data.x), n_classes)


def evaluate(users: dict, train_users, test_users, preprocessing: Preprocessing, class_names,
             config: EvalConfig = EvalConfig(), leave_one_out: bool = False,
             folds: int | None = None, show_progress: bool = True, source=None) -> dict:
    """Run the protocol; returns ``{"rows": [per user x method dicts], "summary": ...}``.

    ``users``: name -> :class:`UserData`. With ``leave_one_out`` every test user gets a
    source model trained on all other users in ``train_users``; ``folds=k`` (with
    ``leave_one_out``) is the cheaper k-fold version: ``test_users`` split into k contiguous
    folds, each fold's users scored with a source model trained on the users outside the
    fold (k = number of users is leave-one-out). Otherwise one source model is trained on
    ``train_users`` and adapted to each test user; or, given a trained ``source`` model
    (:class:`~emgstream.nn.GestureModel`, e.g. the shipped one), it is adapted to each test
    user, and ``train_users`` (optional) only feed the classical rows.
    """
    from tqdm.auto import tqdm

    unknown = [r for r in config.rows if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; known: {ROWS}")
    missing = [u for u in (*train_users, *test_users) if u not in users]
    if missing:
        raise ValueError(f"users {missing} not in the dataset (have {sorted(users)})")
    if source is not None and leave_one_out:
        raise ValueError("a given source model is only adapted: no leave-one-out")
    if not leave_one_out and set(train_users) & set(test_users):
        raise ValueError(f"train and test users overlap: {sorted(set(train_users) & set(test_users))}")
    torch.manual_seed(config.seed)
    t_start = time.perf_counter()
    n_classes = len(class_names)
    log = logging.getLogger(__name__)

    def stride(seconds):
        return max(1, round(seconds * preprocessing.sample_rate))

    held_out = {u: [u] for u in test_users}
    if leave_one_out and folds is not None:
        if not 2 <= folds <= len(test_users):
            raise ValueError(f"folds must lie in [2, {len(test_users)}], got {folds}")
        for part in np.array_split(np.arange(len(test_users)), folds):
            for i in part:
                held_out[test_users[i]] = [test_users[j] for j in part]
    lda_samples = min(preprocessing.window, stride(config.lda_window_s))
    classical_rows = [r for r in config.rows if r in CLASSICAL_ROWS]
    if classical_rows and not train_users:
        log.warning("rows %s need training users; none given, so they are left out",
                    classical_rows)
        classical_rows = []
    # EMG-UP+ fuses its teacher with the classical self-calibration when there is one
    need_classical = bool(train_users) and (classical_rows or "emg-up+" in config.rows)
    rows, given, trained_on, classical = [], source is not None, None, None
    bar = tqdm(total=len(test_users), desc="users", unit="user", disable=not show_progress)
    for user in test_users:
        train_names = ([u for u in train_users if u not in held_out[user]] if leave_one_out
                       else list(train_users))
        if train_names != trained_on:
            t0 = time.perf_counter()
            parts = training_windows(users, train_names, preprocessing, config)
            if need_classical:  # on the filtered windows, before the source standardises them
                classical = ClassicalBaselines([(p.x, p.y) for p in parts], n_classes,
                                               window=lda_samples)
            if not given:
                src = source_windows(users, train_names, preprocessing, config, parts)
                source = train_source(src, preprocessing, class_names, config)
                log.info("source model on %d users (%d windows) in %.0f s", len(train_names),
                         len(src), time.perf_counter() - t0)
            trained_on = train_names
        adapt_data = cut_windows(users[user].first, preprocessing,
                                 stride(config.adapt_stride_s))
        score_data = cut_windows(users[user].second, preprocessing,
                                 stride(config.score_stride_s))
        person = classical.calibrate(adapt_data.x) if classical is not None else None
        for row in config.rows:
            t0 = time.perf_counter()
            info = {}
            if row in CLASSICAL_ROWS:
                if row not in classical_rows:
                    continue
                scores = score(score_data.y, person.predict(row, score_data.x), n_classes)
                rows.append({"user": user, "method": row, **scores,
                             "seconds": time.perf_counter() - t0})
                continue
            if row == "source-only":
                model = source
            elif row == "upper-bound":
                # a labelled calibration knows at least what the unlabelled methods know
                model = (adabn(source, torch.from_numpy(adapt_data.x)) if config.adapt.renormalise
                         else copy.deepcopy(source))
                _supervised(model, adapt_data, config.upper_epochs, config.train_lr / 3,
                            config.train_batch, config.seed, desc="upper bound")
            else:
                steps = total_steps(row, len(adapt_data), config.adapt)
                with tqdm(total=steps, desc=f"{user} {row}", leave=False,
                          disable=not show_progress or steps == 0) as abar:
                    model, report = adapt(
                        source, adapt_data.x, adapt_data.segment, row, config.adapt,
                        abar.update, person.posteriors
                        if row == "emg-up+" and person is not None else None)
                info = {k: getattr(report, k) for k in ("accepted", "rollbacks",
                                                        "parameter_change", "balance",
                                                        "agreement", "steps")}
            scores = _score(model, score_data, n_classes)
            rows.append({"user": user, "method": row, **scores,
                         "seconds": time.perf_counter() - t0, **info})
            log.info("%s %-13s acc %.3f f1 %.3f", user, row, scores["accuracy"],
                     scores["macro_f1"])
        bar.update(1)
    bar.close()
    result = {"rows": rows, "summary": summarise(rows),
              "protocol": {"leave_one_out": leave_one_out, "folds": folds,
                           "train_users": list(train_users),
                           "test_users": list(test_users),
                           "preprocessing": asdict(preprocessing),
                           "config": _jsonable(asdict(config))},
              "wall_seconds": time.perf_counter() - t_start}
    return result


def summarise(rows: list) -> list:
    """Per method: mean, std, worst user, and per-user difference to source-only."""
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["user"]] = r
    so = by.get("source-only", {})
    out = []
    for method, per_user in by.items():
        acc = np.array([r["accuracy"] for r in per_user.values()])
        f1 = np.array([r["macro_f1"] for r in per_user.values()])
        balanced = np.array([r["balanced_accuracy"] for r in per_user.values()])
        worst = min(per_user.values(), key=lambda r: r["accuracy"])
        entry = {"method": method, "users": len(acc), "accuracy_mean": float(acc.mean()),
                 "accuracy_median": float(np.median(acc)),
                 "accuracy_std": float(acc.std()), "macro_f1_mean": float(f1.mean()),
                 "macro_f1_std": float(f1.std()),
                 "balanced_accuracy_mean": float(balanced.mean()), "worst_user": worst["user"],
                 "worst_accuracy": float(worst["accuracy"])}
        if so:
            delta = np.array([per_user[u]["accuracy"] - so[u]["accuracy"] for u in per_user
                              if u in so])
            entry.update({"delta_vs_so_mean": float(delta.mean()),
                          "delta_vs_so_min": float(delta.min()),
                          "better_than_so": int(np.sum(delta > 0)),
                          "worse_than_so": int(np.sum(delta < 0))})
        out.append(entry)
    return out


def markdown_table(result: dict) -> str:
    """The summary as a markdown table (percentages)."""
    lines = ["| method | acc mean | acc median | acc std | macro-F1 mean | balanced acc mean | "
             "worst user (acc) | Δ vs SO mean | Δ vs SO worst | better / worse than SO |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["summary"]:
        d = (f"{100 * e['delta_vs_so_mean']:+.1f} | {100 * e['delta_vs_so_min']:+.1f} | "
             f"{e['better_than_so']} / {e['worse_than_so']}") if "delta_vs_so_mean" in e \
            else "| |"
        lines.append(f"| {e['method']} | {100 * e['accuracy_mean']:.1f} | "
                     f"{100 * e['accuracy_median']:.1f} | "
                     f"{100 * e['accuracy_std']:.1f} | {100 * e['macro_f1_mean']:.1f} | "
                     f"{100 * e['balanced_accuracy_mean']:.1f} | "
                     f"{e['worst_user']} ({100 * e['worst_accuracy']:.1f}) | {d} |")
    return "\n".join(lines)


def per_user_table(result: dict) -> str:
    """Accuracy per user (rows) and method (columns), markdown."""
    methods = [e["method"] for e in result["summary"]]
    users = list(dict.fromkeys(r["user"] for r in result["rows"]))
    acc = {(r["user"], r["method"]): r["accuracy"] for r in result["rows"]}
    lines = ["| user | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for u in users:
        lines.append(f"| {u} | " + " | ".join(f"{100 * acc[(u, m)]:.1f}" for m in methods)
                     + " |")
    return "\n".join(lines)


def write_results(result: dict, out_dir, class_names=None) -> dict:
    """Write ``results.json``, ``per_user.csv``, ``results.md`` and one
    ``confusion_<method>.csv`` per method (true class rows, predicted class columns, summed
    over the test users) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_jsonable(result), indent=2))
    keys = list(dict.fromkeys(k for r in result["rows"] for k in r if k != "confusion"))
    with open(out / "per_user.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["rows"])
    paths = {"json": out / "results.json", "csv": out / "per_user.csv"}
    totals: dict = {}
    for r in result["rows"]:
        m = np.asarray(r["confusion"])
        totals[r["method"]] = totals.get(r["method"], 0) + m
    for method, matrix in totals.items():
        names = list(class_names) if class_names is not None else list(range(len(matrix)))
        path = out / f"confusion_{method}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true \\ predicted", *names])
            writer.writerows([name, *map(int, row)] for name, row in zip(names, matrix))
        paths[f"confusion {method}"] = path
    p = result["protocol"]
    scheme = "train once"
    if p["leave_one_out"]:
        scheme = f"{p['folds']}-fold cross-user" if p.get("folds") else "leave-one-user-out"
    md = [f"Protocol: {scheme}; "
          f"train users {p['train_users']}; test users {p['test_users']}; "
          f"wall time {result['wall_seconds']:.0f} s.", "", markdown_table(result), "",
          "Accuracy per user (%):", "", per_user_table(result), ""]
    (out / "results.md").write_text("\n".join(md))
    return {**paths, "md": out / "results.md"}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj
