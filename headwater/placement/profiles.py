"""Usage profiles: which containers rise and fall together (HOTS clusters them with k-means).

Each container's series is centred and scaled, so containers with the same shape fall in the
same cluster whatever their size. Lloyd's k-means with a seeded k-means++ start: the same
input always gives the same labels.
"""

from __future__ import annotations

import numpy as np


def shapes(usage: np.ndarray) -> np.ndarray:
    """(C, T·M) z-scored series; a flat series is all zeros."""
    c = usage.shape[0]
    x = usage.reshape(c, -1).astype(float)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Labels (C,) of ``k`` clusters of the rows of ``x``."""
    n = x.shape[0]
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    dist = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = dist.sum()
        pick = rng.choice(n, p=dist / total) if total > 0 else rng.integers(n)
        centres.append(x[pick])
        dist = np.minimum(dist, ((x - x[pick]) ** 2).sum(axis=1))
    c = np.array(centres)
    labels = np.zeros(n, dtype=np.int64)
    norms = (x**2).sum(1)[:, None]
    member = np.zeros((n, k))  # one-hot labels: the centres' sums are one matrix product
    for _ in range(iterations):
        d = norms - 2 * x @ c.T + (c**2).sum(1)[None, :]
        new = d.argmin(axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        # every centre at once, as a product (np.add.at, unbuffered, was half the clustering
        # of a 1,000-container window); a cluster left empty keeps its centre
        member[:] = 0.0
        member[np.arange(n), labels] = 1.0
        sums = member.T @ x
        counts = np.bincount(labels, minlength=k)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
    return labels


def profile_clusters(usage: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
    """Cluster labels of the containers' usage shapes; ``k`` defaults to √C (at most 16)."""
    n = usage.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = k or int(min(16, max(1, round(np.sqrt(n)))))
    return kmeans(shapes(usage), k, seed)
