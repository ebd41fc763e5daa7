"""How hard is the synthetic cross-user problem, next to real people?

A plain classifier (shrinkage LDA on Hudgins time-domain features: MAV, WL, ZC, SSC per
channel; 200 ms windows every 50 ms, pure windows only) trained and tested

- within-user: on one session / block, tested on the other (3DC: ``train`` -> ``test``);
- cross-user: leave one user out, trained on every other user, no adaptation,

on synthetic users (``emgstream.synth``) and on the real people of ``../shared/data/3dc``.
Both go through the live causal filters (band-pass 20-450 Hz, mains notch) first. Prints
markdown tables: accuracy mean, std and min over users per setting, and the per-user values.

    python benchmarks/bench_realism.py --users 11 --duration 150
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emgstream.io import WindowDataset, WindowSpec, load_3dc
from emgstream.modelfile import Preprocessing

_ROOT = Path(__file__).resolve().parents[1]
_WINDOW_S, _STRIDE_S = 0.2, 0.05
_THRESHOLD = 0.05  # ZC / SSC dead band, as a fraction of the window's RMS per channel
_SHRINKAGE = 0.1


def hudgins_features(windows: np.ndarray) -> np.ndarray:
    """(windows, channels, time) -> (windows, 4 * channels): MAV, WL, ZC, SSC.

    The ZC and SSC dead band is a fraction of each window's own RMS per channel, so the
    features do not depend on the units (µV here, ADC counts in 3DC)."""
    x = windows.astype(np.float64)
    eps = _THRESHOLD * np.sqrt(np.mean(x ** 2, axis=2, keepdims=True))
    mav = np.mean(np.abs(x), axis=2)
    d = np.diff(x, axis=2)
    wl = np.sum(np.abs(d), axis=2)
    zc = np.sum((x[..., :-1] * x[..., 1:] < 0) & (np.abs(d) >= eps), axis=2)
    ssc = np.sum((d[..., :-1] * d[..., 1:] < 0) &
                 ((np.abs(d[..., :-1]) >= eps) | (np.abs(d[..., 1:]) >= eps)), axis=2)
    return np.concatenate([mav, wl, zc, ssc], axis=1)


class ShrinkageLDA:
    """Linear discriminant analysis with a pooled covariance shrunk towards its mean
    variance (features standardised on the training set first; equal class priors)."""

    def fit(self, x: np.ndarray, y: np.ndarray, shrinkage: float = _SHRINKAGE):
        self.mean, self.std = x.mean(0), x.std(0) + 1e-12
        z = (x - self.mean) / self.std
        self.classes = np.unique(y)
        means = np.stack([z[y == c].mean(0) for c in self.classes])
        centred = z - means[np.searchsorted(self.classes, y)]
        cov = centred.T @ centred / max(1, len(z) - len(self.classes))
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
        self.coef = np.linalg.solve(cov, means.T)  # (features, classes)
        self.intercept = -0.5 * np.sum(means * self.coef.T, axis=1)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return self.classes[np.argmax(z @ self.coef + self.intercept, axis=1)]


def windows_and_features(streams, preprocessing):
    """Features, labels and (user, session) of every pure labelled window."""
    out = []
    for stream in streams:
        spec = WindowSpec(preprocessing.window, preprocessing.hop)
        ds = WindowDataset([stream], spec, preprocessing, with_pose=False)
        emg = np.stack([ds[i]["emg"] for i in range(len(ds))])
        out.append((hudgins_features(emg), ds.window_labels, stream.user, stream.session))
    return out


def evaluate(parts, group_of_session) -> dict[str, dict[str, float]]:
    """Within-user (train group -> test group) and leave-one-user-out accuracy per user."""
    users = sorted({p[2] for p in parts})
    within, cross = {}, {}
    for user in users:
        mine = [p for p in parts if p[2] == user]
        train = [p for p in mine if group_of_session(p[3]) == "train"]
        test = [p for p in mine if group_of_session(p[3]) == "test"]
        x_test = np.concatenate([p[0] for p in test])
        y_test = np.concatenate([p[1] for p in test])
        lda = ShrinkageLDA().fit(np.concatenate([p[0] for p in train]),
                                 np.concatenate([p[1] for p in train]))
        within[user] = float(np.mean(lda.predict(x_test) == y_test))
        others = [p for p in parts if p[2] != user]
        lda = ShrinkageLDA().fit(np.concatenate([p[0] for p in others]),
                                 np.concatenate([p[1] for p in others]))
        cross[user] = float(np.mean(lda.predict(x_test) == y_test))
    return {"within-user": within, "cross-user": cross}


def synthetic_parts(args):
    from emgstream.synth import GESTURES, SynthConfig, generate_session, make_users

    config = SynthConfig()
    rate = config.sample_rate
    pre = Preprocessing(sample_rate=rate, n_channels=config.n_channels,
                        window=int(_WINDOW_S * rate), hop=int(_STRIDE_S * rate),
                        notch=config.mains_hz)
    parts, seconds = [], []
    for user in make_users(args.users, args.seed, config):
        for session in (0, 1):  # one at a time: only the features are kept
            t0 = time.perf_counter()
            stream = generate_session(user, session, args.duration, GESTURES)
            seconds.append(time.perf_counter() - t0)
            stream.pose = None
            parts += windows_and_features([stream], pre)
    return parts, config, seconds


def threedc_parts(args):
    streams = load_3dc(args.threedc, args.participants)
    rate, channels = streams[0].sample_rate, streams[0].n_channels
    pre = Preprocessing(sample_rate=rate, n_channels=channels, window=int(_WINDOW_S * rate),
                        hop=int(_STRIDE_S * rate), notch=60.0)
    return windows_and_features(streams, pre)


def _summary_rows(name, results, n_classes):
    rows = []
    for setting, per_user in results.items():
        acc = np.array(list(per_user.values())) * 100
        rows.append(f"| {name} | {setting} | {len(acc)} | {n_classes} | {acc.mean():.1f} | "
                    f"{acc.std():.1f} | {acc.min():.1f} | {acc.max():.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=11, help="synthetic users (default 11)")
    parser.add_argument("--duration", type=float, default=150.0,
                        help="seconds per synthetic session (two sessions per user)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threedc", type=Path, default=_ROOT.parent / "shared" / "data" / "3dc",
                        help="3DC root (default ../shared/data/3dc)")
    parser.add_argument("--participants", type=lambda s: [int(p) for p in s.split(",")],
                        default=None, help="3DC people, e.g. 1,2,3 (default: all found)")
    args = parser.parse_args()

    synth, config, gen_seconds = synthetic_parts(args)
    from emgstream.synth import GESTURES

    results = {"synthetic": (evaluate(synth, lambda s: "train" if s == "0" else "test"),
                             len(GESTURES))}
    if args.threedc.is_dir():
        real = threedc_parts(args)
        results["3DC (real)"] = (evaluate(real, lambda s: s.split("/")[0]), 11)
    else:
        print(f"(3DC not found at {args.threedc}: real table skipped)")

    median = float(np.median(gen_seconds))
    print(f"Generation ({config.n_channels} ch @ {config.sample_rate:g} Hz, EMG + pose + "
          f"labels, one process):\n")
    print("| sessions | seconds each | median generation time (s) | x real time | total (s) |")
    print("|---|---|---|---|---|")
    print(f"| {len(gen_seconds)} | {args.duration:g} | {median:.2f} | "
          f"{args.duration / median:.0f} | {sum(gen_seconds):.1f} |\n")
    print(f"LDA on Hudgins TD features, {_WINDOW_S * 1000:.0f} ms windows every "
          f"{_STRIDE_S * 1000:.0f} ms; accuracy in %. Synthetic: {args.users} users x 2 "
          f"sessions x {args.duration:g} s, seed {args.seed}.\n")
    print("| data | setting | users | classes | mean | std | min | max |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (res, n_classes) in results.items():
        print("\n".join(_summary_rows(name, res, n_classes)))
    for name, (res, _) in results.items():
        print(f"\nper user, {name}:\n")
        print("| user | within | cross |")
        print("|---|---|---|")
        for user in res["within-user"]:
            print(f"| {user} | {100 * res['within-user'][user]:.1f} | "
                  f"{100 * res['cross-user'][user]:.1f} |")
    print("\nsynthetic variability settings:", {k: v for k, v in vars(config).items()
                                                if k not in {"n_channels", "sample_rate"}})


if __name__ == "__main__":
    main()
