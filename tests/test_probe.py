"""Linear probe and PCA baseline against float64 SciPy / NumPy references."""

import jax
import numpy as np
import pytest
from scipy.optimize import minimize

from jax_lstm_ae import lstm_encoder, make_autoencoder, repeat
from jax_lstm_ae.apps import probe as P


def make_data(rng, n=240, d=12, noise=1.0):
    """3 classes living in the first 2 of d dims, the rest noise."""
    y = rng.integers(0, 3, size=n)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    x = rng.normal(size=(n, d)) * noise
    x[:, :2] += centers[y]
    return x * np.linspace(0.5, 5.0, d) + 7.0, y  # unequal scales and an offset: standardisation matters


def reference_fit(x, y, l2):
    """The same objective, float64 L-BFGS-B to tight tolerance."""
    mean, scale = x.mean(0), x.std(0)
    xs = (x - mean) / scale
    c = y.max() + 1
    onehot = np.eye(c)[y]
    d = x.shape[1]

    def f(theta):
        w, b = theta[: d * c].reshape(d, c), theta[d * c:]
        z = xs @ w + b
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)
        loss = -np.mean(np.sum(onehot * logp, 1)) + l2 * np.sum(w * w)
        g = (p - onehot) / x.shape[0]
        return loss, np.concatenate([(xs.T @ g + 2 * l2 * w).ravel(), g.sum(0)])

    res = minimize(f, np.zeros(d * c + c), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000})
    return res.fun, res.x[: d * c].reshape(d, c), res.x[d * c:]


def objective(probe, x, y, l2):
    z = probe_logits64(probe, x)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -np.mean(logp[np.arange(len(y)), y]) + l2 * np.sum(probe.w.astype(np.float64) ** 2)


def probe_logits64(probe, x):
    return ((x - probe.mean) / probe.scale) @ probe.w.astype(np.float64) + probe.b


def test_probe_reaches_the_reference_optimum():
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    l2 = 1e-2
    probe = P.fit_probe(x, y, l2=l2)
    ref_loss, ref_w, ref_b = reference_fit(x, y, l2)
    assert probe.l2 == l2
    assert objective(probe, x, y, l2) == pytest.approx(ref_loss, rel=1e-3)
    # softmax logits are defined up to a per-row constant: compare centred logits
    xs = (x - x.mean(0)) / x.std(0)
    ref = xs @ ref_w + ref_b
    got = probe_logits64(probe, x)
    np.testing.assert_allclose(got - got.mean(1, keepdims=True), ref - ref.mean(1, keepdims=True), atol=0.05)
    assert np.mean(P.probe_predict(probe, x) == np.argmax(ref, 1)) >= 0.99


def test_cross_validation_and_original_labels():
    rng = np.random.default_rng(1)
    x, y = make_data(rng)
    names = np.array([10, 20, 30])[y]  # arbitrary label values come back as themselves
    probe = P.fit_probe(x[:160], names[:160])
    assert probe.l2 in P.L2_GRID
    np.testing.assert_array_equal(probe.classes, [10, 20, 30])
    pred = P.probe_predict(probe, x[160:])
    assert set(np.unique(pred)) <= {10, 20, 30}
    # Bayes accuracy of this mixture is about 0.9; a working probe gets close
    assert P.probe_accuracy(probe, x[160:], names[160:]) >= 0.8
    assert 0.7 <= probe.cv_accuracy <= 1.0  # held-out folds of the 160 training rows
    assert np.isnan(P.fit_probe(x[:160], names[:160], l2=1e-2).cv_accuracy)  # no CV with a fixed l2


def test_cross_validated_predictions_and_confusion_matrix():
    rng = np.random.default_rng(2)
    x, y = make_data(rng, n=150)
    names = np.array(["a", "b", "c"])[y]
    probe = P.fit_probe(x, names)
    pred = probe.cv_predictions
    assert pred.shape == (150,) and set(pred.tolist()) <= {"a", "b", "c"}
    assert np.mean(pred == names) == probe.cv_accuracy  # the figure CV chose l2 by
    cm = P.confusion_matrix(names, pred)
    brute = np.array([[np.sum((names == t) & (pred == p)) for p in "abc"] for t in "abc"])
    np.testing.assert_array_equal(cm, brute)
    assert cm.sum() == 150 and np.trace(cm) == round(probe.cv_accuracy * 150)
    assert P.fit_probe(x, names, l2=1e-2).cv_predictions is None
    np.testing.assert_array_equal(P.confusion_matrix([1, 2], [2, 2], classes=[1, 2, 3]),
                                  [[0, 1, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"values \[3\] are not among classes \[1, 2\]"):
        P.confusion_matrix([1, 3], [2, 2], classes=[1, 2])
    with pytest.raises(ValueError, match="labels has 2 values but predictions has 3"):
        P.confusion_matrix([1, 2], [1, 2, 3])


def test_stratified_folds_spread_each_class():
    y = np.array([0] * 50 + [1] * 7 + [2] * 3)
    fold = P.stratified_folds(y, 5, seed=0)
    for c, n in ((0, 50), (1, 7), (2, 3)):
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_pca_matches_eigendecomposition():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 6)) @ rng.normal(size=(6, 6))
    pca = P.fit_pca(x, 3)
    evals, evecs = np.linalg.eigh(np.cov(x.T))
    top = evecs[:, ::-1][:, :3]
    # same subspace, columns equal up to sign
    np.testing.assert_allclose(np.abs(pca.components.T @ top), np.eye(3), atol=1e-8)
    z = P.pca_transform(pca, x)
    np.testing.assert_allclose(z.var(0, ddof=1), evals[::-1][:3], rtol=1e-8)
    with pytest.raises(ValueError, match="PCA dim"):
        P.fit_pca(x, 7)


def test_compare_representations_reports_each_baseline():
    rng = np.random.default_rng(3)
    x, y = make_data(rng, n=300, d=12, noise=1.5)
    latent = x[:, :2] + rng.normal(size=(300, 2)) * 0.01  # an "encoder" that found the informative dims
    res = P.compare_representations(latent[:200], latent[200:], x[:200], x[200:], y[:200], y[200:])
    assert [res[k]["dim"] for k in ("latent", "pca", "raw")] == [2, 2, 12]
    # the two largest-variance raw directions are noise (scales grow with the column), so PCA-2 is near chance
    assert res["latent"]["accuracy"] > res["pca"]["accuracy"] + 0.2
    assert res["pca"]["accuracy"] < 0.6
    assert res["raw"]["accuracy"] > 0.7


def test_encode_all_matches_encode_for_any_batch_size():
    model = make_autoencoder(lstm_encoder((6,)), repeat((6,)), features=2)
    params = model.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(4).normal(size=(5, 4, 2)).astype(np.float32)
    ls = np.array([4, 1, 3, 4, 2])
    want = np.asarray(model.encode(params, x, ls))
    np.testing.assert_allclose(P.encode_all(model, params, x, ls, batch_size=2), want, rtol=1e-6, atol=1e-7)


def test_probe_errors():
    with pytest.raises(ValueError, match="at least two classes"):
        P.fit_probe(np.ones((4, 2)), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="has 3 values but there are 4"):
        P.fit_probe(np.ones((4, 2)), [0, 1, 1])
    with pytest.raises(ValueError, match="flatten"):
        P.fit_probe(np.ones((4, 2, 2)), [0, 1, 1, 0])
