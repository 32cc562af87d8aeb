"""Dynamic time warping and the 1-NN DTW classifier, the standard baseline of
the UCR/UEA archives.

    d = dtw_distances(x_te, l_te, x_tr, l_tr)        # [N_te, N_tr]
    pred = nn1_predict(d, y_tr)                      # [N_te] labels of the nearest training case

Full window (no Sakoe-Chiba band); the local cost is the squared Euclidean
distance between the F-vectors at two steps (the "dependent" DTW_D of the UEA
multivariate archive), so for F = 1 it is the archive's (x_i - y_j)^2:

    D[i, j] = c(i, j) + min(D[i-1, j-1], D[i-1, j], D[i, j-1]),  D[0, 0] = c(0, 0)

and dtw(a, b) = D[len(a) - 1, len(b) - 1] (the square root is left out: it does
not change the nearest neighbour). The recursion is swept one anti-diagonal
i + j = k at a time, each diagonal vectorised over every (a, b) pair and every
cell on it, in float64 NumPy: 2T Python steps whatever the number of pairs.
Sequences are post-padded with their lengths; cells past a length never feed
the answer, since D[i, j] only reads smaller i and j.
"""

from __future__ import annotations

import numpy as np

_CHUNK_CELLS = 2**23  # pairs x diagonal cells per NumPy op: about 64 MiB of float64


def dtw_distances(a, lengths_a, b, lengths_b) -> np.ndarray:
    """Squared-cost DTW between every a[i] and b[j]: a[Na, Ta, F], b[Nb, Tb, F]
    (or [N, T]) post-padded, with lengths -> [Na, Nb] float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a = a[..., None] if a.ndim == 2 else a
    b = b[..., None] if b.ndim == 2 else b
    if a.ndim != 3 or b.ndim != 3 or a.shape[2] != b.shape[2]:
        raise ValueError(f"dtw_distances expects a[Na, Ta, F] and b[Nb, Tb, F] with one F, got {a.shape} and {b.shape}; "
                         "pass arrays of one F")
    la, lb = np.asarray(lengths_a, np.int64), np.asarray(lengths_b, np.int64)
    if la.shape != (a.shape[0],) or lb.shape != (b.shape[0],):
        raise ValueError(f"lengths must be [Na]={a.shape[0]} and [Nb]={b.shape[0]}, got {la.shape} and {lb.shape}; "
                         "pass one length per sequence")
    if la.min(initial=1) < 1 or lb.min(initial=1) < 1 or la.max(initial=0) > a.shape[1] or lb.max(initial=0) > b.shape[1]:
        raise ValueError("every length must lie in [1, T] of its array; pass lengths in that range")
    # Rows of a in chunks, so each diagonal's [rows, Nb, cells] block stays bounded.
    rows = max(1, _CHUNK_CELLS // max(1, b.shape[0] * min(a.shape[1], b.shape[1])))
    return np.concatenate([_dtw_block(a[i : i + rows], la[i : i + rows], b, lb) for i in range(0, a.shape[0], rows)])


def _dtw_block(a, la, b, lb) -> np.ndarray:
    ta, tb = int(la.max()), int(lb.max())
    a, b = a[:, :ta], b[:, :tb]
    na, nb = a.shape[0], b.shape[0]
    a2, b2 = np.sum(a * a, -1), np.sum(b * b, -1)  # [Na, Ta], [Nb, Tb]
    inf = np.full((na, nb, ta), np.inf)
    prev2, prev1 = inf.copy(), inf.copy()  # diagonals k-2 and k-1, indexed by the row i
    target = (la[:, None] - 1) + (lb[None, :] - 1)  # the diagonal holding each pair's answer
    out = np.full((na, nb), np.nan)
    last_row = np.broadcast_to((la - 1)[:, None, None], (na, nb, 1))
    for k in range(ta + tb - 1):
        lo, hi = max(0, k - tb + 1), min(k, ta - 1)
        i = np.arange(lo, hi + 1)
        j = k - i
        # c(i, j) = |a_i|^2 + |b_j|^2 - 2 a_i . b_j for every pair and cell: [Na, Nb, cells]
        cost = a2[:, None, i] + b2[None, :, j] - 2.0 * np.einsum("ncf,mcf->nmc", a[:, i], b[:, j])
        np.maximum(cost, 0.0, out=cost)  # rounding of the expansion, never a negative cost
        cur = inf.copy()
        if k == 0:
            cur[:, :, 0] = cost[:, :, 0]
        else:
            im1 = np.maximum(i - 1, 0)
            best = np.minimum(prev1[:, :, i], np.minimum(prev1[:, :, im1], prev2[:, :, im1]))  # left, up, diagonal
            best[:, :, i == 0] = prev1[:, :, 0][:, :, None]  # row 0: only the left neighbour
            cur[:, :, i] = cost + best
        done = target == k
        if done.any():
            out = np.where(done, np.take_along_axis(cur, last_row, axis=2)[..., 0], out)
        prev2, prev1 = prev1, cur
    return out


def nn1_predict(distances, train_labels) -> np.ndarray:
    """1-nearest-neighbour labels from distances[N_test, N_train] (ties: the first training row)."""
    d = np.asarray(distances)
    y = np.asarray(train_labels).reshape(-1)
    if d.ndim != 2 or d.shape[1] != y.shape[0]:
        raise ValueError(f"distances must be [N_test, N_train={y.shape[0]}], got {d.shape}; "
                         "pass one label per training sequence")
    return y[np.argmin(d, axis=1)]
