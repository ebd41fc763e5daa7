"""Run a recipe: data -> MAE (EMG, pose) -> alignment (CPEP / EMBridge) -> head -> finetune
-> checkpoint."""

from __future__ import annotations

import fnmatch
import glob
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..modelfile import Preprocessing
from ..nn import CPEP, MAE, EMBridge, EncoderConfig, GestureModel, PatchEncoder, PoseAnchor
from ._data import RecordingWindows, WindowSet, windows_from_streams
from ._eval import (embed_windows, fit_linear_probe, macro_accuracy, standardise,
                    zero_shot_accuracy)
from ._finetune import run_finetune
from ._recipe import STAGES, Recipe
from ._trainer import Env, fit

logger = logging.getLogger(__name__)

FINAL_CHECKPOINT = "model.pt"


# -- configs -> modules ----------------------------------------------------------------------
def emg_encoder_config(recipe: Recipe) -> EncoderConfig:
    m, d = recipe.model, recipe.data
    return EncoderConfig(d.n_channels, d.window, m.emg_patch, m.d_model, m.n_layers, m.n_heads,
                         m.mlp_ratio, m.dropout, features=m.emg_features,
                         power_bins=m.emg_power_bins)


def pose_encoder_config(recipe: Recipe) -> EncoderConfig:
    m, d = recipe.model, recipe.data
    return EncoderConfig(20, d.window, m.pose_patch, m.d_model, m.n_layers, m.n_heads,
                         m.mlp_ratio, m.dropout)


def preprocessing(recipe: Recipe) -> Preprocessing:
    d = recipe.data
    return Preprocessing(sample_rate=float(d.sample_rate), n_channels=d.n_channels,
                         window=d.window, hop=d.hop, bandpass=d.bandpass, notch=d.notch,
                         normalisation=d.normalisation)


def new_gesture_model(recipe: Recipe, class_names, head: str = "projection",
                      pooling: str = "cls") -> GestureModel:
    m = recipe.model
    qformer = None
    if head == "qformer":
        qformer = {"n_queries": m.qformer_queries, "n_layers": m.qformer_layers,
                   "n_heads": m.n_heads, "mlp_ratio": m.mlp_ratio, "cross_every": 2}
    return GestureModel(emg_encoder_config(recipe), class_names, embed_dim=m.d_model,
                        hop=recipe.data.hop, normalisation=recipe.data.normalisation,
                        pooling=pooling, head=head, qformer=qformer,
                        sample_rate=float(recipe.data.sample_rate))


# -- data ------------------------------------------------------------------------------------
@dataclass
class Splits:
    """train: training users, unseen gestures removed (alignment uses every window, probes the
    labelled ones); probe: other users, all gestures (unseen-gesture probes and bank only;
    None when a recordings recipe names no probe users); test: users never used for anything
    but scoring (None when a recordings recipe names none and has no head).

    Synthetic data are :class:`WindowSet` s, recordings :class:`RecordingWindows` (see
    :mod:`emgstream.train._data` for the rule)."""

    train: WindowSet | RecordingWindows
    probe: WindowSet | RecordingWindows | None
    test: WindowSet | RecordingWindows | None
    seen: list[str]
    unseen: list[str]


def load_splits(recipe: Recipe) -> Splits:
    """The recipe's train / probe / test windows, from ``data.source``."""
    if recipe.data.source == "recordings":
        return _recording_splits(recipe)
    return _synth_splits(recipe)


def _synth_splits(recipe: Recipe) -> Splits:
    d = recipe.data
    from .. import synth

    config = synth.SynthConfig(n_channels=d.n_channels, sample_rate=float(d.sample_rate))
    users = synth.make_users(d.users, seed=d.seed, config=config)
    n_train = d.users - d.probe_users - d.test_users
    if n_train < 1:
        raise ValueError(f"{d.users} users leave none for training after {d.probe_users} probe "
                         f"and {d.test_users} test users")
    prep = preprocessing(recipe)
    t0 = time.perf_counter()

    seen, unseen = list(synth.GESTURES), list(synth.UNSEEN_GESTURES)

    def streams(group, gestures, seconds):
        return [synth.generate_session(u, session=s, duration_s=seconds, gestures=gestures)
                for u in group for s in range(d.sessions)]

    held_out = users[n_train:]
    train = windows_from_streams(streams(users[:n_train], seen, d.seconds), prep, d.stride,
                                 exclude=tuple(unseen))
    probe = windows_from_streams(
        streams(held_out[:d.probe_users], seen, d.seconds)
        + streams(held_out[:d.probe_users], unseen, d.unseen_seconds), prep, d.stride)
    test = windows_from_streams(
        streams(held_out[d.probe_users:], seen, d.seconds)
        + streams(held_out[d.probe_users:], unseen, d.unseen_seconds), prep, d.stride)
    logger.info("synthetic data: %d/%d/%d windows (train/probe/test) in %.1f s",
                len(train), len(probe), len(test), time.perf_counter() - t0)
    return Splits(train, probe, test, seen, unseen)


def recording_files(recipe: Recipe) -> list[Path]:
    """The HDF5 files of ``data.root`` (a folder, searched recursively, or a glob), sorted."""
    root = Path(recipe.data.root).expanduser()
    if not root.is_absolute() and recipe.path is not None:
        root = (recipe.path.parent / root).resolve()
    if root.is_dir():
        files = [p for p in root.rglob("*") if p.suffix in (".hdf5", ".h5") and p.is_file()]
    else:
        files = [Path(p) for p in glob.glob(str(root), recursive=True) if Path(p).is_file()]
    if not files:
        raise ValueError(f"data.root {str(root)!r} holds no .hdf5 / .h5 recordings")
    return sorted(files)


def _recording_splits(recipe: Recipe) -> Splits:
    from ..io import read_recording

    d = recipe.data
    t0 = time.perf_counter()
    groups: dict[str, list[Path]] = {"train": [], "probe": [], "test": []}
    left_out = set()
    for path in recording_files(recipe):
        # one sample is enough for the metadata; WindowDataset reads the rest lazily
        user = str(read_recording(path, stop=1).meta.get("user", ""))
        split = next((name for name in ("test", "probe", "train")
                      if any(fnmatch.fnmatchcase(user, pat) for pat in getattr(d, name))), None)
        if split is None:
            left_out.add(user)
        else:
            groups[split].append(path)
    if left_out:
        logger.info("users in no split, left out: %s", sorted(left_out))
    if not groups["train"]:
        raise ValueError(f"no recording under {d.root!r} belongs to a training user "
                         f"(data.train = {d.train})")
    if "head" in recipe.stages and not groups["test"]:
        raise ValueError(f"the head stage scores the model on test users, but no recording "
                         f"under {d.root!r} matches data.test = {d.test}")
    prep = preprocessing(recipe)
    # pose is delivered (and IK failures skipped) when a stage uses it: MAE on pose,
    # alignment, the zero-shot bank
    with_pose = set(recipe.stages) != {"mae-emg"}

    def windows(files, exclude=()):
        return RecordingWindows(files, prep, d.stride, exclude=exclude,
                                with_pose=with_pose) if files else None

    train = windows(groups["train"], exclude=d.unseen)
    seen = list(train.class_names)
    if "head" in recipe.stages and not seen:
        raise ValueError(f"the recordings under {d.root!r} carry no gesture labels; a recipe "
                         "on them can pre-train the encoders but must not have a head stage")
    splits = Splits(train, windows(groups["probe"]), windows(groups["test"]), seen,
                    list(d.unseen))
    logger.info("recordings: %s windows (train/probe/test) from %s files in %.1f s",
                "/".join(str(len(s)) if s is not None else "-" for s in
                         (splits.train, splits.probe, splits.test)),
                "/".join(str(len(g)) for g in groups.values()), time.perf_counter() - t0)
    return splits


# -- stages ----------------------------------------------------------------------------------
def _stage_dir(recipe: Recipe, stage: str) -> Path:
    return recipe.out_dir / stage


def _load_stage(recipe: Recipe, stage: str):
    path = _stage_dir(recipe, stage) / "final.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def _save_stage(recipe: Recipe, stage: str, state: dict, env: Env) -> None:
    if env.is_main:
        path = _stage_dir(recipe, stage) / "final.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)


def _need(state, stage: str):
    if state is None:
        raise ValueError(f"stage {stage!r} has not been run (no final.pt); add it to the recipe")
    return state


def run_mae(recipe: Recipe, stage: str, data: WindowSet, env: Env) -> dict:
    """mae-emg / mae-pose: returns the encoder's state dict."""
    m = recipe.model
    is_emg = stage == "mae-emg"
    cfg = emg_encoder_config(recipe) if is_emg else pose_encoder_config(recipe)
    torch.manual_seed(recipe.seed)
    mae = MAE(cfg, decoder_layers=m.decoder_layers, mask_ratio=m.mask_ratio,
              normalisation=recipe.data.normalisation if is_emg else "none")
    fit(mae, data.rotated(recipe.data.rotation) if is_emg else data, recipe.stages[stage],
        _stage_dir(recipe, stage), env, seed=recipe.seed, inputs=(0,) if is_emg else (1,),
        desc=stage)
    return mae.encoder.state_dict()


def pose_encoder(recipe: Recipe, state: dict) -> PatchEncoder:
    enc = PatchEncoder(pose_encoder_config(recipe))
    enc.load_state_dict(state)
    return enc.eval()


def run_align(recipe: Recipe, stage: str, data: WindowSet, class_names, emg_state: dict | None,
              pose_state: dict, env: Env, pooling: str = "cls",
              freeze_emg_encoder: bool = False, stage_dir: Path | None = None) -> GestureModel:
    """align-cpep / align-embridge: the aligned EMG model (classifier untrained).

    ``emg_state=None`` starts the EMG encoder at random (CPEP-RandInit ablation).
    """
    m = recipe.model
    torch.manual_seed(recipe.seed)
    head = "projection" if stage == "align-cpep" else "qformer"
    model = new_gesture_model(recipe, class_names, head=head, pooling=pooling)
    if emg_state is not None:
        model.encoder.load_state_dict(emg_state)
    for p in model.classifier.parameters():
        p.requires_grad_(False)
    pose = pose_encoder(recipe, pose_state)
    if stage == "align-cpep":
        aligner = CPEP(model, pose, temperature=m.temperature,
                       freeze_emg_encoder=freeze_emg_encoder)
    else:
        aligner = EMBridge(model, pose, temperature=m.temperature,
                           n_communities=m.n_communities, top_k=m.community_top_k,
                           community_temperature=m.community_temperature,
                           mask_ratio=m.mask_ratio)
        anchor_embeddings = embed_windows(aligner.pose, data, which=1,
                                          num_workers=recipe.stages[stage].num_workers)
        aligner.set_communities(anchor_embeddings.numpy(), seed=recipe.seed)
    fit(aligner, data.rotated(recipe.data.rotation), recipe.stages[stage],
        stage_dir or _stage_dir(recipe, stage), env, seed=recipe.seed, inputs=(0, 1), desc=stage)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    return model.cpu().eval()


def make_bank(pose_embeddings: torch.Tensor, labels: torch.Tensor, per_class: int,
              seed: int) -> dict:
    """Zero-shot bank: at most ``per_class`` pose embeddings per labelled class."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in labels.unique().tolist():
        idx = np.flatnonzero(labels.numpy() == c)
        keep.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    keep = np.sort(np.concatenate(keep))
    return {"embeddings": pose_embeddings[keep].numpy().astype(np.float32),
            "labels": labels[keep].numpy().astype(np.int64)}


def run_head(recipe: Recipe, model: GestureModel, pose_state: dict, splits: Splits) -> tuple:
    """Linear classifier on the frozen embedding (in-distribution gestures), the zero-shot
    bank, and the deployed model's metrics on the test users."""
    cfg = recipe.stages.get("head")
    workers = cfg.num_workers if cfg else 0
    train = splits.train.relabel(splits.seen)
    test = splits.test.relabel(splits.seen)
    feats = embed_windows(model.embed, train, num_workers=workers)
    z, = standardise(feats)
    probe = fit_linear_probe(z, train.labels, len(splits.seen),
                             steps=cfg.steps if cfg else 300, lr=cfg.lr if cfg else 1e-2,
                             weight_decay=cfg.weight_decay if cfg else 1e-4, seed=recipe.seed)
    # fold the feature standardisation into the classifier: W (f - m) / s + b
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    with torch.no_grad():
        weight = probe.weight / std
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(probe.bias - weight @ mean)
    anchor = PoseAnchor(pose_encoder(recipe, pose_state))
    bank = make_bank(embed_windows(anchor, train, which=1, num_workers=workers), train.labels,
                     recipe.model.bank_per_class, recipe.seed)
    return model, bank, score(model, bank, splits, workers)


def score(model: GestureModel, bank: dict, splits: Splits, num_workers: int = 0) -> dict:
    """The model's macro accuracy over the seen gestures on the test users: its classifier,
    and zero-shot k-NN of its embedding over the pose-embedding ``bank``."""
    test = splits.test.relabel(splits.seen)
    with torch.no_grad():
        logits = embed_windows(lambda x: model(x)[0], test, num_workers=num_workers)
        test_emb = embed_windows(model.embed, test, num_workers=num_workers)
    n = len(splits.seen)
    return {
        "test_users": sorted(set(test.users.tolist())),
        "classifier_macro_accuracy": macro_accuracy(test.labels.numpy(),
                                                    logits.argmax(1).numpy(), n),
        "zero_shot_macro_accuracy": zero_shot_accuracy(
            test_emb.numpy() @ bank["embeddings"].T, bank["labels"], test.labels.numpy(), n),
        "test_windows": len(test),
    }


# -- the whole recipe ------------------------------------------------------------------------
def run_recipe(recipe: Recipe, env: Env | None = None, splits: Splits | None = None) -> Path:
    """Run every stage in the recipe (skipping those already finished), then write
    ``out/model.pt``: architecture, state dict, preprocessing, bank, provenance, metrics.

    A recipe without a ``head`` stage (pre-training on unlabelled recordings such as
    emg2pose) stops after the encoders and returns ``out``, whose ``STAGE/final.pt`` hold
    them; there is then no model to export.
    """
    env = env or Env()
    t0 = time.perf_counter()
    torch.manual_seed(recipe.seed)
    splits = splits or load_splits(recipe)
    states, ran = {}, []
    for stage in STAGES:
        if stage not in recipe.stages or stage in ("head", "finetune"):
            continue
        states[stage] = _load_stage(recipe, stage)
        if states[stage] is not None:
            logger.info("%s: already finished, loaded", stage)
            continue
        ran.append(stage)
        if stage in ("mae-emg", "mae-pose"):
            states[stage] = run_mae(recipe, stage, splits.train, env)
        else:
            # unlabelled pre-training: the classifier, untrained here, gets one placeholder class
            model = run_align(recipe, stage, splits.train, splits.seen or ["unlabelled"],
                              _need(states.get("mae-emg") or _load_stage(recipe, "mae-emg"),
                                    "mae-emg"),
                              _need(states.get("mae-pose") or _load_stage(recipe, "mae-pose"),
                                    "mae-pose"), env)
            states[stage] = model.state_dict()
        _save_stage(recipe, stage, states[stage], env)
    if "head" not in recipe.stages:
        logger.info("no head stage: encoders in %s (%.1f s)", recipe.out_dir,
                    time.perf_counter() - t0)
        return recipe.out_dir
    aligned = _need(states.get(recipe.aligned) or _load_stage(recipe, recipe.aligned),
                    recipe.aligned)
    model = new_gesture_model(recipe, splits.seen,
                              head="projection" if recipe.aligned == "align-cpep" else "qformer")
    model.load_state_dict(aligned)
    pose_state = _need(states.get("mae-pose") or _load_stage(recipe, "mae-pose"), "mae-pose")
    model, bank, metrics = run_head(recipe, model.eval(), pose_state, splits)
    ran.append("head")
    if "finetune" in recipe.stages:
        state = _load_stage(recipe, "finetune")
        if state is None:
            ran.append("finetune")
            state = run_finetune(model, pose_encoder(recipe, pose_state),
                                 splits.train.relabel(splits.seen), recipe.stages["finetune"],
                                 _stage_dir(recipe, "finetune"), env, seed=recipe.seed,
                                 rotation=recipe.data.rotation,
                                 temperature=recipe.model.temperature).state_dict()
            _save_stage(recipe, "finetune", state, env)
        else:
            logger.info("finetune: already finished, loaded")
        model.load_state_dict(state)
        # the papers' protocol (linear probe on the frozen encoder) kept beside the deployed
        # model's scores; the bank is pose embeddings, unchanged by fine-tuning the EMG side
        metrics = {**{f"linear_probe_{k}": v for k, v in metrics.items()
                      if k.endswith("macro_accuracy")},
                   **score(model, bank, splits, recipe.stages["head"].num_workers)}
    wall = time.perf_counter() - t0
    # stages finished by an earlier invocation are loaded, not timed again
    metrics["stages_trained_in_this_run"] = ran
    metrics["wall_time_of_this_run_s"] = round(wall, 1)
    path = recipe.out_dir / FINAL_CHECKPOINT
    if env.is_main:
        torch.save({
            "architecture": model.architecture,
            "state_dict": model.state_dict(),
            "preprocessing": asdict(preprocessing(recipe)),
            "bank": {k: torch.from_numpy(v) for k, v in bank.items()},
            "provenance": {"recipe": recipe.to_dict(), "seed": recipe.seed,
                           "torch": str(torch.__version__), "world_size": env.world_size,
                           "device": str(env.device)},
            "metrics": metrics,
        }, path)
        logger.info("wrote %s (%.1f s in all)", path, wall)
    return path
