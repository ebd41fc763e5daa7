"""Dev-user sweep behind the EMG-UP defaults (``emgstream.adapt.methods``), on 3DC.

One source model is trained on the non-dev people (default Participant4-11, both blocks,
labelled); each setting then adapts it to every dev person's ``train`` block (unlabelled)
and is scored on their ``test`` block. Prints a markdown table: mean accuracy over the dev
people, the change against source-only, the relative parameter change
||theta - theta_0|| / ||theta_0||, the fraction of pseudo-labels kept and wall time.

    python benchmarks/bench_adapt.py --root ../shared/data/3dc [--dev 1,2,3] [--out FILE.md]

The source model is ``emgstream eval``'s (per-user statistics, :func:`source_windows`).
The settings: AdaBN alone, the paper's learning rate 1e-7 against 1e-4 (does 1e-7 move the
model at all?), SSA's learning rate, N_c = 15 against 1, AdaBN before adapting or not; then
EMG-UP's other hyper-parameters one at a time (xi, SSP learning rate, EMA decay alpha, which
model is returned, epochs), and SHOT-IM, the strongest baseline of ``emgstream eval``, for
scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from emgstream.adapt.evaluate import (EvalConfig, _score, cut_windows, load_users,
                                      source_windows, train_source)
from emgstream.adapt.methods import AdaptConfig, adapt

SETTINGS = [  # (label, method, AdaptConfig changes); every one AdaBN first unless it says
    ("AdaBN alone", "adabn", {}),
    ("EMG-UP, paper lr 1e-7 (both stages)", "emg-up", {"lr": 1e-7, "ssa_lr": 1e-7}),
    ("EMG-UP, defaults (lr 1e-4, SSA 1e-6, N_c 1)", "emg-up", {}),
    ("EMG-UP, SSA lr 1e-4", "emg-up", {"ssa_lr": 1e-4}),
    ("SSP, defaults", "ssp", {}),
    ("SSP, N_c 15 (paper)", "ssp", {"n_consecutive": 15}),
    ("SSP, no AdaBN first", "ssp", {"renormalise": False}),
    ("EMG-UP, xi 0.5", "emg-up", {"xi": 0.5}),
    ("EMG-UP, xi 0.9", "emg-up", {"xi": 0.9}),
    ("EMG-UP, xi 0.95", "emg-up", {"xi": 0.95}),
    ("EMG-UP, lr 3e-4", "emg-up", {"lr": 3e-4}),
    ("EMG-UP, lr 1e-3", "emg-up", {"lr": 1e-3}),
    ("EMG-UP, alpha 0.99", "emg-up", {"alpha": 0.99}),
    ("EMG-UP, alpha 0.999", "emg-up", {"alpha": 0.999}),
    ("EMG-UP, the EMA teacher returned", "emg-up", {"final": "teacher"}),
    ("EMG-UP, 20 SSP epochs", "emg-up", {"ssp_epochs": 20}),
    ("SHOT-IM", "shot-im", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="3DC folder")
    parser.add_argument("--dev", default="1,2,3", help="dev participants")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    users, prep, classes = load_users("3dc", args.root)
    dev = [f"Participant{int(u)}" for u in args.dev.split(",")]
    train = [u for u in users if u not in dev]
    config = EvalConfig()
    src = source_windows(users, train, prep, config)
    t0 = time.perf_counter()
    source = train_source(src, prep, classes, config)
    print(f"source model: {len(train)} people, {len(src)} windows, "
          f"{time.perf_counter() - t0:.0f} s")
    step = round(config.adapt_stride_s * prep.sample_rate)
    data = {u: (cut_windows(users[u].first, prep, step),
                cut_windows(users[u].second, prep, round(config.score_stride_s * prep.sample_rate)))
            for u in dev}
    so = {u: _score(source, data[u][1], len(classes))["accuracy"] for u in dev}
    lines = [f"Dev people {', '.join(dev)}; source model trained on {', '.join(train)}.", "",
             "| setting | accuracy % (mean) | Δ vs SO (points) | per person | "
             "parameter change | kept pseudo-labels | seconds |",
             "|---|---|---|---|---|---|---|",
             f"| source-only | {100 * np.mean(list(so.values())):.1f} | +0.0 | "
             + " / ".join(f"{100 * so[u]:.1f}" for u in dev) + " | 0 | | |"]
    for label, method, changes in SETTINGS:
        accs, change, kept, secs = [], [], [], []
        for u in dev:
            model, report = adapt(source, data[u][0].x, data[u][0].segment, method,
                                  AdaptConfig().replace(**changes))
            accs.append(_score(model, data[u][1], len(classes))["accuracy"])
            change.append(report.parameter_change)
            kept.append(report.accepted)
            secs.append(report.seconds)
        delta = np.mean(accs) - np.mean(list(so.values()))
        kept_txt = "" if np.isnan(kept).all() else f"{100 * np.nanmean(kept):.0f} %"
        lines.append(f"| {label} | {100 * np.mean(accs):.1f} | {100 * delta:+.1f} | "
                     + " / ".join(f"{100 * a:.1f}" for a in accs)
                     + f" | {np.mean(change):.1e} | {kept_txt} | {np.median(secs):.0f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
