"""A classical detector to compare with: the matrix-profile discord score (stumpy).

    scores = matrix_profile_scores(series, plan)    # [N_t], higher = more anomalous

The series goes through the same label-free preprocessing as the
autoencoder's (:func:`jax_lstm_ae.apps.series.prepare`: detrending and
pooling from the training stretch's plan); each subsequence of W pooled steps
gets its z-normalised Euclidean distance to its nearest non-overlapping
neighbour anywhere in the series (a self-join, the classic discord score;
Yeh et al. 2016), summed over features; rows get the mean over the
subsequences covering them, as the autoencoder's scores do. stumpy is an
optional dependency (``pip install stumpy``, in the ``bench`` extra).
"""

from __future__ import annotations

import numpy as np

from jax_lstm_ae.apps.series import SeriesPlan, points_to_rows, prepare


def matrix_profile_scores(series, plan: SeriesPlan) -> np.ndarray:
    """One score per row of series[N_t, F]: the summed per-feature matrix profile, [N_t]."""
    try:
        import stumpy
    except ImportError:
        raise ImportError("matrix_profile_scores needs stumpy; install it: pip install stumpy") from None
    s = np.asarray(series, np.float64)
    if s.ndim == 1:
        s = s[:, None]
    pooled = prepare(s, plan).astype(np.float64)
    m = plan.window
    profile = np.zeros(pooled.shape[0] - m + 1)
    for j in range(pooled.shape[1]):
        mp = np.asarray(stumpy.stump(pooled[:, j], m)[:, 0], np.float64)
        profile += np.nan_to_num(mp, nan=0.0, posinf=0.0)  # constant subsequences have no z-normalised distance
    return points_to_rows(profile, np.arange(profile.shape[0]), plan, s.shape[0])


def nearest_neighbour_scores(normal, x) -> np.ndarray:
    """Sets of sequences: each sequence's z-normalised Euclidean distance to its
    nearest normal sequence (the matrix profile's AB-join with m = T), [B].

    normal: [N, T, F] (or [N, T]) normal training sequences; x: [B, T, F]. Each
    feature of each sequence is z-normalised over its T steps; distances are
    summed over features."""
    def z(a):
        a = np.asarray(a, np.float64)
        a = a[..., None] if a.ndim == 2 else a
        sd = a.std(axis=1, keepdims=True)
        return (a - a.mean(axis=1, keepdims=True)) / np.where(sd > 1e-12, sd, 1.0)

    zn, zx = z(normal), z(x)
    if zn.shape[1:] != zx.shape[1:]:
        raise ValueError(f"normal sequences are (T, F)={zn.shape[1:]} but x is {zx.shape[1:]}; "
                         "pass x of the same T and F")
    out = np.zeros(zx.shape[0])
    for f in range(zx.shape[2]):
        a, b = zx[:, :, f], zn[:, :, f]
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        out += np.sqrt(np.maximum(d2, 0.0)).min(axis=1)
    return out
