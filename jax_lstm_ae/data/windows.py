"""One long series as overlapping windows, and per-window scores back to points.

    windows, starts = sliding_windows(series, window=64, stride=8)   # [N, 64, F], [N]
    point_scores = windows_to_points(window_scores, starts, 64, len(series))
"""

from __future__ import annotations

import numpy as np

from jax_lstm_ae.data.core import DataError


def sliding_windows(series, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """series[N_t, F] (or [N_t]) -> (windows[N, W, F], starts[N]).

    Windows start every ``stride`` rows; when the last one does not reach the
    end, one more window ending at the last row is added, so every point is
    covered at least once (see :func:`windows_to_points`).
    """
    s = np.asarray(series, np.float32)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise DataError(f"a series must be [N_t] or [N_t, F], got shape {s.shape}; pass one row per time step")
    window, stride = int(window), int(stride)
    if window < 1 or stride < 1:
        raise DataError(f"window and stride must be >= 1, got window={window}, stride={stride}; give positive values")
    n = s.shape[0]
    if window > n:
        raise DataError(f"window {window} is longer than the series ({n} rows); use a window of at most {n}")
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    starts_arr = np.array(starts, np.int64)
    idx = starts_arr[:, None] + np.arange(window)[None, :]
    return s[idx], starts_arr


def windows_to_points(window_scores, starts, window: int, n_points: int) -> np.ndarray:
    """Spread per-window scores [N] back to points: each point gets the mean
    score of the windows covering it; points no window covers get NaN."""
    scores = np.asarray(window_scores, np.float64)
    starts = np.asarray(starts, np.int64)
    if scores.shape != starts.shape:
        raise ValueError(f"window_scores {scores.shape} and starts {starts.shape} must match; "
                         "pass one start per window score")
    total = np.zeros(n_points)
    count = np.zeros(n_points)
    for s, v in zip(starts, scores):
        total[s : s + window] += v
        count[s : s + window] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
