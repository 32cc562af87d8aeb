"""The label-free series pipeline, the detectors, the baselines and the range metrics, against references."""

import jax
import numpy as np
import pytest

from jax_lstm_ae.apps import metrics as M
from jax_lstm_ae.apps.anomaly import fit_gaussian, ledoit_wolf_shrinkage, mahalanobis
from jax_lstm_ae.apps.baselines import matrix_profile_scores, nearest_neighbour_scores
from jax_lstm_ae.apps.detectors import (
    EncoderTransformer,
    SequenceAnomalyDetector,
    SeriesAnomalyDetector,
    load_detector,
)
from jax_lstm_ae.apps.series import (
    SeriesPlan,
    dominant_period,
    labels_from_stretches,
    plan_series,
    points_to_rows,
    prepare,
    stretches,
    top_stretches,
)
from jax_lstm_ae.data import sliding_windows


def periodic_series(n=3000, period=50, seed=0, anomaly=(2000, 2040)):
    """Two features of a noisy cycle of ``period`` rows on a slow drift; a flattened stretch at ``anomaly``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([np.sin(2 * np.pi * t / period), np.sign(np.sin(2 * np.pi * t / period + 1.0))], 1)
    x = x + 0.05 * rng.normal(size=x.shape) + 0.002 * t[:, None]
    if anomaly is not None:
        a, b = anomaly
        x[a:b, 0] = x[a - period:b - period, 0] * 0.1
    return x.astype(np.float32)


# ----------------------------------------------------------------- Ledoit-Wolf
def test_ledoit_wolf_one_dimension_matches_sklearn_and_whitening_is_finite():
    v = np.random.default_rng(0).normal(size=(50, 1)) * 3.0
    assert ledoit_wolf_shrinkage(v) == 0.0
    g = fit_gaussian(v)
    assert g.shrinkage == 0.0 and np.all(np.isfinite(g.whiten))
    # a 1-D Gaussian: (x - mean)^2 / var (ridge 1e-6 relative)
    ref = (v[:, 0] - v.mean()) ** 2 / (v.var() * (1 + 1e-6))
    np.testing.assert_allclose(mahalanobis(g, v), ref, rtol=1e-5)
    g0 = fit_gaussian(np.ones((10, 1)))  # constant: still finite
    assert np.all(np.isfinite(g0.whiten))
    sk = pytest.importorskip("sklearn.covariance")
    x = np.random.default_rng(1).normal(size=(40, 6)) @ np.random.default_rng(2).normal(size=(6, 6))
    assert ledoit_wolf_shrinkage(x) == pytest.approx(sk.ledoit_wolf_shrinkage(x), rel=1e-10)
    assert ledoit_wolf_shrinkage(v) == sk.ledoit_wolf_shrinkage(v)


# ----------------------------------------------------------------- the plan
def test_dominant_period_finds_the_cycle_and_none_for_noise():
    x = periodic_series(anomaly=None)
    assert dominant_period(x) in (49, 50, 51)
    assert dominant_period(np.random.default_rng(0).normal(size=(2000, 2))) is None
    assert dominant_period(np.ones((500, 1))) is None


def test_plan_uses_only_the_training_rows_and_prepare_matches_numpy():
    x = periodic_series()
    plan = plan_series(x[:1500], window=16)
    assert plan.period in (49, 50, 51) and plan.pool == round(plan.period / 16) and plan.detrend
    # the plan does not change with rows it was not given
    y = x.copy()
    y[1500:] = 0.0
    assert plan_series(y[:1500], window=16) == plan
    # float64 reference: centred moving average over the period (edge padding), then mean pools of d rows
    p, d = plan.period, plan.pool
    ref = x.astype(np.float64).copy()
    for j in range(2):  # full windows only; the ends take the nearest full window's mean
        full = [x[i:i + p, j].astype(np.float64).mean() for i in range(x.shape[0] - p + 1)]
        trend = [full[min(max(i - p // 2, 0), len(full) - 1)] for i in range(x.shape[0])]
        ref[:, j] -= np.array(trend)
    n = x.shape[0] // d
    ref = ref[: n * d].reshape(n, d, 2).mean(1)
    np.testing.assert_allclose(prepare(x, plan), ref, atol=1e-5)
    with pytest.raises(ValueError, match="too few"):
        plan_series(x[:60], window=64)


def test_points_to_rows_is_finite_and_interpolates_the_pooled_scores():
    plan = SeriesPlan(period=40, pool=4, window=5, stride=1, detrend=True)
    n_rows = 4 * 30 + 3  # three rows past the last full pool
    starts = np.arange(30 - 5 + 1)
    w = np.random.default_rng(0).uniform(size=starts.shape)
    rows = points_to_rows(w, starts, plan, n_rows)
    pooled = np.array([w[max(0, k - 4):k + 1].mean() for k in range(30)])  # windows covering step k
    centres = np.arange(30) * 4 + 1.5
    assert rows.shape == (n_rows,) and np.all(np.isfinite(rows))
    np.testing.assert_allclose(rows[[0, 1]], [pooled[0], pooled[0]])  # before the first centre: nearest
    np.testing.assert_allclose(rows[5], pooled[0] + (5 - 1.5) / 4 * (pooled[1] - pooled[0]))
    np.testing.assert_allclose(rows[-3:], pooled[-1])
    np.testing.assert_allclose(rows, np.interp(np.arange(n_rows), centres, pooled))


def test_stretches_labels_and_top_stretches():
    y = labels_from_stretches([(2, 4), (7, 8)], 10)
    assert y.tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 0, 0]
    assert stretches(y) == [(2, 4), (7, 8)]
    s = np.array([0, 5, 6, 0, 0, 9, 9, 1, 0, 3.0])
    assert top_stretches(s, 2.0, k=5) == [(5, 7, 9.0), (1, 3, 6.0), (9, 10, 3.0)]
    assert top_stretches(s, 100.0) == [(5, 6, 9.0)]
    with pytest.raises(ValueError, match="inside"):
        labels_from_stretches([(8, 12)], 10)


# ----------------------------------------------------------------- metrics
def test_range_precision_recall_by_hand():
    y = labels_from_stretches([(10, 20), (40, 44)], 60)
    p = labels_from_stretches([(15, 25), (50, 52)], 60)
    prec, rec = M.range_precision_recall(y, p)
    # recall: stretch 1 half covered, stretch 2 not at all; precision: flag 1 half inside, flag 2 outside
    assert rec == pytest.approx((0.5 + 0.0) / 2) and prec == pytest.approx((0.5 + 0.0) / 2)
    assert M.range_f1(y, p) == pytest.approx(0.25)
    assert M.range_f1(y, np.zeros(60)) == 0.0
    assert M.range_f1(y, y) == 1.0
    s = y + 0.01 * np.arange(60)
    assert M.best_range_f1(y, s)[0] == pytest.approx(1.0)
    assert M.top_in_stretch(y, np.eye(60)[43]) and not M.top_in_stretch(y, np.eye(60)[45])
    assert M.top_in_stretch(y, np.eye(60)[45], margin=2) and not M.top_in_stretch(y, np.eye(60)[47], margin=2)


# ----------------------------------------------------------------- baselines
def test_matrix_profile_scores_match_a_brute_force_profile():
    pytest.importorskip("stumpy")
    x = periodic_series(n=600, period=20, anomaly=(400, 410))[:, :1]
    plan = SeriesPlan(period=None, pool=1, window=16, stride=1, detrend=False)
    got = matrix_profile_scores(x, plan)
    sub, starts = sliding_windows(x[:, 0], 16)
    z = (sub[..., 0] - sub[..., 0].mean(1, keepdims=True)) / sub[..., 0].std(1, keepdims=True)
    d = np.sqrt(np.maximum(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1), 0))
    excl = int(np.ceil(16 / 4))  # stumpy's exclusion zone around the trivial match
    for i in range(d.shape[0]):
        d[i, max(0, i - excl):i + excl + 1] = np.inf
    np.testing.assert_allclose(got, points_to_rows(d.min(1), starts, plan, 600), rtol=1e-4, atol=1e-4)
    assert 395 <= np.argmax(got) <= 425


def test_nearest_neighbour_scores_brute_force():
    rng = np.random.default_rng(0)
    normal, x = rng.normal(size=(20, 12, 2)), rng.normal(size=(5, 12, 2))
    z = lambda a: (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)  # noqa: E731
    ref = [sum(min(np.linalg.norm(z(x)[i, :, f] - z(normal)[j, :, f]) for j in range(20)) for f in range(2))
           for i in range(5)]
    np.testing.assert_allclose(nearest_neighbour_scores(normal, x), ref, rtol=1e-9)
    assert nearest_neighbour_scores(normal, normal[:3]) == pytest.approx(np.zeros(3), abs=1e-6)


# ----------------------------------------------------------------- detectors
def test_series_detector_raw_finds_the_anomaly_and_follows_pyod(tmp_path):
    x = periodic_series()
    det = SeriesAnomalyDetector(window=16, raw=True, contamination=0.05).fit(x[:1800])
    assert det.plan_.period in (49, 50, 51)
    s = det.decision_function(x)
    assert s.shape == (3000,) and np.all(np.isfinite(s))
    y = labels_from_stretches([(2000, 2040)], 3000)
    assert M.roc_auc(y, s) > 0.95 and M.top_in_stretch(y, s, margin=det.plan_.window_rows)
    # PyOD: decision_scores_ on the training rows, threshold_ their (1 - contamination) quantile, labels_ 0/1
    np.testing.assert_allclose(det.decision_scores_, det.decision_function(x[:1800]))
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))
    assert det.labels_.mean() == pytest.approx(0.05, abs=0.002)
    np.testing.assert_array_equal(det.predict(x), (s > det.threshold_).astype(int))
    np.testing.assert_array_equal(SeriesAnomalyDetector(window=16, raw=True, contamination=0.05).fit_predict(x[:1800]),
                                  det.labels_)
    det.save(tmp_path / "raw")
    back = load_detector(tmp_path / "raw")
    np.testing.assert_array_equal(back.decision_function(x), s)
    assert back.plan_ == det.plan_ and back.get_params() == det.get_params()


def test_series_detector_lstm_saves_and_loads_as_a_run(tmp_path):
    from jax_lstm_ae.train.checkpoint import load_run

    x = periodic_series(n=1500)
    det = SeriesAnomalyDetector(window=16, embedding_dim=4, hidden=(), epochs=2, batch_size=64, models=1).fit(x[:1200])
    s = det.decision_function(x)
    assert np.all(np.isfinite(s)) and det.config_["result"]["epochs_run"] == 2
    det.save(tmp_path / "run")
    run = load_run(tmp_path / "run")  # an ordinary run directory too
    assert run.config["model"]["embedding_dim"] == 4
    np.testing.assert_allclose(load_detector(tmp_path / "run").decision_function(x), s, rtol=1e-6)
    # the contributions of a window add up to the diagonal part of its Mahalanobis distance
    w, _, err = det.score_windows(x[:400])
    c = det.contributions(err)
    g = det.scorer_.gaussian
    var = np.diag(np.linalg.inv(g.whiten @ g.whiten.T))
    np.testing.assert_allclose(c.reshape(len(c), -1).sum(1),
                               (((err.reshape(len(err), -1) - g.mean) ** 2) / var).sum(1), rtol=1e-4)
    with pytest.raises(ValueError, match="features"):
        det.decision_function(x[:, :1])


def test_series_ensemble_is_the_mean_of_its_members_standardised_scores(tmp_path):
    """models=K: member k is the one-model detector of seed + k (same split, normaliser and params up to float
    noise); a window's score is the mean over k of (s_k - mean_k) / sd_k, mean_k and sd_k over the training
    stretch's windows; save / load keeps every member; the contributions are the members' over their sd."""
    from jax_lstm_ae.apps.anomaly import score_errors
    from jax_lstm_ae.train.many_run import load_many

    x = periodic_series(n=1500)
    kw = dict(window=16, embedding_dim=4, hidden=(), epochs=2, batch_size=64, seed=3)
    det = SeriesAnomalyDetector(models=3, **kw).fit(x[:1200])
    assert len(det.members_) == 3
    w, starts, err = det.score_windows(x)
    assert err.shape[0] == 3 and w.shape == starts.shape
    ref = []
    for k in range(3):
        one = SeriesAnomalyDetector(models=1, **{**kw, "seed": 3 + k}).fit(x[:1200])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), one.params_,
                     det.member_params(k))
        train_w = score_errors(one.scorer_, one._errors(one.windows(x[:1200])[0]))[0]
        ref.append((one.score_windows(x)[0] - train_w.mean()) / train_w.std())
    np.testing.assert_allclose(w, np.mean(ref, axis=0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(det.decision_scores_, det.decision_function(x[:1200]))
    c = det.contributions(err)
    assert c.shape == err.shape[1:] and np.all(c >= 0)
    det.save(tmp_path / "ens")
    back = load_detector(tmp_path / "ens")
    np.testing.assert_array_equal(back.decision_function(x), det.decision_function(x))
    assert back.threshold_ == det.threshold_ and [m.sd for m in back.members_] == [m.sd for m in det.members_]
    assert load_many(tmp_path / "ens").k == 3  # a run folder of many models, as `train --seeds 3` writes
    with pytest.raises(ValueError, match="models must be >= 1"):
        SeriesAnomalyDetector(models=0, **kw).fit(x[:1200])


def test_sequence_detector_ranks_injected_anomalies():
    from jax_lstm_ae.data import synthetic

    train = synthetic("sines", n=300, seed=0)
    test = synthetic("sines", n=200, seed=1)
    normal = train.x[train.labels == 0]
    raw = SequenceAnomalyDetector(raw=True, contamination=0.1).fit(normal)
    assert M.roc_auc(test.labels, raw.decision_function(test.x)) > 0.9
    assert raw.labels_.mean() == pytest.approx(0.1, abs=0.01)
    det = SequenceAnomalyDetector(embedding_dim=8, hidden=(), steps=40, batch_size=32).fit(normal)
    s = det.decision_function(test.x)
    assert s.shape == (200,) and np.all(np.isfinite(s))
    ragged = SequenceAnomalyDetector(raw=True).fit(normal, lengths=np.full(len(normal), 20))
    assert ragged.scorer_.level == "step"


def test_encoder_transformer_in_an_sklearn_pipeline():
    sk = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from jax_lstm_ae.apps.probe import encode_all
    from jax_lstm_ae.data import synthetic

    data = synthetic("sines", n=120, seed=0)
    flat = data.x.reshape(data.n, -1)  # sklearn's [n_samples, n_features]: T * F columns
    enc = EncoderTransformer(embedding_dim=4, hidden=(8,), steps=20, features=3)
    assert clone(enc).get_params() == enc.get_params()
    assert enc.set_params(steps=10).steps == 10
    pipe = make_pipeline(enc, LogisticRegression(max_iter=200)).fit(flat, data.labels)
    z = pipe[0].transform(flat)
    np.testing.assert_allclose(z, encode_all(pipe[0].model_, pipe[0].params_, pipe[0].normalizer_.apply(data.x)),
                               rtol=1e-6)
    assert z.shape == (120, 4) and pipe.predict(flat).shape == (120,)
    assert sk.__version__
