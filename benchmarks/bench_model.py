"""How well a model file recognises synthetic users' gestures, through ONNX Runtime.

The deployed path: each session is filtered by the live causal chain, windows of the model's
length are cut every ``--stride`` seconds (a window's label is that of all its samples; mixed
windows are skipped), and the model file's ONNX graph classifies them. Macro accuracy over
the gestures (chance 1/13), per group of users and per user:

- *training users, new session*: users the model was trained on, wearing the band again
  (``session`` not among the recipe's training sessions): what ``emgstream demo`` shows by
  default (``sim://?session=2``);
- *new users*: users never trained on (the recipe's test users), both sessions
  (``--new-sessions``).

Then, per group, how far the model's confidence can be trusted: the share of windows in each
band of top-class probability and how many of them are right. Self-training (EMG-UP's SSP
keeps windows above xi = 0.8) needs the confident windows to be mostly right.

    python benchmarks/bench_model.py --model models/default.emgm
    python benchmarks/bench_model.py --train-users 0-3 --new-users 14,15 --session 2

The defaults follow ``models/default.toml`` (seed 0; users 0-11 train, 14-15 test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from emgstream import synth
from emgstream.modelfile import load_model_file
from emgstream.train import macro_accuracy, windows_from_streams

_ROOT = Path(__file__).resolve().parents[1]


def _users(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


_BANDS = (0.0, 0.5, 0.8, 0.95, 0.99, 1.0)  #: top-class probability bands of the trust table


def score(session: ort.InferenceSession, model, streams, stride: int):
    """(macro accuracy, top-class probability (n,), whether each window is right (n,))."""
    ws = windows_from_streams(streams, model.preprocessing, stride).relabel(
        list(model.class_names))
    emg, _, labels = ws.__getitems__(list(range(len(ws))))
    logits = np.concatenate([session.run(["logits"], {"emg": emg[i:i + 256].numpy()})[0]
                             for i in range(0, len(ws), 256)])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = labels.numpy()
    right = probs.argmax(axis=1) == labels
    return (macro_accuracy(labels, probs.argmax(axis=1), len(model.class_names)),
            probs.max(axis=1), right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=_ROOT / "models" / "default.emgm")
    parser.add_argument("--train-users", default="0-3", help="training users to score, e.g. 0-3")
    parser.add_argument("--session", type=int, default=2,
                        help="their session (the default recipe trains on sessions 0 and 1)")
    parser.add_argument("--new-users", default="14,15", help="users never trained on")
    parser.add_argument("--new-sessions", default="0,1",
                        help="their sessions (e.g. 1 to score a model calibrated on session 0)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per session")
    parser.add_argument("--stride", type=float, default=0.1, help="seconds between windows")
    parser.add_argument("--seed", type=int, default=0, help="synthetic population seed")
    args = parser.parse_args()

    model = load_model_file(args.model)
    prep = model.preprocessing
    session = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"])
    config = synth.SynthConfig(n_channels=prep.n_channels, sample_rate=prep.sample_rate)
    stride = max(1, round(args.stride * prep.sample_rate))
    gestures = list(model.class_names)

    def streams(user: int, sessions) -> list:
        profile = synth.make_user(user, args.seed, config)
        return [synth.generate_session(profile, session=s, duration_s=args.seconds,
                                       gestures=gestures) for s in sessions]

    t0 = time.perf_counter()
    rows = []
    for group, users, sessions in (
            (f"training users, session {args.session}", _users(args.train_users),
             [args.session]),
            (f"new users, session {args.new_sessions.replace(',', ' and ')}",
             _users(args.new_users), _users(args.new_sessions))):
        rows.append((group, {u: score(session, model, streams(u, sessions), stride)
                             for u in users}))

    print(f"model {args.model.name}: {model.architecture.get('encoder', {}).get('features', 'raw')}"
          f" tokens, {len(gestures)} gestures (chance {1 / len(gestures):.3f}), "
          f"{args.seconds:g} s per session, windows every {args.stride:g} s\n")
    print("| users | macro accuracy (mean) | per user |")
    print("|---|---:|---|")
    for group, per_user in rows:
        detail = ", ".join(f"{synth.user_name(u)} {a:.3f}" for u, (a, _, _) in per_user.items())
        print(f"| {group} | {np.mean([a for a, _, _ in per_user.values()]):.3f} | {detail} |")
    bands = list(zip(_BANDS, _BANDS[1:]))
    print("\nTrust in the confidence: share of windows with that top-class probability, and "
          "the fraction of them that are right\n")
    print("| users | " + " | ".join(f"{lo:g}-{hi:g}" for lo, hi in bands) + " |")
    print("|---|" + "---:|" * len(bands))
    for group, per_user in rows:
        confidence = np.concatenate([c for _, c, _ in per_user.values()])
        right = np.concatenate([r for _, _, r in per_user.values()])
        cells = []
        for i, (lo, hi) in enumerate(bands):
            inside = (confidence >= lo) & ((confidence < hi) | (i == len(bands) - 1))
            cells.append(f"{inside.mean():.0%}: {right[inside].mean():.0%} right"
                         if inside.any() else "0%")
        print(f"| {group} | " + " | ".join(cells) + " |")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
