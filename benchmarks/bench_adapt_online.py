"""Online EMG-UP (:class:`emgstream.adapt.OnlineAdapter`) accuracy over time, on 3DC.

A source model is trained on the non-test people; each test person's ``train`` block is
then fed to the adapter window by window in time order (one window per 50 ms hop, as the
live pipeline does; one ``step()`` every ``--step-every`` windows), and the served model is
scored on the person's ``test`` block every ``--score-every`` seconds of EMG. Prints a
markdown table of accuracy against seconds of use, with offline EMG-UP on the same block.

    python benchmarks/bench_adapt_online.py --root ../shared/data/3dc [--test 1,2,3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from emgstream.adapt import OnlineAdapter, OnlineConfig, adapt
from emgstream.adapt.evaluate import EvalConfig, Windows, _score, cut_windows, load_users, \
    train_source
from emgstream.train import to_model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="3DC folder")
    parser.add_argument("--test", default="1,2,3", help="test participants")
    parser.add_argument("--step-every", type=int, default=10, help="windows between steps")
    parser.add_argument("--score-every", type=float, default=40.0, help="seconds of EMG")
    parser.add_argument("--source-epochs", type=int, default=4)
    parser.add_argument("--renormalise", action="store_true",
                        help="online AdaBN on the buffer (OnlineConfig.renormalise)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    users, prep, classes = load_users("3dc", args.root)
    test = [f"Participant{int(u)}" for u in args.test.split(",")]
    train = [u for u in users if u not in test]
    config = dataclasses.replace(EvalConfig(), supervised_epochs=args.source_epochs,
                                 mae_epochs=1, train_stride_s=0.2)
    src = Windows.concat([cut_windows(users[u].first + users[u].second, prep,
                                      round(config.train_stride_s * prep.sample_rate))
                          for u in train])
    t0 = time.perf_counter()
    source = train_source(src, prep, classes, config)
    print(f"source model: {len(train)} people, {len(src)} windows, "
          f"{time.perf_counter() - t0:.0f} s")
    model_file = to_model_file(source, prep, classes)
    hop_s = prep.hop / prep.sample_rate
    checkpoints = None
    rows = {}
    for person in test:
        stream = cut_windows(users[person].first, prep, prep.hop)  # live order, every hop
        score = cut_windows(users[person].second, prep, round(0.1 * prep.sample_rate))
        adapter = OnlineAdapter(model_file, OnlineConfig(renormalise=args.renormalise))
        curve = [(0.0, _score(adapter.served, score, len(classes))["accuracy"])]
        every = max(1, round(args.score_every / hop_s))
        t0 = time.perf_counter()
        for i in range(len(stream)):
            adapter.observe(stream.x[i:i + 1])
            if (i + 1) % args.step_every == 0:
                adapter.step()
            if (i + 1) % every == 0 or i + 1 == len(stream):
                curve.append(((i + 1) * hop_s,
                              _score(adapter.served, score, len(classes))["accuracy"]))
        online_s = time.perf_counter() - t0
        offline, _ = adapt(source, stream.x[::2], stream.segment[::2], "emg-up")
        rows[person] = (curve, _score(offline, score, len(classes))["accuracy"], online_s,
                        adapter.stats)
        checkpoints = [t for t, _ in curve] if checkpoints is None else checkpoints
        print(person, [f"{t:.0f}s {100 * a:.1f}" for t, a in curve],
              f"offline {100 * rows[person][1]:.1f}", adapter.stats, flush=True)
    header = ("| person | " + " | ".join(f"{t:.0f} s" for t in checkpoints[:-1])
              + " | end of block | offline EMG-UP | adapter seconds | steps | rollbacks |")
    lines = [f"Online EMG-UP accuracy (%) on each person's test block against seconds of the "
             f"train block streamed (step every {args.step_every} windows of 50 ms; "
             f"online AdaBN {'on' if args.renormalise else 'off'}).", "",
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
