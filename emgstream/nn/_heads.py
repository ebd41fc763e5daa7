"""Classification heads on embeddings: zero-shot k-NN vote (numpy, no torch needed)."""

from __future__ import annotations

import numpy as np


def knn_vote(similarity: np.ndarray, bank_labels: np.ndarray, n_classes: int,
             k: int = 10) -> np.ndarray:
    """Zero-shot prediction (CPEP 2.4): majority label among the ``k`` most similar bank items.

    similarity (n, bank) cosine similarities -> labels (n,). Ties go to the class whose tied
    neighbours are most similar in sum.
    """
    similarity = np.asarray(similarity)
    bank_labels = np.asarray(bank_labels)
    if similarity.ndim != 2 or similarity.shape[1] != bank_labels.shape[0]:
        raise ValueError(f"similarity must be (n, {bank_labels.shape[0]}), "
                         f"got {similarity.shape}")
    k = min(k, similarity.shape[1])
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    labels = bank_labels[top]
    sims = np.take_along_axis(similarity, top, axis=1)
    votes = np.zeros((similarity.shape[0], n_classes))
    np.add.at(votes, (np.arange(len(top))[:, None], labels), 1.0)
    weight = np.zeros_like(votes)
    np.add.at(weight, (np.arange(len(top))[:, None], labels), sims)
    # votes dominate; the similarity sum (|.| <= k) / (k + 1) only breaks ties
    return np.argmax(votes + weight / (2.0 * (k + 1)), axis=1)


def knn_predict(embeddings: np.ndarray, bank_embeddings: np.ndarray, bank_labels: np.ndarray,
                n_classes: int, k: int = 10) -> np.ndarray:
    """embeddings (n, d) and bank (m, d), unit norm -> k-NN vote labels (n,)."""
    return knn_vote(np.asarray(embeddings) @ np.asarray(bank_embeddings).T, bank_labels,
                    n_classes, k)
