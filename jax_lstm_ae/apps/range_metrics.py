"""Range-aware, threshold-free anomaly metrics for one labelled series: range-AUC-ROC,
range-AUC-PR, VUS-ROC and VUS-PR (Paparrizos et al., "Volume Under the Surface: a new
accuracy evaluation measure for time-series anomaly detection", VLDB 2022).

These are computed exactly as the TSB-AD benchmark's reference implementation does
(TSB-AD 1.5, ``TSB_AD.evaluation``): VUS-ROC / VUS-PR are ``get_metrics(score, labels,
slidingWindow=100, version='opt', thre=250)['VUS-ROC' / 'VUS-PR']``, i.e. the last two
values of ``basic_metrics.generate_curve(labels, score, 100, 'opt', 250)``, which come from
``basic_metricor().RangeAUC_volume_opt(labels, score, windowSize=100, thre=250)``. Range-AUC
at buffer l is the slice of that same surface at window l (``auc_3d[l]`` / ``ap_3d[l]``
inside ``RangeAUC_volume_opt``; the curves are ``generate_curve``'s outputs at ``Z == l``).
TSB-AD 1.5's separate ``basic_metricor.RangeAUC`` is not used by its ``get_metrics``
(commented out there) and raises ZeroDivisionError for any window >= 2 in 1.5 (it finds
the extended stretches with ``np.diff(label) == 1`` on the soft labels, so it finds none);
at windows 0 and 1 it equals the slice computed here.

The maths, for labels y[0..N) with anomalous stretches [s_i, e_i] (inclusive), P = sum y,
scores a[0..N) (higher = more anomalous), a window (buffer) w and h = w // 2:

* Soft labels (TSB-AD's ``sequencing``): each stretch is extended by h points on each side
  with weights sqrt(1 - d / w) at distance d = 1..h from its edge; overlapping
  extensions add, and the sum is capped at 1; points inside a stretch keep 1. So
  y_w(x) = 1 inside a stretch or where two extensions overlap, sqrt(1 - d / w) where
  exactly one does, 0 elsewhere. (w = 0 or 1: no extension, y_w = y.)
* Extended stretches S_w (``new_sequence``): [s_i - h, e_i + h], clipped to [0, N - 1],
  merged where they touch (e_i + h >= s_{i+1} - h).
* Thresholds: K = 250 order statistics of the scores, t_k = sorted-descending a at index
  floor(k (N - 1) / (K - 1)), k = 0..K-1 (duplicates kept); a point is flagged at t_k when
  a(x) >= t_k, so N_pred(k) = #{a >= t_k}.
* At each (w, k): TP = sum_x y_w(x) [a(x) >= t_k]; Q = TP - #{y = 1, a >= t_k} (the
  flagged soft label mass outside the stretches); P' = P + Q / 2 (so that the positive
  count is "neither large nor small"); recall = min(TP / P', 1); existence = share of
  the extended stretches S_w holding at least one flagged point;
  TPR = recall * existence; FPR = (N_pred - TP) / (N - P'); precision = TP / N_pred.
* Per window: range-AUC-ROC(w) = trapezoidal area under (FPR, TPR) over the points
  (0, 0), k = 0..K-1, (1, 1); range-AUC-PR(w) = sum_k (TPR_k - TPR_{k-1}) precision_k
  with TPR_{-1} = 0 (step-wise; the closing (1, 1) point is not used).
* VUS: the surface over window sizes w = 0, 1, ..., L, integrated as the plain mean:
  VUS-ROC = (1 / (L + 1)) sum_{w=0..L} range-AUC-ROC(w), VUS-PR likewise.

TSB-AD's defaults: L = 100 (``get_metrics(slidingWindow=100)``; its benchmark scripts pass
the series' period from ``find_length_rank`` instead, so pass ``window=`` your period to
compare with their tables), K = 250 (``thre=250``), ``version='opt'`` (``'opt_mem'`` gives
the same numbers). Everything here is a few sorts, bincounts and reductions per window:
O(N log N + (L + 1) (N + K)); N = 10^5 with L = 100 takes well under a second.

    vus_pr(labels, scores)            # window=100, n_thresholds=250: get_metrics' VUS-PR
    vus_roc(labels, scores)
    range_auc_pr(labels, scores, window=100), range_auc_roc(...)
    vus_metrics(labels, scores)       # the four, from one surface
    vus_surface(labels, scores)       # the curves at every window, for plots
    series_report(labels, scores, threshold)   # detection_report + range F1 + the four (`detect` on a series)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jax_lstm_ae.apps.metrics import _scores, as_binary_labels, detection_report, range_f1

VUS_WINDOW = 100  # TSB-AD get_metrics(slidingWindow=100)
VUS_THRESHOLDS = 250  # TSB-AD get_metrics(thre=250)


class RangeSurface(NamedTuple):
    """The range-ROC / range-PR curves at each window size (rows) and threshold (columns)."""

    windows: np.ndarray  # [W] window sizes w
    tpr: np.ndarray  # [W, K + 2] with the (0, 0) and (1, 1) end points
    fpr: np.ndarray  # [W, K + 2]
    precision: np.ndarray  # [W, K + 1] with precision 1 at TPR 0
    auc_roc: np.ndarray  # [W] range-AUC-ROC at each window
    auc_pr: np.ndarray  # [W] range-AUC-PR at each window


def _check(labels, scores, window, n_thresholds) -> tuple[np.ndarray, np.ndarray]:
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    if not y.any():
        raise ValueError("range-AUC / VUS need at least one anomalous stretch, but every label is 0 (normal); give "
                         "labels that mark the anomalies with 1, or use an unlabelled summary (scores, thresholds) "
                         "for a series without known anomalies")
    if y.all():
        raise ValueError("range-AUC / VUS need some normal points, but every label is 1 (anomaly); give labels "
                         "with 0 for the normal points")
    if int(window) != window or window < 0:
        raise ValueError(f"window must be a whole number >= 0, got {window!r}; pass e.g. 100 (TSB-AD's default) or "
                         "the series' period")
    if int(n_thresholds) != n_thresholds or n_thresholds < 2:
        raise ValueError(f"n_thresholds must be a whole number >= 2, got {n_thresholds!r}; pass e.g. 250 (TSB-AD's)")
    return y, s


def _surface(y: np.ndarray, s: np.ndarray, windows: np.ndarray, n_thresholds: int) -> RangeSurface:
    n, n_k = y.shape[0], int(n_thresholds)
    edges = np.flatnonzero(np.diff(np.r_[0, y.astype(np.int8), 0]))
    starts, ends = edges[::2], edges[1::2] - 1  # stretches [starts, ends], inclusive
    p = float(y.sum())

    # k_x: the first threshold index at which point x is flagged (a(x) >= t_k, t_k non-increasing in k)
    t = -np.sort(-s)[np.linspace(0, n - 1, n_k).astype(int)]
    k_of = np.searchsorted(-t, -s, side="left")
    n_pred = np.cumsum(np.bincount(k_of, minlength=n_k)).astype(np.float64)
    tp_inside = np.cumsum(np.bincount(k_of[y], minlength=n_k)).astype(np.float64)

    # distances of each normal point to the nearest and second-nearest stretch on each side
    h_max = int(windows.max()) // 2
    x = np.flatnonzero(~y)
    prev = np.searchsorted(ends, x) - 1  # last stretch ending before x
    nxt = np.searchsorted(starts, x, side="right")  # first stretch starting after x
    big = n + h_max + 1
    m = starts.shape[0]

    def dist(idx, ref, sign):
        ok = (idx >= 0) & (idx < m)
        return np.where(ok, sign * (x - ref[np.clip(idx, 0, m - 1)]), big)

    dl, dl2 = dist(prev, ends, 1), dist(prev - 1, ends, 1)
    dr, dr2 = dist(nxt, starts, -1), dist(nxt + 1, starts, -1)
    near = np.minimum(dl, dr) <= h_max  # the only normal points any extension reaches
    x, dl, dl2, dr, dr2 = x[near], dl[near], dl2[near], dr[near], dr2[near]
    k_near = k_of[x]

    n_w = windows.shape[0]
    tpr, fpr, prec = np.empty((n_w, n_k)), np.empty((n_w, n_k)), np.empty((n_w, n_k))
    for i, w in enumerate(windows.tolist()):
        h = w // 2
        # soft labels of the normal points near a stretch (sequencing)
        c_l, c_r = dl <= h, dr <= h
        count = c_l.astype(np.int8) + c_r + (dl2 <= h) + (dr2 <= h)
        d = np.where(c_l, dl, dr)
        with np.errstate(divide="ignore", invalid="ignore"):
            one = np.sqrt(1 - d / w) if w else np.zeros_like(d, dtype=np.float64)
        soft = np.where(count >= 2, 1.0, np.where(count == 1, one, 0.0))
        q = np.cumsum(np.bincount(k_near, weights=soft, minlength=n_k))
        tp = tp_inside + q
        p_new = p + q / 2
        # existence: extended stretches (new_sequence) holding a flagged point
        split = ends[:-1] + h < starts[1:] - h
        g_lo = np.maximum(starts[np.r_[True, split]] - h, 0)
        g_hi = np.minimum(ends[np.r_[split, True]] + h, n - 1)
        bounds = np.stack([g_lo, g_hi + 1], axis=1).reshape(-1)
        first_k = np.minimum.reduceat(k_of, bounds[bounds < n])[::2]
        exist = np.cumsum(np.bincount(first_k, minlength=n_k)) / g_lo.shape[0]
        tpr[i] = np.minimum(tp / p_new, 1.0) * exist
        fpr[i] = (n_pred - tp) / (n - p_new)
        prec[i] = tp / n_pred
    zeros, ones = np.zeros((n_w, 1)), np.ones((n_w, 1))
    tpr_f, fpr_f = np.hstack([zeros, tpr, ones]), np.hstack([zeros, fpr, ones])
    auc_roc = np.sum(np.diff(fpr_f, axis=1) * (tpr_f[:, 1:] + tpr_f[:, :-1]) / 2, axis=1)
    auc_pr = np.sum(np.diff(tpr_f[:, :-1], axis=1) * prec, axis=1)
    return RangeSurface(windows, tpr_f, fpr_f, np.hstack([ones, prec]), auc_roc, auc_pr)


def vus_surface(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> RangeSurface:
    """The range-ROC and range-PR curves for every window size 0..``window``: the surface
    whose volume is VUS (see the module docstring for the maths). Row w matches TSB-AD 1.5's
    ``RangeAUC_volume_opt(labels, score, windowSize=window, thre=n_thresholds)`` arrays
    ``tpr_3d[w]``, ``fpr_3d[w]``, ``prec_3d[w]``, ``auc_3d[w]``, ``ap_3d[w]``."""
    y, s = _check(labels, scores, window, n_thresholds)
    return _surface(y, s, np.arange(int(window) + 1), n_thresholds)


def vus_roc(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Volume under the range-ROC surface: the mean of :func:`range_auc_roc` over window
    sizes 0, 1, ..., ``window``. Matches TSB-AD 1.5's ``get_metrics(score, labels,
    slidingWindow=window, version='opt', thre=n_thresholds)['VUS-ROC']``."""
    return float(vus_surface(labels, scores, window, n_thresholds).auc_roc.mean())


def vus_pr(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Volume under the range-PR surface: the mean of :func:`range_auc_pr` over window sizes
    0, 1, ..., ``window``; TSB-AD ranks detectors by it. Matches TSB-AD 1.5's
    ``get_metrics(score, labels, slidingWindow=window, version='opt', thre=n_thresholds)['VUS-PR']``."""
    return float(vus_surface(labels, scores, window, n_thresholds).auc_pr.mean())


def _one_window(labels, scores, window, n_thresholds) -> RangeSurface:
    y, s = _check(labels, scores, window, n_thresholds)
    return _surface(y, s, np.array([int(window)]), n_thresholds)


def range_auc_roc(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Range-AUC-ROC with label buffer ``window`` (stretches extended by ``window // 2``
    points each side with weights sqrt(1 - d / window)): the VUS surface's slice at
    ``window``, TSB-AD 1.5's ``RangeAUC_volume_opt(..., windowSize=window, thre=n_thresholds)``
    ``auc_3d[window]``. Window 0 or 1 gives the plain labels (no buffer)."""
    return float(_one_window(labels, scores, window, n_thresholds).auc_roc[0])


def range_auc_pr(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> float:
    """Range-AUC-PR with label buffer ``window``: the slice of the VUS-PR surface at
    ``window`` (TSB-AD 1.5's ``RangeAUC_volume_opt`` ``ap_3d[window]``); see
    :func:`range_auc_roc`."""
    return float(_one_window(labels, scores, window, n_thresholds).auc_pr[0])


def vus_metrics(labels, scores, window: int = VUS_WINDOW, n_thresholds: int = VUS_THRESHOLDS) -> dict[str, float]:
    """All four from one surface: ``range_auc_roc`` and ``range_auc_pr`` at ``window``,
    ``vus_roc`` and ``vus_pr`` over windows 0..``window``."""
    surf = vus_surface(labels, scores, window, n_thresholds)
    return {"range_auc_roc": float(surf.auc_roc[-1]), "range_auc_pr": float(surf.auc_pr[-1]),
            "vus_roc": float(surf.auc_roc.mean()), "vus_pr": float(surf.auc_pr.mean())}


def series_report(labels, scores, threshold: float, beta: float = 1.0, *, window: int = VUS_WINDOW) -> dict[str, float]:
    """:func:`~jax_lstm_ae.apps.metrics.detection_report` of a series (one label per time point) with the
    range-aware metrics beside its point ones: its keys (precision, recall, F1, F-beta, accuracy, point
    ``roc_auc`` / ``pr_auc``), then, when both classes are present, ``range_f1`` (range-based F1 of the points
    above ``threshold``, :func:`~jax_lstm_ae.apps.metrics.range_f1`) and :func:`vus_metrics` at ``window``
    (``range_auc_roc``, ``range_auc_pr``, ``vus_roc``, ``vus_pr``)."""
    out = detection_report(labels, scores, threshold, beta)
    if "roc_auc" in out:
        out["range_f1"] = range_f1(labels, _scores(scores, len(labels)) > threshold)
        out.update(vus_metrics(labels, scores, window))
    return out
