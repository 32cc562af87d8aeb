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
        raise ImportError("matrix_profile_scores needs stumpy: pip install stumpy") from None
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
