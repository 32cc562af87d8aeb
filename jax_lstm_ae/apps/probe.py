"""Linear probe: how much class information a representation keeps linearly.

    z_tr, z_te = encode_all(model, params, x_tr), encode_all(model, params, x_te)
    probe = fit_probe(z_tr, y_tr)                 # multinomial logistic regression
    acc = probe_accuracy(probe, z_te, y_te)
    table = compare_representations(z_tr, z_te, raw_tr, raw_te, y_tr, y_te)
    # {"latent": .., "pca": .., "raw": ..}: PCA of the raw sequence at the latent's E

The probe standardises features (train mean/std), then minimises mean
cross-entropy + l2 * ||W||^2 by full-batch Adam (optax) in float32, jitted. The l2
strength is picked by stratified k-fold cross-validation on the TRAINING set
only; all folds and strengths are fitted at once under ``jax.vmap`` (sample
weights zero out each fold's held-out rows, so shapes never change).
"""

from __future__ import annotations

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
        raise ValueError(f"labels has {y.shape[0]} values but there are {n} feature rows")
    classes, idx = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(f"a probe needs at least two classes, got only {classes.tolist()}")
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
        raise ValueError(f"test fraction must lie in (0, 1), got {test_fraction}")
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
        raise ValueError(f"labels has {y.shape[0]} values but predictions has {p.shape[0]}")
    classes = np.unique(np.r_[y, p]) if classes is None else np.asarray(classes)
    index = {c: i for i, c in enumerate(classes.tolist())}
    unknown = sorted({v for v in y.tolist() + p.tolist() if v not in index}, key=str)
    if unknown:
        raise ValueError(f"values {unknown} are not among classes {classes.tolist()}")
    out = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(out, ([index[v] for v in y.tolist()], [index[v] for v in p.tolist()]), 1)
    return out


# ----------------------------------------------------------------- baselines
class PCA(NamedTuple):
    mean: np.ndarray  # [D]
    components: np.ndarray  # [D, k] orthonormal columns, largest variance first


def fit_pca(x, dim: int) -> PCA:
    """Principal components of x[N, D] (rows centred), via SVD in float64."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"fit_pca expects (N, D), got {x.shape}")
    if not 1 <= dim <= min(x.shape):
        raise ValueError(f"PCA dim must lie in [1, min(N, D)={min(x.shape)}], got {dim}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return PCA(mean, vt[:dim].T)


def pca_transform(pca: PCA, x) -> np.ndarray:
    return (np.asarray(x, np.float64) - pca.mean) @ pca.components


def compare_representations(
    latent_train, latent_test, raw_train, raw_test, y_train, y_test, **probe_kw
) -> dict[str, dict[str, float]]:
    """Probe accuracy of the latent vs PCA of the raw sequence at the same
    dimension E vs the raw sequence itself. Raw inputs [N, T, F] or [N, D]
    are flattened. Returns {name: {"accuracy", "dim", "l2", "cv_accuracy"}}:
    ``cv_accuracy`` uses the training rows only, so it may guide choices
    (e.g. of the autoencoder) that the test accuracy must not."""
    raw_train = np.asarray(raw_train).reshape(len(raw_train), -1)
    raw_test = np.asarray(raw_test).reshape(len(raw_test), -1)
    e = np.asarray(latent_train).shape[1]
    pca = fit_pca(raw_train, min(e, *raw_train.shape))
    reps = {
        "latent": (latent_train, latent_test),
        "pca": (pca_transform(pca, raw_train), pca_transform(pca, raw_test)),
        "raw": (raw_train, raw_test),
    }
    out = {}
    for name, (tr, te) in reps.items():
        probe = fit_probe(tr, y_train, **probe_kw)
        out[name] = {"accuracy": probe_accuracy(probe, te, y_test), "dim": int(np.shape(tr)[1]), "l2": probe.l2,
                     "cv_accuracy": probe.cv_accuracy}
    return out
