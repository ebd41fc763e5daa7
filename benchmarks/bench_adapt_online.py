"""Online personalization (:class:`emgstream.adapt.OnlineAdapter`) accuracy over time.

3DC: a source model is trained on the non-test people, as ``emgstream eval`` trains it.
Synthetic users (``--model``): the given model file is the source (the shipped model; its
test users 14 and 15 by default).
Each test person's first block (3DC ``train``, synthetic session 0) is then fed to the
adapter window by window in time order (one window per live hop, as the pipeline does; one
``step()`` every ``--step-every`` windows), and the served model is scored on the person's
second block (3DC ``test``, synthetic session 1) every ``--score-every`` seconds of EMG.
Prints a markdown table of accuracy against seconds of use, with the same method offline on
the same block (every second hop's window). ``--method``: the default EMG-UP+ or the paper's
EMG-UP.

    python benchmarks/bench_adapt_online.py --root ../shared/data/3dc [--test 1,2,3]
    python benchmarks/bench_adapt_online.py --model models/default.emgm [--test 14,15]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from emgstream.adapt import DEFAULT_METHOD, OnlineAdapter, OnlineConfig, adapt
from emgstream.adapt.evaluate import EvalConfig, _score, cut_windows, load_users, \
    source_windows, train_source
from emgstream.modelfile import load_model_file
from emgstream.nn import load_model
from emgstream.train import to_model_file


def _source_3dc(args):
    """Train the source model on the non-test 3DC people."""
    users, prep, classes = load_users("3dc", args.root)
    test = [f"Participant{int(u)}" for u in (args.test or "1,2,3").split(",")]
    train = [u for u in users if u not in test]
    config = EvalConfig()  # eval's own source recipe, so "offline" is eval's EMG-UP row
    if args.source_epochs is not None:
        config = dataclasses.replace(config, supervised_epochs=args.source_epochs)
    src = source_windows(users, train, prep, config)
    t0 = time.perf_counter()
    source = train_source(src, prep, classes, config)
    print(f"source model: {len(train)} people, {len(src)} windows, "
          f"{time.perf_counter() - t0:.0f} s")
    return source, to_model_file(source, prep, classes), {u: users[u] for u in test}


def _source_synth(args):
    """The given model file, and the synthetic test users' two sessions."""
    model_file = load_model_file(args.model)
    indices = [int(u) for u in (args.test or "14,15").split(",")]
    users, _, classes = load_users("synth", None, indices, synth_duration_s=args.seconds)
    if list(classes[:model_file.n_classes]) != list(model_file.class_names):
        raise SystemExit(f"the model's classes {model_file.class_names} are not the synthetic "
                         f"users' {classes}")
    print(f"source model: {args.model}")
    return load_model(model_file).eval(), model_file, users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="3DC folder")
    parser.add_argument("--model", type=Path, default=None,
                        help="source model file: adapt it to synthetic users instead of 3DC")
    parser.add_argument("--test", default=None,
                        help="test participants (3DC, default 1,2,3) or synthetic user "
                             "indices (default 14,15)")
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="seconds per synthetic session")
    parser.add_argument("--step-every", type=int, default=10, help="windows between steps")
    parser.add_argument("--score-every", type=float, default=40.0, help="seconds of EMG")
    parser.add_argument("--source-epochs", type=int, default=None,
                        help="supervised epochs of the 3DC source model (default: eval's)")
    parser.add_argument("--no-renormalise", dest="renormalise", action="store_false",
                        help="no online AdaBN (OnlineConfig.renormalise, on by default)")
    parser.add_argument("--method", choices=("emg-up+", "emg-up"), default=DEFAULT_METHOD,
                        help="online and offline method (default: the product's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    if (args.root is None) == (args.model is None):
        parser.error("give --root (3DC) or --model (synthetic users)")
    torch.set_num_threads(1)
    source, model_file, people = _source_3dc(args) if args.root else _source_synth(args)
    prep, n_classes = model_file.preprocessing, model_file.n_classes
    hop_s = prep.hop / prep.sample_rate
    checkpoints = None
    rows = {}
    for person, data in people.items():
        stream = cut_windows(data.first, prep, prep.hop)  # live order, every hop
        score = cut_windows(data.second, prep, round(0.1 * prep.sample_rate))
        adapter = OnlineAdapter(model_file, OnlineConfig(method=args.method,
                                                         renormalise=args.renormalise))
        curve = [(0.0, _score(adapter.served, score, n_classes)["accuracy"])]
        every = max(1, round(args.score_every / hop_s))
        t0 = time.perf_counter()
        for i in range(len(stream)):
            adapter.observe(stream.x[i:i + 1])
            if (i + 1) % args.step_every == 0:
                adapter.step()
            if (i + 1) % every == 0 or i + 1 == len(stream):
                curve.append(((i + 1) * hop_s,
                              _score(adapter.served, score, n_classes)["accuracy"]))
        online_s = time.perf_counter() - t0
        offline, _ = adapt(source, stream.x[::2], stream.segment[::2], args.method)
        rows[person] = (curve, _score(offline, score, n_classes)["accuracy"], online_s,
                        adapter.stats)
        checkpoints = [t for t, _ in curve] if checkpoints is None else checkpoints
        print(person, [f"{t:.0f}s {100 * a:.1f}" for t, a in curve],
              f"offline {100 * rows[person][1]:.1f}", adapter.stats, flush=True)
    header = ("| person | " + " | ".join(f"{t:.0f} s" for t in checkpoints[:-1])
              + f" | end of block | offline {args.method} | adapter seconds | steps | rollbacks |")
    lines = [f"Online {args.method} accuracy (%) on each person's second block against seconds of "
             f"the first block streamed (step every {args.step_every} windows of "
             f"{1e3 * hop_s:g} ms; online AdaBN {'on' if args.renormalise else 'off'}).", "",
             header, "|---" * (header.count("|") - 1) + "|"]
    for person, (curve, offline, secs, stats) in rows.items():
        accs = [f"{100 * a:.1f}" for _, a in curve[:len(checkpoints) - 1]] + [
            f"{100 * curve[-1][1]:.1f}"]
        lines.append(f"| {person} | " + " | ".join(accs) + f" | {100 * offline:.1f} | "
                     f"{secs:.0f} | {stats.steps} | {stats.rollbacks} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
