"""The label-free preprocessing of one long series, x[N_t, F] -> windows, and back to points.

    plan = plan_series(series[a:b])          # every choice, from the normal (training) stretch only
    pooled = prepare(series, plan)           # detrended, pooled: [N_t // d, F]
    windows, starts = sliding_windows(pooled, plan.window, plan.stride)
    ...                                      # one score per window: [N]
    points = points_to_rows(window_scores, starts, plan, n_rows)   # one finite score per row: [N_t]

The rule (documented in docs/guides/anomaly-series.md, used by the CLI, the detector API and
``bench/quality.py`` alike; it reads no labels and no rows outside the
training stretch):

1. **Period** P: the first autocorrelation peak of the training stretch past
   the lag-0 lobe, summed over features (:func:`dominant_period`), searched
   up to a third of the stretch so that at least three cycles back it. When
   no peak reaches ``min_peak`` (0.2) of the lag-0 value the series is taken
   as aperiodic and P = ``window``.
2. **Pooling** d = max(1, round(P / W)): average d rows into one step, so one
   window of W steps spans about one cycle (W = 64 by default).
3. **Detrending**: for a periodic series, subtract a centred moving average
   over P rows per feature (baseline wander); an aperiodic one is left as is.
4. **Windows** of W pooled steps, stride 1 (every pooled step starts one).
5. **Scorer**: a Gaussian (Ledoit-Wolf shrunk) on the flattened [W * F]
   error vectors of held-out normal windows; one Mahalanobis score per window
   (``fit_scorer(level="window")``), so the score sees a window's shape.
6. **Back to rows**: a pooled step's score is the mean over the windows that
   cover it; rows get the pooled scores linearly interpolated between pooled
   step centres (finite everywhere, no blocks of tied rows).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jax_lstm_ae.apps.anomaly import points_from_windows

WINDOW = 64  # pooled steps per window
MIN_PEAK = 0.2  # autocorrelation (relative to lag 0) a cycle must reach


class SeriesPlan(NamedTuple):
    """The choices made from the training stretch (JSON-able with ``_asdict``)."""

    period: int | None  # rows per cycle; None: aperiodic
    pool: int  # d: rows averaged into one step
    window: int  # W, in pooled steps
    stride: int  # between window starts, in pooled steps
    detrend: bool  # subtract a centred moving average over ``period`` rows

    @property
    def window_rows(self) -> int:
        return self.window * self.pool

    def describe(self) -> str:
        per = f"period {self.period} rows" if self.period else "no period found"
        return (f"window {self.window} steps x {self.pool} rows = {self.window_rows} rows, stride {self.stride} "
                f"step(s) ({per}; {'detrended' if self.detrend else 'not detrended'})")


def dominant_period(x, max_lag: int | None = None, *, min_peak: float = MIN_PEAK) -> int | None:
    """Rows per cycle of x[N_t, F] (or [N_t]), or None when there is no clear cycle.

    The first local maximum of the autocorrelation (summed over features,
    smoothed over 15 lags) past the end of the lag-0 lobe that reaches 80 % of
    the highest later peak: multiples of the period can peak a little higher
    than the period itself. Lags up to ``max_lag`` (default N_t // 3)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    max_lag = n // 3 if max_lag is None else min(int(max_lag), n - 1)
    if max_lag < 24:
        return None
    x = x - x.mean(axis=0)
    f = np.fft.rfft(x, 2 * n, axis=0)
    ac = np.fft.irfft(f * np.conj(f), axis=0)[:max_lag].sum(axis=1)
    if ac[0] <= 0:
        return None  # a constant stretch
    ac = ac / ac[0]
    ac = np.r_[np.full(7, ac[0]), np.convolve(ac, np.ones(15) / 15, mode="valid")]  # noise: no lag-1 minima
    rising = np.flatnonzero(ac[1:] > ac[:-1])
    if rising.size == 0:
        return None
    first_min = int(rising[0])  # end of the lag-0 lobe
    tail = ac[first_min:]
    if tail.size < 3:
        return None
    inner = tail[1:-1]
    peaks = np.flatnonzero((inner >= tail[:-2]) & (inner >= tail[2:]) & (inner >= 0.8 * tail.max())) + 1
    if peaks.size == 0 or tail[peaks[0]] < min_peak:
        return None
    return first_min + int(peaks[0])


def plan_series(train, *, window: int = WINDOW, stride: int = 1, detrend: bool | None = None,
                window_rows: int | None = None, stride_rows: int | None = None) -> SeriesPlan:
    """Make every preprocessing choice from the training stretch train[N_t, F] alone.

    ``window`` and ``stride`` count pooled steps. ``window_rows`` / ``stride_rows``
    count input rows instead (what the command line's --window / --stride give):
    the pooling d still follows the period (one cycle in about 64 steps), and the
    window is round(window_rows / d) steps (at least 2), the stride
    round(stride_rows / d) steps (at least 1). ``detrend``: None follows the rule
    (detrend a periodic series)."""
    t = np.asarray(train, np.float64)
    if t.ndim == 1:
        t = t[:, None]
    for name, v, least in (("window", window, 2), ("stride", stride, 1), ("window_rows", window_rows, 1),
                           ("stride_rows", stride_rows, 1)):
        if v is not None and int(v) < least:
            raise ValueError(f"{name} must be >= {least}, got {v}; give a value in that range")
    period = dominant_period(t)
    if window_rows is None:
        window = int(window)
        pool = 1 if period is None else max(1, int(round(period / window)))
    else:
        pool = 1 if period is None else max(1, int(round(period / WINDOW)))
        window = max(2, int(round(int(window_rows) / pool)))
    stride = int(stride) if stride_rows is None else max(1, int(round(int(stride_rows) / pool)))
    n_steps = t.shape[0] // pool
    if n_steps < window + 8:
        need = (window + 8) * pool
        raise ValueError(
            f"the training stretch has {t.shape[0]} rows, too few for windows of {window} steps of {pool} rows "
            f"(need at least {need}); give a longer normal stretch or a smaller window"
        )
    return SeriesPlan(period, pool, window, stride, bool(period is not None) if detrend is None else bool(detrend))


def moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over k rows per column, [N_t, F].

    Only full windows of k rows are averaged; the first k // 2 and last
    k - 1 - k // 2 rows take the nearest full window's average. (Padding the
    series instead would average part of a cycle with copies of one value and
    bend the trend at both ends, which then look anomalous.)"""
    n = x.shape[0]
    k = min(int(k), n)
    kern = np.ones(k) / k
    full = np.stack([np.convolve(x[:, j], kern, mode="valid") for j in range(x.shape[1])], axis=1)
    return np.pad(full, ((k // 2, n - full.shape[0] - k // 2), (0, 0)), mode="edge")


def prepare(series, plan: SeriesPlan) -> np.ndarray:
    """series[N_t, F] -> detrended, pooled series [N_t // d, F] (float32).

    Rows past the last full pool are dropped here; :func:`points_to_rows`
    gives them the last pooled step's score."""
    s = np.asarray(series, np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if plan.detrend and plan.period:
        s = s - moving_average(s, plan.period)
    n = s.shape[0] // plan.pool
    if n < plan.window:
        raise ValueError(f"the series has {s.shape[0]} rows, fewer than one window ({plan.window_rows} rows); "
                         "give a longer "
                         "series (or more of its rows)")
    return s[: n * plan.pool].reshape(n, plan.pool, -1).mean(axis=1).astype(np.float32)


def points_to_rows(values, starts, plan: SeriesPlan, n_rows: int) -> np.ndarray:
    """Window scores [N] (or per-step [N, W]) -> one finite score per row [n_rows].

    Pooled step k covers rows [k d, (k + 1) d); its score is the mean over the
    windows covering it and is placed at the centre row k d + (d - 1) / 2;
    rows in between are interpolated linearly, rows before the first or after
    the last centre take the nearest pooled score."""
    starts = np.asarray(starts)
    n_steps = int(starts.max()) + plan.window
    pooled = points_from_windows(values, starts, n_steps, window=plan.window)
    centres = np.arange(n_steps) * plan.pool + (plan.pool - 1) / 2.0
    return np.interp(np.arange(n_rows, dtype=np.float64), centres, pooled)


# ----------------------------------------------------------------- stretches
def stretches(mask) -> list[tuple[int, int]]:
    """Runs of True in mask[N] as [(start, end)] with end exclusive."""
    m = np.asarray(mask, bool).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.r_[0, m, 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def labels_from_stretches(spans, n_rows: int) -> np.ndarray:
    """[(start, end)] with end exclusive -> bool labels [n_rows]; several stretches allowed."""
    y = np.zeros(n_rows, bool)
    for a, b in spans:
        a, b = int(a), int(b)
        if not 0 <= a < b <= n_rows:
            raise ValueError(f"labelled stretch {a}:{b} does not lie inside the series' {n_rows} rows; "
                             "give stretches A:B with "
                             f"0 <= A < B <= {n_rows}")
        y[a:b] = True
    return y


def top_stretches(scores, threshold: float, k: int = 5) -> list[tuple[int, int, float]]:
    """The k highest runs of scores > threshold as [(start, end_exclusive, max score)], highest first.

    With nothing above the threshold, the single highest row is returned as a
    one-row stretch (so a report always names where the series looks least normal)."""
    s = np.asarray(scores, np.float64)
    runs = [(a, b, float(s[a:b].max())) for a, b in stretches(s > threshold)]
    if not runs:
        i = int(np.argmax(s))
        runs = [(i, i + 1, float(s[i]))]
    return sorted(runs, key=lambda r: -r[2])[:k]
