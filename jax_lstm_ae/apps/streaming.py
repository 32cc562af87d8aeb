"""Anomaly scores of a set too big for memory, chunk by chunk (EncDec-AD, as ``apps.anomaly``).

    windows = run.normalizer.apply(lazy_dataset(open_npy("s.npy", window=64))).x   # LazyWindows [N, 64, F]
    scorer = fit_scorer_sampled(model, params, windows)                          # on at most 16,384 windows
    for a, win, steps in window_scores(model, params, windows, scorer): ...      # windows a.. of each chunk
    points = point_scores(model, params, windows, scorer)                        # [R] float32, one per row

Windows are read, reconstructed and scored ``chunk`` at a time; a row's
point score is the mean of the scores of the windows covering it (as
:func:`~jax_lstm_ae.apps.anomaly.points_from_windows`), summed in a buffer
that spans one chunk's rows only: rows behind the next chunk's first window
are final and written out. Memory: one chunk of windows and its errors, plus
the output (``out=``: any writable [R] array, e.g. ``numpy.lib.format.open_memmap``,
so that not even the R scores need to be held).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from jax_lstm_ae.apps.anomaly import Level, Method, Scorer, error_vectors, fit_scorer, score_errors
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae._typing import PyTree

CHUNK = 16384  # windows read and scored at a time
FIT_WINDOWS = 16384  # at most this many windows fit the scorer


def _errors(model, params, xb: np.ndarray, batch_size: int, mesh):
    lengths = np.full((xb.shape[0],), xb.shape[1], np.int32)
    return error_vectors(model, params, xb, lengths, batch_size=batch_size, mesh=mesh), lengths


def fit_scorer_sampled(
    model: Autoencoder, params: PyTree, windows, *, method: Method = "mahalanobis", level: Level = "window",
    max_windows: int = FIT_WINDOWS, batch_size: int = 512, mesh=None,
) -> Scorer:
    """:func:`~jax_lstm_ae.apps.anomaly.fit_scorer` on the errors of
    ``windows`` [N, T, F] (normal data, normalised), all of them when
    N <= ``max_windows``, else ``max_windows`` evenly spaced ones (their
    errors, [max_windows, T, K] float32, are what is held)."""
    n = len(windows)
    if n == 0:
        raise ValueError("no windows to fit the scorer on; give normal data with at least one window")
    idx = np.arange(n) if n <= max_windows else np.unique(
        np.linspace(0, n - 1, int(max_windows)).round().astype(np.int64))
    err, lengths = _errors(model, params, np.asarray(windows[idx]), batch_size, mesh)
    return fit_scorer(err, lengths, method=method, level=level)


def window_scores(
    model: Autoencoder, params: PyTree, windows, scorer: Scorer, *, chunk: int = CHUNK, batch_size: int = 512,
    mesh=None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield ``(a, window scores [c], step scores [c, T] or None)`` for windows
    [a, a + c) of ``windows`` [N, T, F] (normalised), ``chunk`` at a time:
    the values :func:`~jax_lstm_ae.apps.anomaly.score_errors` gives on all of them at once."""
    for a in range(0, len(windows), int(chunk)):
        err, lengths = _errors(model, params, np.asarray(windows[a:a + int(chunk)]), batch_size, mesh)
        win, steps = score_errors(scorer, err, lengths)
        yield a, win, steps


def point_scores(
    model: Autoencoder, params: PyTree, windows, scorer: Scorer, *, out=None, chunk: int = CHUNK,
    batch_size: int = 512, mesh=None,
) -> np.ndarray:
    """One score per row of the series ``windows`` were cut from (a
    :class:`~jax_lstm_ae.data.LazyWindows` from ``open_npy(path, window=...)``,
    normalised), for the rows [a, b) = ``windows.span()`` its windows cover
    (all R rows for the whole series): the mean over the windows covering the
    row of their step scores (or window scores, for a window-level scorer);
    rows no window covers (a stride longer than the window) get NaN.
    ``out``: a writable float array [b - a] to fill (default: a new float32
    one). Returns ``out``."""
    if not getattr(windows, "series", False):
        raise ValueError("point scores need windows cut from one series; open the file with "
                         "open_npy(path, window=T, stride=s)")
    t = windows.window
    row0, row1 = windows.span()
    out = np.empty((row1 - row0,), np.float32) if out is None else out
    if out.shape != (row1 - row0,):
        raise ValueError(f"out has shape {out.shape}, the windows cover {row1 - row0} rows ({row0}:{row1}); pass "
                         f"an array of shape ({row1 - row0},)")
    base = row0  # the first row not written yet
    sums, counts = np.zeros(0), np.zeros(0)  # rows [base, base + len(sums))
    for a, win, steps in window_scores(model, params, windows, scorer, chunk=chunk, batch_size=batch_size,
                                       mesh=mesh):
        c = win.shape[0]
        starts = windows.starts(windows.lo + a + np.arange(c))
        vals = (steps if steps is not None else np.repeat(win[:, None], t, axis=1)).astype(np.float64)
        span = int(starts[-1]) + t - base
        idx = ((starts - base)[:, None] + np.arange(t)[None, :]).ravel()
        sums = np.concatenate([sums, np.zeros(span - sums.size)]) + np.bincount(idx, vals.ravel(), minlength=span)
        counts = np.concatenate([counts, np.zeros(span - counts.size)]) + np.bincount(idx, minlength=span)
        more = a + c < len(windows)
        done = int(windows.starts(windows.lo + a + c)) - base if more else span  # rows no later window reaches
        if done > sums.size:  # a stride longer than the window leaves rows no window covers
            sums, counts = (np.concatenate([v, np.zeros(done - v.size)]) for v in (sums, counts))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts[:done] > 0, sums[:done] / np.maximum(counts[:done], 1), np.nan)
        out[base - row0:base - row0 + done] = mean
        sums, counts, base = sums[done:], counts[done:], base + done
    return out
