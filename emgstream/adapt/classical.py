"""The classical bar: LDA on Hudgins features, the field's textbook cross-user baseline.

Three rows of ``emgstream eval`` (LibEMG's default pipeline, with scikit-learn's LDA; the
``libemg`` package itself pins numpy < 2 and does not install beside ours):

- ``lda``: LDA on Hudgins features of every training user's windows, applied to the new
  person as it is;
- ``lda-zscore``: every person's features z-scored by their own statistics (the training
  users' by all their windows, the new person's by their unlabelled adaptation block);
- ``lda-kmeans``: a shallow self-calibration on top of ``lda-zscore``: pseudo-label the
  person's block with the source LDA, then alternate a k-means step (one centre per class,
  at the pseudo-labels' class means; every window to the nearest) and an LDA refit on the
  clusters, until the labels settle.

Windows are (n, channels, time) float, filtered by the live chain. Torch-free.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["hudgins_features", "zscore", "self_calibrate", "ClassicalBaselines", "PersonalLDA",
           "CLASSICAL_ROWS"]

logger = logging.getLogger(__name__)

CLASSICAL_ROWS = ("lda", "lda-zscore", "lda-kmeans")


def hudgins_features(windows: np.ndarray) -> np.ndarray:
    """Hudgins' time-domain set: (n, channels, time) -> (n, 4 * channels).

    Columns are MAV of every channel, then ZC, SSC and WL, with LibEMG's definitions and
    its default thresholds (none): ZC counts strict sign changes between consecutive
    samples; SSC counts the samples where ``(x[i] - x[i-1]) * (x[i] - x[i+1]) >= 0``; WL
    is the sum of absolute first differences.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] < 3:
        raise ValueError(f"windows must be (n, channels, time >= 3), got {x.shape}")
    mav = np.abs(x).mean(axis=2)
    zc = (np.abs(np.diff(np.sign(x), axis=2)) == 2).sum(axis=2)
    middle = x[:, :, 1:-1]
    ssc = ((middle - x[:, :, :-2]) * (middle - x[:, :, 2:]) >= 0).sum(axis=2)
    wl = np.abs(np.diff(x, axis=2)).sum(axis=2)
    return np.concatenate([mav, zc, ssc, wl], axis=1)


def zscore(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``features`` standardised by ``reference``'s per-column mean and std."""
    std = reference.std(axis=0)
    return (features - reference.mean(axis=0)) / np.where(std > 0, std, 1.0)


def self_calibrate(z: np.ndarray, labels: np.ndarray, iterations: int = 10):
    """A person's own LDA from their unlabelled features ``z`` (n, features), z-scored by
    their own statistics, starting from pseudo-``labels`` (n,).

    Alternates one k-means step (one centre per class, at the current labels' class means;
    every window to the nearest) with an LDA refit on the clusters, until the labels settle
    or ``iterations`` rounds. Running k-means to convergence instead let the clusters drift
    off the classes on the dev tuning group (42.3 against 48.4 % for ``lda-kmeans``).
    Returns the fitted scikit-learn LDA (``classes_`` are the classes still present), or
    None when not even the first round kept every class.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import pairwise_distances_argmin

    labels = np.asarray(labels)
    model = None
    for _ in range(iterations):
        present = np.unique(labels)
        centres = np.stack([z[labels == c].mean(axis=0) for c in present])
        clusters = present[pairwise_distances_argmin(z, centres)]
        if len(np.unique(clusters)) < max(2, len(present)):
            break  # a class lost every window: keep the last LDA
        model = LinearDiscriminantAnalysis().fit(z, clusters)
        new = model.predict(z)
        if np.array_equal(new, labels):
            break
        labels = new
    return model


class ClassicalBaselines:
    """The three LDA rows, fitted once on the training users and applied per person.

    ``users``: one ``(windows, labels)`` pair per training user (every labelled window of
    theirs, (n, channels, time)). The features read the newest ``window`` samples of each
    window (all of it when None: LibEMG's default is 200 ms). ``kmeans_iterations`` bounds
    the self-calibration's k-means / LDA rounds.
    """

    def __init__(self, users, n_classes: int, window: int | None = None,
                 kmeans_iterations: int = 10) -> None:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if not users:
            raise ValueError("the classical baselines need at least one training user")
        self.n_classes = int(n_classes)
        self.window = window
        self.kmeans_iterations = int(kmeans_iterations)
        feats = [self.features(x) for x, _ in users]
        labels = np.concatenate([y for _, y in users])
        self.lda = LinearDiscriminantAnalysis().fit(np.concatenate(feats), labels)
        self.lda_z = LinearDiscriminantAnalysis().fit(
            np.concatenate([zscore(f, f) for f in feats]), labels)

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Hudgins features of the newest ``window`` samples of each window."""
        windows = np.asarray(windows)
        return hudgins_features(windows if self.window is None
                                else windows[:, :, -self.window:])

    def calibrate(self, adaptation_windows: np.ndarray) -> "PersonalLDA":
        """The three rows for one new person, calibrated without labels on their
        ``adaptation_windows`` (the self-calibration runs once, here)."""
        reference = self.features(adaptation_windows)
        z = zscore(reference, reference)
        model = self_calibrate(z, self.lda_z.predict(z), self.kmeans_iterations)
        return PersonalLDA(self, reference, self.lda_z if model is None else model)

    def __repr__(self) -> str:
        return (f"<ClassicalBaselines LDA on Hudgins features, {self.n_classes} classes, "
                f"{self.lda.means_.shape[1]} features>")


class PersonalLDA:
    """One person's classical rows (:meth:`ClassicalBaselines.calibrate`).

    ``predict(row, windows)`` gives the labels of ``lda``, ``lda-zscore`` or ``lda-kmeans``;
    ``posteriors`` (n, classes) are the self-calibrated LDA's class probabilities of the
    person's own adaptation windows (0 for classes it no longer holds): the ``lda-kmeans``
    row's view of them, which EMG-UP+ fuses with its teacher's.
    """

    def __init__(self, baselines: ClassicalBaselines, reference: np.ndarray, kmeans_lda) -> None:
        self._baselines, self._reference, self._kmeans_lda = baselines, reference, kmeans_lda
        self.posteriors = np.zeros((len(reference), baselines.n_classes), np.float32)
        self.posteriors[:, kmeans_lda.classes_] = kmeans_lda.predict_proba(
            zscore(reference, reference))

    def predict(self, row: str, windows: np.ndarray) -> np.ndarray:
        b = self._baselines
        features = b.features(windows)
        if row == "lda":
            return b.lda.predict(features)
        model = {"lda-zscore": b.lda_z, "lda-kmeans": self._kmeans_lda}.get(row)
        if model is None:
            raise ValueError(f"row must be one of {CLASSICAL_ROWS}, got {row!r}")
        return model.predict(zscore(features, self._reference))

    def __repr__(self) -> str:
        return (f"<PersonalLDA {len(self._reference)} windows, self-calibrated on "
                f"{len(self._kmeans_lda.classes_)} classes>")
