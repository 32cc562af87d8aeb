"""Metrics, thresholds and EncDec-AD scoring against plain references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from jax_lstm_ae import lstm_encoder, make_autoencoder, repeat
from jax_lstm_ae.apps import anomaly as A
from jax_lstm_ae.apps import metrics as M


# ----------------------------------------------------------------- references
def brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_ap(y, s):
    """Mean over anomalies of the precision when flagging score >= theirs."""
    return np.mean([np.mean(y[s >= v]) for v in s[y == 1]])


def brute_fbeta(y, p, beta):
    tp = np.sum((y == 1) & p)
    fp = np.sum((y == 0) & p)
    fn = np.sum((y == 1) & ~p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta**2
    return (1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec else 0.0


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------- metrics
@pytest.mark.parametrize("ties", [False, True])
def test_roc_and_pr_auc_match_pair_counting(rng, ties):
    y = (rng.random(120) < 0.3).astype(int)
    s = rng.normal(size=120) + y
    if ties:
        s = np.round(s * 2) / 2  # many tied scores across classes
    assert M.roc_auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)
    assert M.pr_auc(y, s) == pytest.approx(brute_ap(y, s), abs=1e-12)


def test_auc_extremes():
    y = np.array([0, 0, 1, 1])
    assert M.roc_auc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.roc_auc(y, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert M.roc_auc(y, [1, 1, 1, 1]) == 0.5
    assert M.pr_auc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.pr_auc(y, [0.4, 0.3, 0.2, 0.1]) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_precision_recall_fbeta(rng):
    y = (rng.random(200) < 0.4).astype(int)
    p = rng.random(200) < 0.5
    tp, fp, fn = np.sum((y == 1) & p), np.sum((y == 0) & p), np.sum((y == 1) & ~p)
    assert M.precision(y, p) == pytest.approx(tp / (tp + fp))
    assert M.recall(y, p) == pytest.approx(tp / (tp + fn))
    for beta in (0.1, 0.5, 1.0, 2.0):
        assert M.fbeta(y, p, beta) == pytest.approx(brute_fbeta(y, p, beta))
    assert M.f1(y, p) == pytest.approx(brute_fbeta(y, p, 1.0))
    assert M.confusion(y, p) == (tp, fp, fn, np.sum((y == 0) & ~p))
    assert M.precision(y, np.zeros(200, bool)) == 0.0


def test_best_fbeta_threshold_known_optimum():
    normal = [1.0, 2.0, 3.0, 4.0, 10.0]
    anomalous = [5.0, 6.0, 11.0, 12.0]
    s = np.array(normal + anomalous)
    y = np.array([0] * 5 + [1] * 4)
    # beta = 0.1 values precision: flag only 11 and 12 (P = 1, R = 1/2).
    t = M.best_fbeta_threshold(y, s, beta=0.1)
    assert t.value == 10.5
    assert t.fbeta == pytest.approx(1.01 * 0.5 / (0.01 + 0.5))
    # beta = 1: flag 5 and up (P = 4/5, R = 1, F1 = 8/9).
    t1 = M.best_fbeta_threshold(y, s, beta=1.0)
    assert t1.value == 4.5 and t1.fbeta == pytest.approx(8 / 9)


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_best_fbeta_threshold_is_the_brute_force_max(rng, beta):
    y = (rng.random(80) < 0.3).astype(int)
    s = np.round(rng.normal(size=80) + 1.5 * y, 1)
    t = M.best_fbeta_threshold(y, s, beta)
    best = max(brute_fbeta(y, s >= v, beta) for v in np.unique(s))
    assert t.fbeta == pytest.approx(best)
    assert brute_fbeta(y, s > t.value, beta) == pytest.approx(best)


def test_unlabelled_thresholds(rng):
    s = rng.normal(size=10001)
    assert M.contamination_threshold(s, 0.05) == pytest.approx(np.sort(s)[9500])
    assert np.mean(s > M.contamination_threshold(s, 0.05)) == pytest.approx(0.05, abs=1e-3)
    assert M.mean_std_threshold(s, 3.0) == pytest.approx(s.mean() + 3 * s.std())


def test_detection_report_values():
    y = np.array([0, 0, 0, 1, 1])
    r = M.detection_report(y, [0.1, 0.2, 0.7, 0.6, 0.9], threshold=0.5)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
    assert r["f1"] == pytest.approx(0.8) and r["accuracy"] == pytest.approx(0.8)
    assert r["roc_auc"] == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    "labels, match",
    [
        ([0, 1, 1], "has 3 values but there are 4"),
        ([0, 1, 2, 1], "only 0 .normal. and 1 .anomaly.; item 2 is"),
        ([0.0, 0.5, 1.0, 1.0], "item 1 is"),
        (["a", "b", "a", "b"], "must be numbers 0 or 1"),
        ([0, np.nan, 1, 1], "item 1 is nan"),
        ([[0, 1], [1, 0]], "one 0/1 value per item"),
    ],
)
def test_bad_labels_say_what_is_wrong(labels, match):
    with pytest.raises(ValueError, match=match):
        M.as_binary_labels(labels, 4)


def test_metrics_need_both_classes():
    with pytest.raises(ValueError, match="both normal"):
        M.roc_auc([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one anomaly"):
        M.best_fbeta_threshold([0, 0], [1, 2])


# ----------------------------------------------------------------- Gaussian
def lw_reference(x):
    """Ledoit & Wolf (2004) lemma 3.2-3.4, written the textbook way."""
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    delta2 = np.sum((s - mu * np.eye(d)) ** 2) / d
    beta2 = sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / d / n**2
    return min(beta2, delta2) / delta2


@pytest.mark.parametrize("n, d", [(200, 5), (20, 40)])
def test_ledoit_wolf_matches_textbook_formula(rng, n, d):
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    assert A.ledoit_wolf_shrinkage(x) == pytest.approx(lw_reference(x), rel=1e-10)


def shrunk_cov(x, s, ridge):
    xc = x - x.mean(0)
    c = xc.T @ xc / x.shape[0]
    mu = np.trace(c) / c.shape[0]
    return (1 - s) * c + (s * mu + ridge) * np.eye(c.shape[0])


def test_mahalanobis_matches_scipy_values_and_gradients(rng):
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 3.0
    g = A.fit_gaussian(x)
    cov = shrunk_cov(x, g.shrinkage, g.ridge)
    np.testing.assert_allclose(g.whiten @ g.whiten.T, np.linalg.inv(cov), rtol=1e-8, atol=1e-10)
    q = rng.normal(size=(50, 12)) * 3 + 3.0
    prec = np.linalg.inv(cov)
    want = np.array([scipy_mahalanobis(v, x.mean(0), prec) ** 2 for v in q])
    np.testing.assert_allclose(A.mahalanobis(g, q), want, rtol=2e-4)
    # gradient of the jitted score vs 2 Sigma^-1 (e - mu)
    grad = jax.grad(lambda v: jnp.sum(A._mahalanobis_jit(jnp.asarray(g.mean, jnp.float32),
                                                         jnp.asarray(g.whiten, jnp.float32), v)))
    np.testing.assert_allclose(grad(jnp.asarray(q, jnp.float32)), 2 * (q - x.mean(0)) @ prec, rtol=1e-3, atol=1e-3)


def test_fixed_shrinkage_and_batched_leading_axes(rng):
    x = rng.normal(size=(100, 6))
    g = A.fit_gaussian(x, shrinkage=0.3)
    np.testing.assert_allclose(np.linalg.inv(g.whiten @ g.whiten.T), shrunk_cov(x, 0.3, g.ridge), rtol=1e-8)
    q = rng.normal(size=(4, 7, 6))
    np.testing.assert_allclose(A.mahalanobis(g, q), A.mahalanobis(g, q.reshape(28, 6)).reshape(4, 7), rtol=1e-6)


@pytest.mark.parametrize("shrinkage", ["ledoit_wolf", 0.0])
def test_rank_deficient_covariance_stays_invertible(rng, shrinkage):
    # 8 samples in 60 dims, a constant column and duplicated columns: S has rank <= 7.
    base = rng.normal(size=(8, 20))
    x = np.concatenate([base, base, base[:, :19], np.full((8, 1), 2.0)], axis=1)
    g = A.fit_gaussian(x, shrinkage=shrinkage)
    cov = np.linalg.inv(g.whiten @ g.whiten.T)
    assert np.all(np.isfinite(g.whiten))
    assert np.linalg.eigvalsh(cov).min() > 0
    d = A.mahalanobis(g, x)
    assert np.all(np.isfinite(d)) and np.all(d >= 0)
    # a point off the training subspace scores higher than every training point
    assert A.mahalanobis(g, x[:1] + rng.normal(size=(1, 60)))[0] > d.max()
    one = A.fit_gaussian(x[:1])  # a single sample: pure ridge * I, still PD
    assert A.mahalanobis(one, x[:1])[0] == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------- scorer
def test_scorer_mae_mse_and_step_level_against_loops(rng):
    e = np.abs(rng.normal(size=(9, 6, 3))).astype(np.float32)
    ls = np.array([6, 3, 1, 6, 5, 6, 2, 6, 4])
    e[np.arange(6)[None, :] >= ls[:, None]] = 0.0
    for method, f in (("mae", np.abs), ("mse", np.square)):
        w, st = A.score_errors(A.fit_scorer(e, ls, method=method), e, ls)
        np.testing.assert_allclose(w, [f(e[i, : ls[i]]).mean() for i in range(9)], rtol=1e-6)
        np.testing.assert_allclose(st[1, :3], f(e[1, :3]).mean(-1), rtol=1e-6)
        assert np.all(st[1, 3:] == 0)
    sc = A.fit_scorer(e, ls, level="step")
    valid = np.concatenate([e[i, : ls[i]] for i in range(9)])
    g = A.fit_gaussian(valid)
    np.testing.assert_allclose(sc.gaussian.whiten, g.whiten)
    w, st = A.score_errors(sc, e, ls)
    for i in range(9):
        ref = A.mahalanobis(g, e[i, : ls[i]])
        np.testing.assert_allclose(st[i, : ls[i]], ref, rtol=1e-6)
        assert w[i] == pytest.approx(ref.max(), rel=1e-6)


def test_window_level_scorer_flattens_each_window(rng):
    e = np.abs(rng.normal(size=(40, 5, 2)))
    sc = A.fit_scorer(e)
    g = A.fit_gaussian(e.reshape(40, 10))
    w, st = A.score_errors(sc, e[:7])
    assert st is None
    np.testing.assert_allclose(w, A.mahalanobis(g, e[:7].reshape(7, 10)), rtol=1e-6)
    with pytest.raises(ValueError, match="level='step'"):
        A.fit_scorer(e, np.r_[4, np.full(39, 5)])
    with pytest.raises(ValueError, match="T=5"):
        A.score_errors(sc, e[:, :4])


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_points_from_windows_matches_loop(rng, reduce):
    starts = np.arange(0, 41, 4)  # windows of 8, stride 4, over 50 points: the last 1 uncovered
    per_window = rng.normal(size=starts.shape[0])
    per_step = rng.normal(size=(starts.shape[0], 8))
    for vals in (per_window, per_step):
        got = A.points_from_windows(vals, starts, 50, window=8, reduce=reduce)
        want = A.points_from_windows_reference(vals, starts, 50, window=8, reduce=reduce)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(got[-1]) and not np.isnan(got[:-2]).any()
    with pytest.raises(ValueError, match="do not fit"):
        A.points_from_windows(per_window, starts, 45, window=8)


def test_window_overlaps_matches_brute():
    lo, hi = 20, 30  # anomaly on 21..29
    starts = np.arange(0, 40)
    want = [any(lo < i < hi for i in range(s, s + 7)) for s in starts]
    np.testing.assert_array_equal(A.window_overlaps(starts, 7, lo, hi), want)


# ----------------------------------------------------------------- model side
def test_error_vectors_match_reconstruction_and_ignore_batching(rng):
    model = make_autoencoder(lstm_encoder((8,)), repeat((8,)), features=2)
    params = model.init(jax.random.PRNGKey(0))
    x = rng.normal(size=(7, 5, 2)).astype(np.float32)
    ls = np.array([5, 2, 5, 1, 3, 5, 4])
    want = np.abs(np.asarray(model.reconstruct(params, x, ls)) - x)
    want[np.arange(5)[None, :] >= ls[:, None]] = 0.0
    got = A.error_vectors(model, params, x, ls)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.error_vectors(model, params, x, ls, batch_size=3), got, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.error_vectors(model, params, x, ls, squared=True), want**2, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="lengths must lie"):
        A.error_vectors(model, params, x, np.full(7, 6, np.int32))


def test_injected_anomalies_rank_on_top(rng):
    """EncDec-AD end to end on a toy: train briefly on sines, inject spikes."""
    import optax

    t = np.arange(16)
    phase = rng.uniform(0, 2 * np.pi, size=(96, 1))
    x = np.sin(2 * np.pi * t / 16 + phase)[..., None].astype(np.float32)
    model = make_autoencoder(lstm_encoder((16,)), repeat((16,)), features=1)
    params = model.init(jax.random.PRNGKey(1))
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, xb):
        grads = jax.grad(lambda p: model.loss(p, xb, None, train=True))(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = opt.init(params)
    for _ in range(150):
        params, opt_state = step(params, opt_state, jnp.asarray(x[:64]))
    state = type("S", (), {"params": params})
    test = x[64:].copy()
    bad = [3, 11, 20, 27]
    for i in bad:
        test[i, 5:8, 0] += 2.5
    scorer = A.fit_scorer(A.error_vectors(model, state.params, x[:64]))
    w, _ = A.score_errors(scorer, A.error_vectors(model, state.params, test))
    y = np.isin(np.arange(32), bad)
    assert M.roc_auc(y, w) == 1.0
    assert set(np.argsort(-w)[:4]) == set(bad)


def test_scorer_too_big_for_memory_is_refused_up_front():
    """2,000 features in windows of 16: a 32,000-wide covariance (8 GB) is refused with the way out."""
    from jax_lstm_ae.apps.anomaly import check_scorer_size

    with pytest.raises(ValueError, match=r"32,000 values needs about 30\.5 GiB.*--level step.*--method mae"):
        check_scorer_size(16, 2000, method="mahalanobis", level="window")
    check_scorer_size(16, 2000, method="mahalanobis", level="step")  # 2,000 x 2,000: fine
    check_scorer_size(16, 2000, method="mae", level="window")
    with pytest.raises(ValueError, match="--level step"):
        A.fit_scorer(np.zeros((3, 16, 2000), np.float32))


@pytest.mark.parametrize("method", ["mahalanobis", "mae", "mse"])
def test_an_empty_sequence_scores_zero_not_nan(method):
    e = np.random.default_rng(0).random((6, 5, 2)).astype(np.float32)
    ls = np.array([5, 4, 0, 5, 3, 5])
    scores, steps = A.score_errors(A.fit_scorer(e, ls, method=method, level="step"), e, ls)
    assert np.all(np.isfinite(scores)) and scores[2] == 0.0 and np.all(steps[2] == 0.0)
    assert np.isfinite(np.quantile(scores, 0.9))  # a threshold from these scores is a number
