"""Range-AUC and VUS (jax_lstm_ae.apps.range_metrics) against TSB-AD 1.5's reference implementation
on random cases, and on cases checkable by hand."""

import time
import warnings

import numpy as np
import pytest

from jax_lstm_ae import apps
from jax_lstm_ae.apps import metrics as M
from jax_lstm_ae.apps import range_metrics as R

TOL = 1e-9  # the same float64 operations in another order: observed differences are ~1e-15


@pytest.fixture(scope="module")
def tsb():
    """TSB-AD's evaluation code, an optional test dependency (scripts/test.sh installs TSB-AD==1.5 --no-deps)."""
    return pytest.importorskip(
        "TSB_AD.evaluation.basic_metrics",
        reason="the reference TSB-AD is not installed: pip install --no-deps TSB-AD==1.5 (scripts/test.sh does)")


def random_case(seed: int):
    """Labels with 1-5 anomalous stretches of random lengths (sometimes at the ends), scores that are noise,
    informative, or heavily tied, and a window; n from 50 to 5000 (log-uniform)."""
    rng = np.random.default_rng(seed)
    n = int(np.exp(rng.uniform(np.log(50), np.log(5000))))
    y = np.zeros(n, int)
    for _ in range(rng.integers(1, 6)):
        a = int(rng.integers(0, n))
        y[a:a + int(rng.integers(1, max(2, n // 8)))] = 1
    if seed % 5 == 0:
        y[: rng.integers(1, 4)] = 1
    if seed % 7 == 0:
        y[-rng.integers(1, 4):] = 1
    if y.all():
        y[0] = 0
    kind = seed % 3
    if kind == 0:
        s = rng.random(n)
    elif kind == 1:  # informative: raised inside the stretches and (spilling) just around them
        s = rng.normal(size=n) + rng.uniform(0.5, 3) * np.convolve(y, np.ones(9) / 9, mode="same")
    else:  # few distinct values: ties at the thresholds
        s = rng.integers(0, 4, n) + 2.0 * y * (rng.random(n) < 0.5)
    window = int(rng.choice([0, 1, 2, 3, 7, 20, 50, 100]))
    return y, s, window


def _ref_window_aucs(tpr, fpr, prec):
    """range-AUC-ROC / -PR per window from the reference's curves, by its own formulas."""
    roc = [np.dot(f[1:] - f[:-1], (t[1:] + t[:-1]) / 2) for t, f in zip(tpr, fpr)]
    pr = [np.dot(t[1:-1] - t[:-2], p[1:]) for t, p in zip(tpr, prec)]
    return np.array(roc), np.array(pr)


@pytest.mark.parametrize("seed", range(40))
def test_against_tsb_ad_on_random_cases(tsb, seed):
    y, s, window = random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tpr, fpr, prec, _, ref_vroc, ref_vpr = tsb.basic_metricor().RangeAUC_volume_opt(y, s, window, 250)
    ref_roc, ref_pr = _ref_window_aucs(tpr, fpr, prec)
    surf = R.vus_surface(y, s, window)
    for mine, ref in ((surf.tpr, tpr), (surf.fpr, fpr), (surf.precision, prec), (surf.auc_roc, ref_roc),
                      (surf.auc_pr, ref_pr)):
        assert mine.shape == ref.shape
        assert np.max(np.abs(mine - ref)) <= TOL
    assert abs(R.vus_roc(y, s, window) - ref_vroc) <= TOL and abs(R.vus_pr(y, s, window) - ref_vpr) <= TOL
    assert abs(R.range_auc_roc(y, s, window) - ref_roc[-1]) <= TOL
    assert abs(R.range_auc_pr(y, s, window) - ref_pr[-1]) <= TOL
    got = R.vus_metrics(y, s, window)
    assert got == pytest.approx({"range_auc_roc": ref_roc[-1], "range_auc_pr": ref_pr[-1], "vus_roc": ref_vroc,
                                 "vus_pr": ref_vpr}, abs=TOL, rel=0)


@pytest.mark.parametrize("seed", [3, 4])
def test_defaults_are_get_metrics_defaults(tsb, seed):
    """vus_roc / vus_pr with their defaults are TSB-AD's get_metrics(score, labels) (slidingWindow=100,
    version='opt', thre=250); 'opt_mem' gives the same surface."""
    metrics = pytest.importorskip("TSB_AD.evaluation.metrics", reason="TSB-AD's metrics module is not importable")
    y, s, _ = random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metrics.get_metrics(s, y)
        mem = tsb.generate_curve(y, s, 100, "opt_mem", 250)
    assert abs(R.vus_roc(y, s) - ref["VUS-ROC"]) <= TOL and abs(R.vus_pr(y, s) - ref["VUS-PR"]) <= TOL
    assert abs(R.vus_roc(y, s) - mem[-2]) <= TOL and abs(R.vus_pr(y, s) - mem[-1]) <= TOL
    assert abs(M.roc_auc(y, s) - ref["AUC-ROC"]) <= TOL  # and the point metrics beside them agree too
    assert abs(M.pr_auc(y, s) - ref["AUC-PR"]) <= TOL


@pytest.mark.parametrize("seed", [1, 2, 5])
@pytest.mark.parametrize("window", [0, 1])
def test_range_auc_is_tsb_ad_range_auc_where_that_runs(tsb, seed, window):
    """TSB-AD 1.5's own RangeAUC raises ZeroDivisionError for window >= 2 (see the module docstring); at windows 0
    and 1 it runs and equals the surface's slice."""
    y, s, _ = random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roc, pr = tsb.basic_metricor().RangeAUC(y, s, window=window, plot_ROC=True)[:2]
    assert abs(R.range_auc_roc(y, s, window) - roc) <= TOL and abs(R.range_auc_pr(y, s, window) - pr) <= TOL


# ----------------------------------------------------------------- by hand
def soft_labels(y, w):
    """TSB-AD's ``sequencing`` written point by point: each stretch extended by w // 2 points each side with
    weights sqrt(1 - d / w), overlaps summed, capped at 1."""
    y = np.asarray(y, float)
    out, n, h = y.copy(), len(y), w // 2
    for a, b in M._runs(y > 0):
        for d in range(1, h + 1):
            if b - 1 + d < n:
                out[b - 1 + d] += np.sqrt(1 - d / w)
            if a - d >= 0:
                out[a - d] += np.sqrt(1 - d / w)
    return np.minimum(out, 1.0)


@pytest.mark.parametrize("window", [0, 5, 100])
def test_perfect_scores_give_one(window):
    y = np.zeros(300, int)
    y[40:60] = 1
    y[200:203] = 1
    s = y.astype(float)  # a detector that outputs the labels
    got = R.vus_metrics(y, s, window)
    assert got == pytest.approx(dict.fromkeys(got, 1.0), abs=1e-12)


def test_soft_labels_by_hand():
    """One stretch [8, 10] of 20 points, window 6: weights sqrt(5/6), sqrt(4/6), sqrt(3/6) at distances 1, 2, 3;
    two stretches one point apart: the point between is covered twice and capped at 1."""
    y = np.zeros(20, int)
    y[8:11] = 1
    want = np.zeros(20)
    want[8:11] = 1
    want[[7, 11]], want[[6, 12]], want[[5, 13]] = np.sqrt(5 / 6), np.sqrt(4 / 6), np.sqrt(3 / 6)
    assert np.array_equal(soft_labels(y, 6), want)
    y2 = np.zeros(20, int)
    y2[[5, 7]] = 1
    assert soft_labels(y2, 4)[6] == 1.0 and soft_labels(y2, 4)[8] == np.sqrt(1 - 1 / 4)


@pytest.mark.parametrize("stretches", [[(40, 60)], [(0, 3), (10, 12), (13, 20), (95, 100)]])
def test_constant_scores_give_the_base_rate(stretches):
    """Constant scores flag every point at every threshold: recall 1, every stretch found, so the range-PR
    area is the (soft) base rate (P + Q_w) / N, Q_w = the soft label mass outside the stretches; at window 0 it
    is the plain base rate P / N and the range-ROC area 1/2. The ROC area is 1 - FPR_w / 2 with
    FPR_w = (N - P - Q_w) / (N - P - Q_w / 2) (TSB-AD's P' = P + Q_w / 2)."""
    n = 100
    y = np.zeros(n, int)
    for a, b in stretches:
        y[a:b] = 1
    s = np.full(n, 0.3)
    p = y.sum()
    assert R.range_auc_pr(y, s, window=0) == pytest.approx(p / n, abs=1e-12)
    assert R.range_auc_roc(y, s, window=0) == pytest.approx(0.5, abs=1e-12)
    q = np.array([soft_labels(y, w).sum() - p for w in range(31)])
    fpr = (n - p - q) / (n - p - q / 2)
    assert R.vus_pr(y, s, window=30) == pytest.approx(np.mean((p + q) / n), abs=1e-12)
    assert R.vus_roc(y, s, window=30) == pytest.approx(np.mean(1 - fpr / 2), abs=1e-12)
    assert R.range_auc_pr(y, s, window=30) == pytest.approx((p + q[-1]) / n, abs=1e-12)


def test_bad_inputs_say_what_to_do():
    s = np.arange(10.0)
    with pytest.raises(ValueError, match="every label is 0.*give labels that mark the anomalies with 1"):
        R.vus_pr(np.zeros(10, int), s)
    with pytest.raises(ValueError, match="every label is 1.*give labels with 0 for the normal points"):
        R.range_auc_roc(np.ones(10, int), s)
    y = np.r_[np.zeros(5, int), np.ones(5, int)]
    with pytest.raises(ValueError, match="window must be a whole number >= 0"):
        R.vus_roc(y, s, window=-1)
    with pytest.raises(ValueError, match="scores has 9 values but labels has 10"):
        R.vus_pr(y, s[:9])
    with pytest.raises(ValueError, match="only 0 \\(normal\\) and 1"):
        R.vus_pr(np.r_[y[:-1], 2], s)


def test_fast_on_a_long_series():
    rng = np.random.default_rng(0)
    n = 100_000
    y = np.zeros(n, bool)
    for a in rng.integers(0, n - 500, 40):
        y[a:a + rng.integers(1, 500)] = True
    s = rng.random(n) + y
    R.vus_metrics(y[:1000], s[:1000])  # warm-up
    t = time.perf_counter()
    got = R.vus_metrics(y, s)
    assert time.perf_counter() - t < 2.0  # ~0.02 s here
    assert 0.99 < got["vus_roc"] <= 1 and 0.9 < got["vus_pr"] <= 1


def test_series_report_is_detection_report_plus_them():
    rng = np.random.default_rng(1)
    y = np.zeros(500, int)
    y[300:320] = 1
    s = rng.random(500) + y
    plain = M.detection_report(y, s, 0.9)
    assert set(plain) == {"precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc"}
    rep = R.series_report(y, s, 0.9)
    assert {k: rep[k] for k in plain} == plain  # the existing keys, unchanged
    assert rep["range_f1"] == M.range_f1(y, s > 0.9)  # the flags' range F1, beside the point F1
    assert {k: rep[k] for k in rep if k not in plain and k != "range_f1"} == R.vus_metrics(y, s, window=R.VUS_WINDOW)
    assert R.series_report(y, s, 0.9, window=7)["vus_pr"] == R.vus_pr(y, s, window=7)
    assert R.series_report(np.zeros(500, int), s, 0.9) == M.detection_report(np.zeros(500, int), s, 0.9)  # no AUCs
    for name in ("vus_pr", "vus_roc", "range_auc_pr", "range_auc_roc", "vus_metrics", "vus_surface", "series_report"):
        assert name in apps.__all__ and getattr(apps, name) is getattr(R, name)
