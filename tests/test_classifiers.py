"""RBF SVM with C by CV (against scikit-learn's own grid search), resampling,
compare_representations with the SVM and unequal lengths, and DTW (against a
float64 double loop) with the 1-NN classifier."""

import numpy as np
import pytest

from jax_lstm_ae.apps import dtw as D
from jax_lstm_ae.apps import probe as P


def rings(rng, n):
    """Two concentric rings in 2-D plus 3 noise dims: no linear boundary, an RBF one."""
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(y == 0, 1.0, 3.0) + rng.normal(0, 0.2, n)
    x = np.c_[radius * np.cos(angle), radius * np.sin(angle), rng.normal(size=(n, 3))]
    return x * [1.0, 1.0, 5.0, 5.0, 5.0] + 10.0, y


def test_svm_chooses_c_as_grid_search_and_predicts_as_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x, y = rings(rng, 240)
    svm = P.fit_svm(x[:160], y[:160], seed=3)
    ref = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")),
                       {"svc__C": list(P.SVM_C_GRID)}, cv=StratifiedKFold(5, shuffle=True, random_state=3)).fit(x[:160], y[:160])
    assert svm.c == ref.best_params_["svc__C"]  # both keep the first (smallest) C among equal scores
    assert svm.cv_accuracy == pytest.approx(ref.best_score_)
    np.testing.assert_array_equal(P.svm_predict(svm, x[160:]), ref.predict(x[160:]))
    # rings: the RBF SVM separates them, a linear probe cannot do much better than chance
    assert np.mean(P.svm_predict(svm, x[160:]) == y[160:]) >= 0.95
    assert P.probe_accuracy(P.fit_probe(x[:160], y[:160]), x[160:], y[160:]) < 0.75


def test_svm_string_labels_fixed_c_and_tiny_classes():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    x, y = rings(rng, 60)
    names = np.array(["in", "out"])[y]
    svm = P.fit_svm(x, names, c=10.0)
    assert svm.c == 10.0 and np.isnan(svm.cv_accuracy)
    assert set(P.svm_predict(svm, x).tolist()) == {"in", "out"}
    one = np.r_[y[:59], 2]  # a class with one row: the others are still cross-validated (ECG5000 has such classes)
    svm = P.fit_svm(x, one)
    assert svm.c in P.SVM_C_GRID and 0.5 < svm.cv_accuracy < 59 / 60 + 1e-9  # the singleton, held out, is an error
    pair = np.array([0, 1] * 2)  # no class of two rows: nothing to hold out, the middle C of the grid
    assert P.fit_svm(x[:2], pair[:2]).c == P.SVM_C_GRID[len(P.SVM_C_GRID) // 2]
    with pytest.raises(ValueError, match="at least two classes"):
        P.fit_svm(x, np.zeros(60))
    r = P.classify("svm", x[:40], y[:40], x[40:])
    assert r["predictions"].shape == (20,) and r["param"] in P.SVM_C_GRID
    with pytest.raises(ValueError, match="unknown classifier 'tree'"):
        P.classify("tree", x, y, x)


def test_svm_without_sklearn_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'jax_lstm_ae\[cli\]'"):
        P.fit_svm(np.ones((4, 2)), [0, 1, 0, 1])


def test_resample_interpolates_each_sequence_over_its_length():
    x = np.zeros((3, 5, 2))
    x[0, :5, 0] = [0, 1, 2, 3, 4]  # a ramp stays a ramp
    x[0, :5, 1] = 7.0
    x[1, :2, 0] = [10, 20]
    x[2, :1, 0] = 5.0  # one step: repeated
    out = P.resample(x, [5, 2, 1], 9)
    np.testing.assert_allclose(out[0, :, 0], np.linspace(0, 4, 9))
    np.testing.assert_allclose(out[0, :, 1], 7.0)
    np.testing.assert_allclose(out[1, :, 0], np.linspace(10, 20, 9))
    np.testing.assert_allclose(out[2, :, 0], 5.0)


def test_compare_representations_with_svm_and_unequal_lengths():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(2)
    n = 120
    y = rng.integers(0, 2, n)
    lengths = rng.integers(5, 11, n)
    t = np.arange(10)
    freq = np.where(y == 0, 0.5, 1.5)[:, None]
    x = np.sin(freq * t[None, :] * 10 / lengths[:, None])[..., None]  # the class is the number of cycles
    x[t[None, :] >= lengths[:, None]] = 0.0
    latent = np.c_[y + rng.normal(0, 0.3, n), rng.normal(size=n)]
    res = P.compare_representations(latent[:80], latent[80:], x[:80], x[80:], y[:80], y[80:], classifier="svm",
                                    lengths_train=lengths[:80], lengths_test=lengths[80:])
    assert [res[k]["dim"] for k in ("latent", "pca", "raw")] == [2, 2, 10]  # raw resampled to T=10, F=1
    assert all(r["C"] in P.SVM_C_GRID for r in res.values())
    assert res["raw"]["accuracy"] >= 0.9  # resampled, the two cycle counts are plain to see
    with pytest.raises(ValueError, match="pass lengths_train/lengths_test"):
        P.compare_representations(latent[:80], latent[80:], x[:80], x[80:, :7], y[:80], y[80:])
    with pytest.raises(ValueError, match="unknown classifier"):
        P.compare_representations(latent, latent, x, x, y, y, classifier="knn")


# ----------------------------------------------------------------- DTW
def dtw_loop(a, b):
    """The textbook recursion, float64, one pair at a time."""
    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            cost = float(np.sum((a[i] - b[j]) ** 2))
            d[i + 1, j + 1] = cost + min(d[i, j], d[i, j + 1], d[i + 1, j])
    return d[n, m]


def test_dtw_matches_the_double_loop_ragged_multivariate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 9, 3)), rng.normal(size=(5, 7, 3))
    la, lb = np.array([9, 1, 4, 7, 2, 9]), np.array([7, 3, 1, 5, 6])
    a[np.arange(9)[None, :] >= la[:, None]] = 99.0  # padding must not leak into any answer
    got = D.dtw_distances(a, la, b, lb)
    want = np.array([[dtw_loop(a[i, : la[i]], b[j, : lb[j]]) for j in range(5)] for i in range(6)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_dtw_known_values_and_chunking(monkeypatch):
    x = np.array([[0.0, 1.0, 2.0, 0.0], [0.0, 1.0, 1.0, 2.0]])
    d = D.dtw_distances(x, [3, 4], x, [3, 4])
    np.testing.assert_allclose(d, [[0.0, 0.0], [0.0, 0.0]])  # 0 1 2 warps onto 0 1 1 2 at no cost
    assert D.dtw_distances([[0.0, 0.0]], [2], [[1.0, 3.0]], [2])[0, 0] == 10.0  # 1 + 9 along the diagonal
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 6)), rng.normal(size=(4, 5))
    whole = D.dtw_distances(a, np.full(7, 6), b, np.full(4, 5))
    monkeypatch.setattr(D, "_CHUNK_CELLS", 1)  # one row of a at a time
    np.testing.assert_array_equal(D.dtw_distances(a, np.full(7, 6), b, np.full(4, 5)), whole)


def test_nn1_predict_and_errors():
    d = np.array([[3.0, 1.0, 2.0], [0.5, 0.5, 9.0]])
    np.testing.assert_array_equal(D.nn1_predict(d, np.array(["a", "b", "c"])), ["b", "a"])  # ties: first row
    with pytest.raises(ValueError, match=r"distances must be \[N_test, N_train=2\]"):
        D.nn1_predict(d, [0, 1])
    with pytest.raises(ValueError, match="one F"):
        D.dtw_distances(np.zeros((2, 3, 2)), [3, 3], np.zeros((2, 3, 1)), [3, 3])
    with pytest.raises(ValueError, match=r"every length must lie in \[1, T\]"):
        D.dtw_distances(np.zeros((2, 3)), [0, 3], np.zeros((2, 3)), [3, 3])


def test_choose_by_cv_picks_the_separable_representation_and_breaks_ties_by_order():
    from jax_lstm_ae.apps.probe import choose_by_cv

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    noise = rng.normal(size=(60, 4))
    separable = noise + 5.0 * np.eye(3, 4)[y]  # class means far apart
    k, acc = choose_by_cv([noise, separable, noise], y, classifier="linear")
    assert k == 1 and acc[1] == 1.0 and acc[0] < 0.7 and acc[0] == acc[2]
    assert choose_by_cv([noise, noise], y, classifier="linear", order=[1, 0])[0] == 1  # a tie: first in order
    with pytest.raises(ValueError, match="order must list each"):
        choose_by_cv([noise, noise], y, classifier="linear", order=[0, 0])
    with pytest.raises(ValueError, match="no representations"):
        choose_by_cv([], y)
