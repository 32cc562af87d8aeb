"""Binary detection metrics and threshold choices, in float64 NumPy.

Scores are "higher = more anomalous"; a point is flagged when
``score > threshold`` (EncDec-AD: a(i) > tau). Labels are 0 (normal) / 1
(anomaly). Everything here is one sort or a few vector ops, so plain NumPy is
exact (float64, ties handled) and fast enough for millions of points; the
model-side scoring that needs to be fast lives in ``_anomaly`` under jit.

    roc_auc(labels, scores)       # Mann-Whitney U with average ranks for ties
    pr_auc(labels, scores)        # average precision (step-wise PR curve)
    best_fbeta_threshold(labels, scores, beta=0.1)   # EncDec-AD's tau choice
    contamination_threshold(normal_scores, rate=0.01)
    mean_std_threshold(normal_scores, k=3.0)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def as_binary_labels(labels, n: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Validate labels and return them as a bool array [N].

    Raises ValueError saying what is wrong: not one-dimensional, a length
    other than ``n``, or values other than 0/1 (booleans are fine)."""
    y = np.asarray(labels)
    if y.ndim != 1:
        y = np.squeeze(y)
        if y.ndim != 1:
            raise ValueError(f"{name} must be one 0/1 value per item, got an array of shape {np.shape(labels)}; "
                             "give a flat list")
    if n is not None and y.shape[0] != n:
        raise ValueError(
            f"{name} has {y.shape[0]} values but there are {n} items to score; "
            f"give exactly one 0/1 label per sequence (or per time point for a series)"
        )
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must be numbers 0 or 1, got dtype {y.dtype}; give 0 (normal) or 1 (anomaly)")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must contain only 0 (normal) and 1 (anomaly); item {i} is {y[i].item()!r}"
            f" ({int(bad.sum())} bad values in all); give 0 or 1 for every item"
        )
    return y.astype(bool)


def _scores(scores, n: int) -> np.ndarray:
    s = np.asarray(scores, np.float64).reshape(-1)
    if s.shape[0] != n:
        raise ValueError(f"scores has {s.shape[0]} values but labels has {n}; give one label per score")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf; check the model's reconstruction for non-finite values")
    return s


# ----------------------------------------------------------------- counts
class Counts(NamedTuple):
    tp: int
    fp: int
    fn: int
    tn: int


def confusion(labels, predictions) -> Counts:
    """True/false positives/negatives of 0/1 predictions [N] against labels [N]."""
    y = as_binary_labels(labels)
    p = as_binary_labels(predictions, y.shape[0], name="predictions")
    return Counts(int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p)), int(np.sum(~y & ~p)))


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def precision(labels, predictions) -> float:
    """tp / (tp + fp); 0 when nothing is flagged."""
    c = confusion(labels, predictions)
    return _div(c.tp, c.tp + c.fp)


def recall(labels, predictions) -> float:
    """tp / (tp + fn); 0 when there are no anomalies."""
    c = confusion(labels, predictions)
    return _div(c.tp, c.tp + c.fn)


def fbeta(labels, predictions, beta: float = 1.0) -> float:
    """(1 + b^2) P R / (b^2 P + R); beta < 1 weighs precision more (EncDec-AD uses 0.1)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}; pass e.g. 1 (precision and recall alike)")
    c = confusion(labels, predictions)
    b2 = beta * beta
    return _div((1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp)


def f1(labels, predictions) -> float:
    return fbeta(labels, predictions, 1.0)


# ----------------------------------------------------------------- ranking
def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's rankdata 'average')."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.shape[0]]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty_like(s)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _need_both(y: np.ndarray, what: str) -> None:
    if y.all() or not y.any():
        raise ValueError(f"{what} needs both normal (0) and anomalous (1) labels, got only {int(y[0])}s; give labels of both "
                         "classes")


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a random anomaly > score of a random
    normal), ties counting one half (Mann-Whitney U / (n_pos n_neg))."""
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    _need_both(y, "roc_auc")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    r = _average_ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _pr_points(y: np.ndarray, s: np.ndarray):
    """Precision, recall and thresholds at each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.shape[0] - 1]  # end of each tie group
    tp = np.cumsum(y_sorted)[last].astype(np.float64)
    flagged = (last + 1).astype(np.float64)
    return tp, flagged, s_sorted[last]


def pr_auc(labels, scores) -> float:
    """Area under the precision-recall curve as average precision,
    sum_k (R_k - R_{k-1}) P_k over distinct thresholds (sklearn's definition)."""
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    _need_both(y, "pr_auc")
    tp, flagged, _ = _pr_points(y, s)
    prec, rec = tp / flagged, tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


# ----------------------------------------------------------------- thresholds
class Threshold(NamedTuple):
    value: float  # flag score > value
    fbeta: float  # F-beta on the data it was chosen on (nan if unlabelled)
    beta: float


def best_fbeta_threshold(labels, scores, beta: float = 0.1) -> Threshold:
    """The threshold maximising F-beta on labelled (validation) data.

    Every distinct score is a candidate cut; the returned value lies midway
    between the lowest flagged score and the next lower one, so
    ``scores > value`` reproduces the optimum exactly on these data and
    leaves a margin for new data. Ties in F-beta go to the higher threshold
    (fewer alarms)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}; pass e.g. 1 (precision and recall alike)")
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    if not y.any():
        raise ValueError("best_fbeta_threshold needs at least one anomaly (label 1) in the labels; "
                         "give labels with anomalies, or use "
                         "another threshold (--threshold auto, contamination or meanstd)")
    tp, flagged, cut = _pr_points(y, s)
    b2 = beta * beta
    fn = y.sum() - tp
    fp = flagged - tp
    f = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)
    k = int(np.argmax(f))  # first maximum = highest threshold
    below = cut[k + 1] if k + 1 < cut.shape[0] else cut[k] - max(1.0, abs(cut[k]))
    return Threshold(float((cut[k] + below) / 2.0), float(f[k]), float(beta))


def contamination_threshold(normal_scores, rate: float = 0.01) -> float:
    """The (1 - rate) quantile of scores on normal data: about ``rate`` of
    normal items will be flagged (a false-alarm budget)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"contamination rate must lie in [0, 1), got {rate}; pass e.g. 0.05")
    s = np.asarray(normal_scores, np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("contamination_threshold needs at least one score; pass the scores of some normal items")
    return float(np.quantile(s, 1.0 - rate))


def mean_std_threshold(normal_scores, k: float = 3.0) -> float:
    """mean + k * std of scores on normal data."""
    s = np.asarray(normal_scores, np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("mean_std_threshold needs at least one score; pass the scores of some normal items")
    return float(s.mean() + k * s.std())


def detection_report(labels, scores, threshold: float, beta: float = 1.0) -> dict[str, float]:
    """All metrics of ``scores > threshold`` against labels, in one dict."""
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    p = s > threshold
    out = {
        "precision": precision(y, p),
        "recall": recall(y, p),
        "f1": f1(y, p),
        f"f{beta:g}": fbeta(y, p, beta),
        "accuracy": float(np.mean(p == y)),
    }
    if y.any() and not y.all():
        out["roc_auc"] = roc_auc(y, s)
        out["pr_auc"] = pr_auc(y, s)
    return out


# ----------------------------------------------------------------- series (ranges)
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def range_precision_recall(labels, predictions) -> tuple[float, float]:
    """Range-based precision and recall (Tatbul et al., NeurIPS 2018) with
    alpha = 0 (no existence reward), flat positional bias and cardinality
    factor 1: recall is the mean over labelled stretches of the share of
    their points flagged; precision the mean over flagged stretches of the
    share of their points inside a labelled stretch. (0, 0) when nothing is flagged."""
    y = as_binary_labels(labels)
    p = as_binary_labels(predictions, y.shape[0], name="predictions")
    real, pred = _runs(y), _runs(p)
    rec = float(np.mean([p[a:b].mean() for a, b in real])) if real else 0.0
    prec = float(np.mean([y[a:b].mean() for a, b in pred])) if pred else 0.0
    return prec, rec


def range_f1(labels, predictions) -> float:
    """Harmonic mean of :func:`range_precision_recall`."""
    prec, rec = range_precision_recall(labels, predictions)
    return _div(2 * prec * rec, prec + rec)


def best_range_f1(labels, scores, n_thresholds: int = 100) -> tuple[float, float]:
    """The highest :func:`range_f1` over thresholds at ``n_thresholds`` score
    quantiles (0.5 .. 1), and that threshold: a threshold-free measure of the
    ranking, as anomaly benchmarks report it (it reads the labels; never use
    its threshold to make a choice)."""
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    _need_both(y, "best_range_f1")
    best = (0.0, float(s.max()))
    for t in np.unique(np.quantile(s, np.linspace(0.5, 1.0, n_thresholds, endpoint=False))):
        f = range_f1(y, s > t)
        if f > best[0]:
            best = (f, float(t))
    return best


def top_in_stretch(labels, scores, margin: int = 0) -> bool:
    """Is the highest-scoring point inside a labelled stretch, or within
    ``margin`` points of one? (The UCR anomaly archive's score: margin 100.)"""
    y = as_binary_labels(labels)
    s = _scores(scores, y.shape[0])
    i = int(np.argmax(s))
    lo, hi = max(0, i - int(margin)), min(y.shape[0], i + int(margin) + 1)
    return bool(y[lo:hi].any())
