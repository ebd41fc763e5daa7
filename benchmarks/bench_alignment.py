"""The CPEP / EMBridge tables on the synthetic wristband.

    python benchmarks/bench_alignment.py [--recipe models/default.toml] [--steps-scale 0.33]

Linear probing (LP) and zero-shot k-NN (ZS, k=10) macro accuracy on the in-distribution
gestures and on unseen gestures, all scored on test users never used in training, for:
EMG-MAE only, a supervised EMG baseline (pose regression, CPEP's PoseT), CPEP, EMBridge and
the pose-encoder upper bound; then CPEP's ablations (frozen EMG encoder, random init, average
pooling instead of [CLS]).

Protocol (CPEP 2.4 / 3.1 on our splits): encoders see only the training users' in-distribution
gestures. LP in-dist: linear head fit on the training users, scored on the test users.
LP unseen: fit on the probe users' unseen gestures, scored on the test users' unseen gestures.
ZS: k-NN vote over a bank of frozen pose embeddings (training users' poses for in-dist, probe
users' poses for unseen) queried with the test users' EMG embeddings.

Models come from the recipe's run directory when the recipe has been trained
(``emgstream train RECIPE``), else they are trained here; baselines and ablations are trained
here with the recipe's align-cpep settings and cached under ``OUT/bench/``. The small CPU
config of ``models/default.toml`` makes this run in tens of minutes; the same code runs the
full config (``models/recipes/full.toml``) on GPUs.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_alignment")


class PoseRegression(nn.Module):
    """Supervised EMG baseline (CPEP's PoseT): the EMG encoder regresses each token's
    pose patch (20 joints x patch samples) with MSE. LP features: the token average (the
    [CLS] token gets no direct training signal here)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        cfg = model.encoder.config
        self.head = nn.Linear(cfg.d_model, 20 * cfg.patch)

    def forward(self, emg, pose):
        tokens = self.model.tokens(emg)[:, 1:]
        cfg = self.model.encoder.config
        k = cfg.n_patches
        target = pose[:, :, pose.shape[2] - k * cfg.patch:].reshape(pose.shape[0], 20, k,
                                                                    cfg.patch)
        target = target.permute(0, 2, 1, 3).reshape(pose.shape[0], k, -1)
        return F.mse_loss(self.head(tokens).float(), target.float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "models" / "default.toml")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="scale every stage's steps (as emgstream train --steps-scale)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None,
                        help="train/evaluate only these models (others must be cached)")
    parser.add_argument("--no-eval", action="store_true",
                        help="only train and cache the models named by --only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from emgstream.nn import PoseAnchor
    from emgstream.train import Env, fit, load_recipe
    from emgstream.train._eval import embed_windows, linear_probe_accuracy, zero_shot_accuracy
    from emgstream.train._pipeline import (_load_stage, _save_stage, load_splits,
                                           new_gesture_model, pose_encoder, run_align, run_mae)

    t_start = time.perf_counter()
    recipe = load_recipe(args.recipe).scaled(args.steps_scale)
    env = Env()
    splits = load_splits(recipe)
    bench_dir = recipe.out_dir / "bench"

    def stage_state(stage):
        state = _load_stage(recipe, stage)
        if state is None:
            logger.info("training %s (not found in %s)", stage, recipe.out_dir)
            if stage.startswith("mae"):
                state = run_mae(recipe, stage, splits.train, env)
            else:
                state = run_align(recipe, stage, splits.train, splits.seen,
                                  stage_state("mae-emg"), stage_state("mae-pose"),
                                  env).state_dict()
            _save_stage(recipe, stage, state, env)
        return state

    def cached(name, train_fn):
        path = bench_dir / name / "final.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        logger.info("training %s", name)
        state = train_fn(bench_dir / name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return state

    wanted = set(args.only) if args.only else None

    def want(name):
        return wanted is None or name in wanted

    def emg_state():
        return stage_state("mae-emg")

    def pose_state():
        return stage_state("mae-pose")

    # -- the models and their embedding functions -------------------------------------------
    methods = {}  # name -> (lp features fn on EMG, zs similarity fn or None)

    def mae_features():
        model = new_gesture_model(recipe, splits.seen)
        model.encoder.load_state_dict(emg_state())
        model.eval()
        return lambda x: model.tokens(x)[:, 0]

    def aligned(model):
        emb = model.embed
        return emb, lambda x: emb(x)

    if want("EMG-MAE"):
        methods["EMG-MAE"] = (mae_features(), None)

    if want("supervised"):
        def train_supervised(out):
            torch.manual_seed(recipe.seed)
            model = new_gesture_model(recipe, splits.seen)  # from scratch, as PoseT
            for p in list(model.projection.parameters()) + list(model.classifier.parameters()):
                p.requires_grad_(False)
            reg = PoseRegression(model)
            fit(reg, splits.train.rotated(recipe.data.rotation), recipe.stages["align-cpep"],
                out, env, seed=recipe.seed,
                inputs=(0, 1), desc="supervised")
            return model.state_dict()
        sup = new_gesture_model(recipe, splits.seen)
        sup.load_state_dict(cached("supervised", train_supervised))
        sup.eval()
        methods["Supervised (pose regression)"] = (lambda x: sup.tokens(x)[:, 1:].mean(1),
                                                   None)

    def cpep_variant(name, **kwargs):
        def train(out):
            return run_align(recipe, "align-cpep", splits.train, splits.seen,
                             None if kwargs.get("rand_init") else emg_state(), pose_state(), env,
                             pooling=kwargs.get("pooling", "cls"),
                             freeze_emg_encoder=kwargs.get("frozen", False),
                             stage_dir=out).state_dict()
        model = new_gesture_model(recipe, splits.seen, pooling=kwargs.get("pooling", "cls"))
        model.load_state_dict(cached(name, train))
        return aligned(model.eval())

    if want("CPEP"):
        cpep = new_gesture_model(recipe, splits.seen)
        cpep.load_state_dict(stage_state("align-cpep"))
        methods["CPEP"] = aligned(cpep.eval())

    if want("EMBridge") and "align-embridge" in recipe.stages:
        emb = new_gesture_model(recipe, splits.seen, head="qformer")
        emb.load_state_dict(stage_state("align-embridge"))
        emb.eval()
        # zero-shot with the best query (max over the M queries), as EMBridge trains it
        methods["EMBridge"] = (emb.embed,
                               lambda x: emb.query_embeddings(emb.tokens(x)))

    ablations = {}
    if want("CPEP-frozen"):
        ablations["CPEP, E_x frozen"] = cpep_variant("cpep-frozen", frozen=True)
    if want("CPEP-randinit"):
        ablations["CPEP, E_x random init"] = cpep_variant("cpep-randinit", rand_init=True)
    if want("CPEP-avgpool"):
        ablations["CPEP, average pooling"] = cpep_variant("cpep-avgpool", pooling="mean")

    if args.no_eval:
        return
    # -- evaluation --------------------------------------------------------------------------
    anchor = PoseAnchor(pose_encoder(recipe, pose_state()))
    seen_train, seen_test = splits.train.relabel(splits.seen), splits.test.relabel(splits.seen)
    unseen_probe = splits.probe.relabel(splits.unseen)
    unseen_test = splits.test.relabel(splits.unseen)
    n_seen, n_unseen = len(splits.seen), len(splits.unseen)
    bank_seen = embed_windows(anchor, seen_train, which=1)
    bank_unseen = embed_windows(anchor, unseen_probe, which=1)

    def similarity(zs_fn, windows, bank):
        q = embed_windows(zs_fn, windows)
        if q.ndim == 3:  # (n, M, e) queries: best query per bank item
            return torch.einsum("nme,be->nmb", q, bank).amax(1)
        return q @ bank.T

    def evaluate(lp_fn, zs_fn, which=0):
        with torch.no_grad():
            f = {k: embed_windows(lp_fn, w, which=which) for k, w in
                 (("tr", seen_train), ("te", seen_test), ("pu", unseen_probe),
                  ("tu", unseen_test))}
        row = {
            "LP in-dist": linear_probe_accuracy(f["tr"], seen_train.labels, f["te"],
                                                seen_test.labels, n_seen, seed=recipe.seed),
            "LP unseen": linear_probe_accuracy(f["pu"], unseen_probe.labels, f["tu"],
                                               unseen_test.labels, n_unseen, seed=recipe.seed),
        }
        if zs_fn is not None:
            with torch.no_grad():
                row["ZS in-dist"] = zero_shot_accuracy(
                    similarity(zs_fn, seen_test, bank_seen), seen_train.labels,
                    seen_test.labels, n_seen)
                row["ZS unseen"] = zero_shot_accuracy(
                    similarity(zs_fn, unseen_test, bank_unseen), unseen_probe.labels,
                    unseen_test.labels, n_unseen)
        return row

    rows = {name: evaluate(*fns) for name, fns in methods.items()}
    if want("pose"):
        rows["Pose encoder (upper bound)"] = evaluate(anchor, None, which=1)
    ablation_rows = {name: evaluate(*fns) for name, fns in ablations.items()}
    if "CPEP" in rows and ablation_rows:
        ablation_rows["CPEP (ours)"] = rows["CPEP"]

    cols = ("LP in-dist", "ZS in-dist", "LP unseen", "ZS unseen")
    users = sorted(set(splits.test.users.tolist()))
    print(f"\nSynthetic wristband, recipe {recipe.name} (steps x{recipe.steps_scale:g}); "
          f"macro accuracy on test users {users} never seen in training; "
          f"{len(seen_test)} in-dist / {len(unseen_test)} unseen test windows; chance "
          f"{1 / n_seen:.3f} in-dist ({n_seen} gestures), {1 / n_unseen:.3f} unseen "
          f"({n_unseen} gestures).\n")
    for title, table in (("Main table", rows), ("CPEP ablations", ablation_rows)):
        if not table:
            continue
        print(f"**{title}**\n")
        print("| method | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for name, row in table.items():
            print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c in row else "–"
                                              for c in cols) + " |")
        print()
    print(f"wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
