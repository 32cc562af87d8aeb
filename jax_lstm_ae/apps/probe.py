"""Linear probe: how much class information a representation keeps linearly.

    z_tr, z_te = encode_all(model, params, x_tr), encode_all(model, params, x_te)
    probe = fit_probe(z_tr, y_tr)                 # multinomial logistic regression
    acc = probe_accuracy(probe, z_te, y_te)
    table = compare_representations(z_tr, z_te, raw_tr, raw_te, y_tr, y_te)
    # {"latent": .., "pca": .., "raw": ..}: PCA of the raw sequence at the latent's E
    svm = fit_svm(z_tr, y_tr)                     # RBF SVM, C by CV on the training rows (scikit-learn)
    acc = float(np.mean(svm_predict(svm, z_te) == y_te))

The probe standardises features (train mean/std), then minimises mean
cross-entropy + l2 * ||W||^2 by full-batch Adam (optax) in float32, jitted. The l2
strength is picked by stratified k-fold cross-validation on the TRAINING set
only; all folds and strengths are fitted at once under ``jax.vmap`` (sample
weights zero out each fold's held-out rows, so shapes never change).

The SVM (:func:`fit_svm`) is the unsupervised-representation protocol of the
UCR/UEA literature (T-Loss, TS2Vec): an RBF-kernel SVM on standardised
features, C picked by stratified k-fold CV on the training rows. It needs
scikit-learn (``pip install 'jax_lstm_ae[cli]'``), imported only when called.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_lstm_ae.apps.anomaly import map_batches
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.train.parallel import encode_dataset
from jax_lstm_ae._typing import PyTree

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
SVM_C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # T-Loss's grid
CLASSIFIERS = ("linear", "svm")


class Probe(NamedTuple):
    w: np.ndarray  # [D, C]
    b: np.ndarray  # [C]
    mean: np.ndarray  # [D] standardisation fitted on the training rows
    scale: np.ndarray  # [D]
    classes: np.ndarray  # [C] original label values, sorted
    l2: float
    cv_accuracy: float  # cross-validated accuracy of the chosen l2 on the training rows (nan without CV)
    cv_predictions: np.ndarray | None = None  # [N] each training row's prediction by the fold that held it out


def encode_all(model: Autoencoder, params: PyTree, x, lengths=None, *, batch_size: int = 512,
               mesh=None) -> np.ndarray:
    """Latents of any number of sequences, [B, E], in fixed-size jitted batches
    (with ``mesh``, each batch split over its devices: ``encode_dataset``)."""
    if mesh is not None:
        return encode_dataset(model, params, np.asarray(x), None if lengths is None else np.asarray(lengths),
                              mesh=mesh, batch_size=batch_size, global_rows=True)
    return map_batches(lambda xb, lb: model.encode(params, xb, lb), x, lengths, batch_size=batch_size)


def _objective(params, x, y_onehot, weights, l2):
    logits = x @ params["w"] + params["b"][None, :]
    ce = -jnp.sum(y_onehot * jax.nn.log_softmax(logits), axis=-1)
    return jnp.sum(weights * ce) / jnp.sum(weights) + l2 * jnp.sum(jnp.square(params["w"]))


@partial(jax.jit, static_argnums=(4,))
def _fit_one(x, y_onehot, weights, l2, iters):
    """One full-batch Adam solve (cosine-decayed step, from zeros); vmappable
    over (weights, l2). The objective is convex and the features standardised,
    so a fixed schedule converges; Adam compiles several times faster than
    optax's L-BFGS, which matters when every feature width compiles anew."""
    params = {"w": jnp.zeros((x.shape[1], y_onehot.shape[1])), "b": jnp.zeros((y_onehot.shape[1],))}
    opt = optax.adam(optax.cosine_decay_schedule(0.1, iters, 0.01))
    grad = jax.grad(lambda p: _objective(p, x, y_onehot, weights, l2))

    def body(carry, _):
        p, state = carry
        updates, state = opt.update(grad(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=iters)
    return params


_fit_many = jax.jit(jax.vmap(_fit_one, in_axes=(None, None, 0, 0, None)), static_argnums=(4,))


def _standardise(x: np.ndarray):
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-8 * max(float(np.abs(x).max()), 1.0), scale, 1.0)  # constant columns stay put
    return mean, scale


def _encode_labels(labels, n: int):
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} values but there are {n} feature rows; give one label per sequence")
    classes, idx = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(f"a probe needs at least two classes, got only {classes.tolist()}; "
                         "give labelled data of two or more classes")
    return classes, idx


def stratified_folds(labels, k: int, seed: int = 0) -> np.ndarray:
    """[N] fold index in [0, k): each class spread evenly over the folds."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(y.shape[0], np.int64)
    offset = 0
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = (np.arange(rows.shape[0]) + offset) % k
        offset += rows.shape[0]  # small classes do not all land in fold 0
    return fold


def _split_stratified(labels, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): about ``test_fraction`` of each class to test,
    at least one row of each class with two or more rows on each side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must lie in (0, 1), got {test_fraction}; pass e.g. 0.3")
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * rows.shape[0]))
        k = min(max(k, 1), rows.shape[0] - 1) if rows.shape[0] > 1 else 0
        te.append(rows[:k])
        tr.append(rows[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def fit_probe(
    features, labels, *, l2: float | Sequence[float] = L2_GRID, folds: int = 5, iters: int = 500, seed: int = 0
) -> Probe:
    """Multinomial logistic regression on features[N, D] -> labels[N].

    ``l2`` a number: use it. A sequence: choose by ``folds``-fold stratified
    cross-validated accuracy on these rows (ties -> stronger l2), then refit
    on all rows; ``cv_predictions`` are then the held-out predictions at the
    chosen l2 (for a confusion matrix: ``confusion_matrix(labels, p.cv_predictions)``)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got {x.shape}; flatten sequences with x.reshape(N, -1)")
    classes, idx = _encode_labels(labels, x.shape[0])
    mean, scale = _standardise(x)
    xs = jnp.asarray((x - mean) / scale, jnp.float32)
    onehot = jax.nn.one_hot(idx, classes.shape[0])
    grid_values = [float(l2)] if np.ndim(l2) == 0 else sorted((float(v) for v in l2), reverse=True)
    grid = np.asarray(grid_values, np.float32)
    # One vmapped solve for every (fold, l2) pair plus every l2 on all rows:
    # a single compile per feature width, whatever the grid.
    k = int(min(folds, np.bincount(idx).max())) if len(grid_values) > 1 else 0
    fold = stratified_folds(idx, k, seed) if k else np.zeros(x.shape[0], np.int64)
    weights = np.stack([(fold != f).astype(np.float32) for f in range(k) for _ in grid_values]
                       + [np.ones(x.shape[0], np.float32) for _ in grid_values])
    l2s = np.tile(grid, k + 1)
    fitted = _fit_many(xs, onehot, jnp.asarray(weights), jnp.asarray(l2s), iters)
    best, cv_acc, cv_pred = 0, float("nan"), None
    if k:
        cv_w, cv_b = fitted["w"][: k * len(grid_values)], fitted["b"][: k * len(grid_values)]
        pred = np.argmax(np.asarray(jnp.einsum("nd,mdc->mnc", xs, cv_w) + cv_b[:, None, :]), axis=-1)
        held = weights[: k * len(grid_values)] == 0
        correct = ((pred == idx[None, :]) & held).sum(axis=1).reshape(k, len(grid_values)).sum(axis=0)
        best = int(np.argmax(correct))  # grid is strongest first, so ties keep the stronger l2
        cv_acc = float(correct[best]) / x.shape[0]
        cv_pred = classes[pred[fold * len(grid_values) + best, np.arange(x.shape[0])]]
    final = k * len(grid_values) + best
    return Probe(np.asarray(fitted["w"][final]), np.asarray(fitted["b"][final]), mean, scale, classes,
                 grid_values[best], cv_acc, cv_pred)


def probe_logits(probe: Probe, features) -> np.ndarray:
    x = (np.asarray(features, np.float64) - probe.mean) / probe.scale
    return x.astype(np.float32) @ probe.w + probe.b


def probe_predict(probe: Probe, features) -> np.ndarray:
    """[N, D] -> [N] predicted labels (original label values)."""
    return probe.classes[np.argmax(probe_logits(probe, features), axis=-1)]


def probe_accuracy(probe: Probe, features, labels) -> float:
    return float(np.mean(probe_predict(probe, features) == np.asarray(labels).reshape(-1)))


def confusion_matrix(labels, predictions, classes=None) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted, in sorted class order
    (or ``classes``)."""
    y, p = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels has {y.shape[0]} values but predictions has {p.shape[0]}; "
                         "pass one prediction per label")
    classes = np.unique(np.r_[y, p]) if classes is None else np.asarray(classes)
    index = {c: i for i, c in enumerate(classes.tolist())}
    unknown = sorted({v for v in y.tolist() + p.tolist() if v not in index}, key=str)
    if unknown:
        raise ValueError(f"values {unknown} are not among classes {classes.tolist()}; pass every class the labels use")
    out = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(out, ([index[v] for v in y.tolist()], [index[v] for v in p.tolist()]), 1)
    return out


# ----------------------------------------------------------------- RBF SVM
class SVM(NamedTuple):
    model: object  # a fitted sklearn Pipeline(StandardScaler, SVC(kernel="rbf", gamma="scale"))
    c: float
    cv_accuracy: float  # mean held-out accuracy of the chosen C on the training rows (nan without CV)


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(
            "the SVM classifier needs scikit-learn: pip install 'jax_lstm_ae[cli]' (or scikit-learn), "
            "or use the linear probe"
        ) from None


def fit_svm(features, labels, *, c: float | Sequence[float] = SVM_C_GRID, folds: int = 5, seed: int = 0) -> SVM:
    """RBF SVM on features[N, D] -> labels[N], features standardised on these rows.

    ``c`` a number: use it. A sequence: choose C by ``folds``-fold stratified
    CV accuracy on these rows (ties -> the smaller C), then refit on all rows.
    As in :func:`fit_probe`, the folds are capped by the largest class, not
    the smallest: a class of one row still lets the others be cross-validated
    (its row, when held out, counts as an error). With no class of two rows
    there is nothing to hold out, and the middle C is used."""
    _sklearn()
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got {x.shape}; flatten sequences with x.reshape(N, -1)")
    _, idx = _encode_labels(labels, x.shape[0])
    y = np.asarray(labels).reshape(-1)
    make = lambda cv: make_pipeline(StandardScaler(), SVC(C=cv, kernel="rbf", gamma="scale"))  # noqa: E731
    grid = [float(c)] if np.ndim(c) == 0 else sorted(float(v) for v in c)
    k = int(min(folds, np.bincount(idx).max()))
    if len(grid) == 1 or k < 2:
        chosen, cv_acc = grid[len(grid) // 2], float("nan")
    else:
        split = StratifiedKFold(k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "the least populated class has only n members": expected, see above
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            scores = [float(np.mean(cross_val_score(make(cv), x, y, cv=split))) for cv in grid]
        best = int(np.argmax(scores))  # first maximum: the smallest such C
        chosen, cv_acc = grid[best], scores[best]
    return SVM(make(chosen).fit(x, y), chosen, cv_acc)


def svm_predict(svm: SVM, features) -> np.ndarray:
    """[N, D] -> [N] predicted labels (original label values)."""
    return svm.model.predict(np.asarray(features, np.float64))


def resample(x, lengths, steps: int) -> np.ndarray:
    """Each sequence x[i, :lengths[i]] stretched or squeezed to ``steps`` steps by
    linear interpolation: x[N, T, F] -> [N, steps, F]. Turns unequal-length
    sets into fixed vectors for the raw and PCA baselines."""
    x = np.asarray(x, np.float64)
    lengths = np.asarray(lengths)
    out = np.empty((x.shape[0], int(steps), x.shape[2]))
    grid = np.linspace(0.0, 1.0, int(steps))
    for i, n in enumerate(lengths.tolist()):
        src = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        for f in range(x.shape[2]):
            out[i, :, f] = np.interp(grid, src, x[i, :n, f]) if n > 1 else x[i, 0, f]
    return out


def classify(classifier: str, train, y_train, test, *, seed: int = 0) -> dict:
    """Fit ``classifier`` ("linear": the probe above; "svm": :func:`fit_svm`) on
    the training rows, predict the test rows. Returns {"predictions",
    "cv_accuracy", "param"} (param: the chosen l2 or C)."""
    if classifier == "linear":
        p = fit_probe(train, y_train, seed=seed)
        return {"predictions": probe_predict(p, test), "cv_accuracy": p.cv_accuracy, "param": p.l2}
    if classifier == "svm":
        m = fit_svm(train, y_train, seed=seed)
        return {"predictions": svm_predict(m, test), "cv_accuracy": m.cv_accuracy, "param": m.c}
    raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")


def choose_by_cv(latents: Sequence, labels, *, classifier: str = "svm", seed: int = 0,
                 order: Sequence[int] | None = None) -> tuple[int, list[float]]:
    """Which of K representations of the same training rows (``latents``: K
    arrays, each [N, E_k], e.g. K models' latents) ``classifier`` ("linear" or
    "svm") separates best:
    the index with the highest cross-validated accuracy on these rows (5
    stratified folds, the classifier's own grid chosen inside each), and the K
    accuracies. Only training labels are read, so the choice may guide what is
    then measured on test rows. Ties go to the index that comes first in
    ``order`` (e.g. the models by validation loss; default 0..K-1)."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    if not len(latents):
        raise ValueError("no representations to choose from; give at least one latents array")
    fit = fit_probe if classifier == "linear" else fit_svm
    acc = [float(fit(z, labels, seed=seed).cv_accuracy) for z in latents]
    return best_index(acc, order), acc


def best_index(scores: Sequence[float], order: Sequence[int] | None = None) -> int:
    """The index of the highest of K ``scores`` (nan loses); ties go to the index that comes first in
    ``order`` (a permutation of 0..K-1, default that order)."""
    order = list(range(len(scores))) if order is None else [int(k) for k in order]
    if sorted(order) != list(range(len(scores))):
        raise ValueError(f"order must list each of the {len(scores)} indices once, got {order}")
    return max(order, key=lambda k: (np.nan_to_num(scores[k], nan=-1.0), -order.index(k)))


# ----------------------------------------------------------------- baselines
class PCA(NamedTuple):
    mean: np.ndarray  # [D]
    components: np.ndarray  # [D, k] orthonormal columns, largest variance first


def fit_pca(x, dim: int) -> PCA:
    """Principal components of x[N, D] (rows centred), via SVD in float64."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"fit_pca expects (N, D), got {x.shape}; pass one vector per row")
    if not 1 <= dim <= min(x.shape):
        raise ValueError(f"PCA dim must lie in [1, min(N, D)={min(x.shape)}], got {dim}; pass a dim in that range")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return PCA(mean, vt[:dim].T)


def pca_transform(pca: PCA, x) -> np.ndarray:
    return (np.asarray(x, np.float64) - pca.mean) @ pca.components


def compare_representations(
    latent_train, latent_test, raw_train, raw_test, y_train, y_test, *, classifier: str = "linear",
    lengths_train=None, lengths_test=None, **probe_kw
) -> dict[str, dict[str, float]]:
    """Accuracy of ``classifier`` ("linear" probe or "svm") on the latent vs PCA
    of the raw sequence at the same dimension E vs the raw sequence itself.
    Raw inputs [N, T, F] or [N, D] are flattened; with ``lengths_*`` of
    sequences of unequal length (or test T != train T), each raw sequence is
    first resampled to the training T (:func:`resample`). Returns {name:
    {"accuracy", "dim", "cv_accuracy", and "l2" (linear) or "C" (svm)}}:
    ``cv_accuracy`` uses the training rows only, so it may guide choices (e.g.
    of the autoencoder) that the test accuracy must not."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    raw_train, raw_test = np.asarray(raw_train), np.asarray(raw_test)
    if lengths_train is not None and raw_train.ndim == 3:
        t = raw_train.shape[1]
        lt = np.asarray(lengths_train)
        lte = np.full(len(raw_test), raw_test.shape[1]) if lengths_test is None else np.asarray(lengths_test)
        if raw_test.shape[1] != t or np.any(lt != t) or np.any(lte != t):
            raw_train, raw_test = resample(raw_train, lt, t), resample(raw_test, lte, t)
    raw_train = raw_train.reshape(len(raw_train), -1)
    raw_test = raw_test.reshape(len(raw_test), -1)
    if raw_test.shape[1] != raw_train.shape[1]:
        raise ValueError(f"raw test rows have {raw_test.shape[1]} values but training rows {raw_train.shape[1]}; "
                         "pass lengths_train/lengths_test to resample unequal-length sequences")
    e = np.asarray(latent_train).shape[1]
    pca = fit_pca(raw_train, min(e, *raw_train.shape))
    reps = {
        "latent": (latent_train, latent_test),
        "pca": (pca_transform(pca, raw_train), pca_transform(pca, raw_test)),
        "raw": (raw_train, raw_test),
    }
    out = {}
    for name, (tr, te) in reps.items():
        if classifier == "linear":
            probe = fit_probe(tr, y_train, **probe_kw)
            out[name] = {"accuracy": probe_accuracy(probe, te, y_test), "dim": int(np.shape(tr)[1]), "l2": probe.l2,
                         "cv_accuracy": probe.cv_accuracy}
        else:
            svm = fit_svm(tr, y_train, **{k: v for k, v in probe_kw.items() if k in ("seed", "folds")})
            acc = float(np.mean(svm_predict(svm, te) == np.asarray(y_test).reshape(-1)))
            out[name] = {"accuracy": acc, "dim": int(np.shape(tr)[1]), "C": svm.c, "cv_accuracy": svm.cv_accuracy}
    return out
