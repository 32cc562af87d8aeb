"""Anomaly scores from reconstruction errors (EncDec-AD, arXiv 1607.00148).

    err = error_vectors(model, params, x, lengths)     # [B, T, K] |x_hat - x|
    scorer = fit_scorer(err_normal_val)                 # Gaussian on normal errors
    window, steps = score_errors(scorer, err, lengths)  # [B], [B, T]
    points = points_from_windows(window, starts, n)     # long series: [N points]

The paper fits a normal distribution N(mu, Sigma) to the error vectors of
normal validation data and scores a(e) = (e - mu)^T Sigma^-1 (e - mu). Two
levels are offered:

- ``level="window"``: one error vector per window, the flattened [T * K]
  errors (equal lengths only); one score per window.
- ``level="step"``: one vector per time step, [K]; a score per step, and the
  window's score is the max over its valid steps (the paper flags a sequence
  when any point is anomalous).

The covariance is shrunk towards a scaled identity (Ledoit-Wolf, or a fixed
amount) plus a tiny ridge, so it is positive definite even when there are
fewer normal windows than dimensions. Mahalanobis scoring is one jitted
matmul per chunk: d^2 = ||(e - mu) W||^2 with W W^T = Sigma^-1.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.train.parallel import map_dataset
from jax_lstm_ae._typing import Array, PyTree

Method = Literal["mahalanobis", "mae", "mse"]
Level = Literal["window", "step"]

# Chunks keep peak memory flat and shapes fixed (one compile per chunk size).
_CHUNK = 65536


# ----------------------------------------------------------------- model side
def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    if a.shape[0] == n:
        return a
    reps = np.repeat(a[:1], n - a.shape[0], axis=0)
    return np.concatenate([a, reps], axis=0)


def map_batches(fn: Callable, x, lengths=None, *, batch_size: int = 512) -> np.ndarray:
    """Apply ``fn(x[b], lengths[b]) -> [b, ...]`` over fixed-size batches.

    Batches are ``batch_size`` rows, or for fewer examples the next power of
    two (at least 8); the last batch is padded with copies of its first row
    and cropped after, so ``fn`` compiles for a handful of shapes at most."""
    x = np.asarray(x)
    n = x.shape[0]
    if n == 0:
        raise ValueError("no examples to process (x has 0 rows); pass at least one sequence")
    if lengths is None:
        lengths = np.full((n,), x.shape[1], np.int32)
    lengths = np.asarray(lengths, np.int32)
    bs = min(int(batch_size), max(8, 1 << (n - 1).bit_length()))
    out = []
    for i in range(0, n, bs):
        xb, lb = x[i:i + bs], lengths[i:i + bs]
        m = xb.shape[0]
        res = fn(jnp.asarray(_pad_rows(xb, bs)), jnp.asarray(_pad_rows(lb, bs)))
        out.append(np.asarray(res)[:m])
    return np.concatenate(out, axis=0)


def error_vectors(
    model: Autoencoder, params: PyTree, x, lengths=None, *, batch_size: int = 512, squared: bool = False,
    mesh=None,
) -> np.ndarray:
    """Per-step error vectors e(t) = |x_hat(t) - x(t)| (or squared), [B, T, K].

    x: [B, T, F] (or tokens [B, T]; then K = V and the target is one-hot).
    Zero on padded steps. Inference mode (free-running decoders).
    ``mesh`` (``make_data_mesh()``): each batch of ``batch_size`` rows is split
    over the mesh's devices (``map_dataset``; every process passes all rows)."""
    _, lengths = model.check_batch(jnp.asarray(x), None if lengths is None else jnp.asarray(lengths))
    if mesh is None:
        diff = map_batches(lambda xb, lb: _diff_jit(model, params, xb, lb), x, lengths, batch_size=batch_size)
    else:
        diff = map_dataset(partial(_diff, model), params, np.asarray(x), np.asarray(lengths), mesh=mesh,
                           batch_size=batch_size, global_rows=True)
    return np.square(diff) if squared else np.abs(diff)


def _diff(model: Autoencoder, params, x, lengths):
    """x_hat - target, zero on padding, [B, T, K]."""
    recon = model.reconstruct(params, x, lengths)
    target = jax.vmap(model.head.target)(x)
    mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
    return jnp.where(mask, recon - target, 0.0)


_diff_jit = jax.jit(_diff, static_argnums=0)


# ----------------------------------------------------------------- Gaussian
class Gaussian(NamedTuple):
    """N(mean, cov) fitted to error vectors, kept in whitening form."""

    mean: np.ndarray  # [D]
    whiten: np.ndarray  # [D, D] W with W W^T = cov^-1 (W = inv(chol(cov))^T)
    shrinkage: float  # weight of the scaled identity in cov
    ridge: float  # added to the diagonal after shrinkage


def ledoit_wolf_shrinkage(x) -> float:
    """Ledoit-Wolf (2004) optimal weight of mu*I in (1 - s) S + s mu I for
    samples x[N, D] (S the MLE covariance, mu = tr(S) / D); sklearn's formula."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    if d == 1:
        return 0.0  # one dimension: nothing to shrink towards (sklearn returns 0 too)
    xc = x - x.mean(axis=0)
    x2 = xc * xc
    emp_trace = x2.sum(axis=0) / n
    mu = emp_trace.sum() / d
    delta_ = np.sum((xc.T @ xc) ** 2) / n**2
    beta_ = np.sum(x2.T @ x2)
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * emp_trace.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)


def fit_gaussian(vectors, *, shrinkage: float | Literal["ledoit_wolf"] = "ledoit_wolf", ridge: float = 1e-6) -> Gaussian:
    """Fit N(mu, Sigma) to vectors[N, D] by maximum likelihood, shrunk.

    Sigma = (1 - s) S + s (tr S / D) I + r I with r = ridge * max(tr S / D, 1e-12):
    positive definite for any data, even N = 1 or constant columns.
    ``shrinkage``: "ledoit_wolf" (estimated) or a fixed s in [0, 1]."""
    v = np.asarray(vectors, np.float64)
    if v.ndim != 2 or v.shape[0] < 1:
        raise ValueError(f"fit_gaussian expects vectors of shape (N >= 1, D), got {v.shape}; pass one vector per row")
    if not np.all(np.isfinite(v)):
        raise ValueError("error vectors contain NaN or inf (the model's reconstruction is not finite); check the data for extreme "
                         "values, or train the run again")
    n, d = v.shape
    mean = v.mean(axis=0)
    xc = v - mean
    cov = xc.T @ xc / n
    mu = np.trace(cov) / d
    if shrinkage == "ledoit_wolf":
        s = ledoit_wolf_shrinkage(v) if n > 1 else 1.0
    else:
        s = float(shrinkage)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"shrinkage must be 'ledoit_wolf' or a number in [0, 1], got {shrinkage}; pass one of them")
    r = ridge * max(mu, 1e-12)
    cov = (1.0 - s) * cov + (s * mu + r) * np.eye(d)
    chol = np.linalg.cholesky(cov)
    whiten = np.linalg.solve(chol, np.eye(d)).T  # (e - mu) @ W = solve(L, e - mu)
    return Gaussian(mean, whiten, float(s), float(r))


@jax.jit
def _mahalanobis_jit(mean, whiten, v):
    z = (v - mean[None, :]) @ whiten
    return jnp.sum(z * z, axis=-1)


def mahalanobis(g: Gaussian, vectors) -> np.ndarray:
    """Squared Mahalanobis distance of vectors[..., D] under g -> [...].

    Jitted, in float32, in fixed chunks of 65536 rows (one compile)."""
    v = np.asarray(vectors, np.float32)
    d = g.mean.shape[0]
    if v.shape[-1] != d:
        raise ValueError(f"vectors have {v.shape[-1]} dims but the Gaussian was fitted on {d}; "
                         "pass vectors like those it was fitted on")
    lead = v.shape[:-1]
    flat = v.reshape(-1, d)
    n = flat.shape[0]
    mean = jnp.asarray(g.mean, jnp.float32)
    whiten = jnp.asarray(g.whiten, jnp.float32)
    bs = min(_CHUNK, max(n, 1))
    out = [
        np.asarray(_mahalanobis_jit(mean, whiten, jnp.asarray(_pad_rows(flat[i:i + bs], bs))))[: min(bs, n - i)]
        for i in range(0, n, bs)
    ]
    return (np.concatenate(out) if out else np.zeros((0,), np.float32)).reshape(lead)


# ----------------------------------------------------------------- scorer
class Scorer(NamedTuple):
    """How to turn error vectors [B, T, K] into scores (see :func:`score_errors`)."""

    method: str  # "mahalanobis" | "mae" | "mse"
    level: str  # "window" | "step"
    gaussian: Gaussian | None  # for "mahalanobis"
    steps: int | None  # T the window-level Gaussian was fitted on


def _lengths(errors: np.ndarray, lengths) -> np.ndarray:
    b, t = errors.shape[:2]
    if lengths is None:
        return np.full((b,), t, np.int32)
    ls = np.asarray(lengths, np.int32)
    if ls.shape != (b,):
        raise ValueError(f"lengths must have shape (B,)=({b},), got {ls.shape}; pass one length per sequence")
    return ls


def _check_errors(errors) -> np.ndarray:
    e = np.asarray(errors, np.float32)
    if e.ndim != 3:
        raise ValueError(f"expected error vectors of shape (B, T, K), got {e.shape}; use error_vectors(...)")
    return e


MAX_SCORER_BYTES = 4 * 2**30  # a scorer that needs more is refused up front, with what to use instead


def check_scorer_size(steps: int, features: int, *, method: Method, level: Level) -> None:
    """Refuse, before any work, a Mahalanobis scorer whose covariance would not
    fit in ``MAX_SCORER_BYTES`` (its dimension is T*K per window, K per step)."""
    if method != "mahalanobis":
        return
    d = steps * features if level == "window" else features
    need = 4 * 8 * d * d  # the covariance, its factor, its inverse and a work copy, float64
    if need > MAX_SCORER_BYTES:
        raise ValueError(
            f"a Mahalanobis scorer on {level}s of {d:,} values needs about {need / 2**30:.1f} GiB for its "
            f"{d:,} x {d:,} covariance (limit {MAX_SCORER_BYTES / 2**30:.0f} GiB); use level 'step' (one "
            f"{features}-value vector per step: --level step), or method 'mae' / 'mse' (--method mae)")


def fit_scorer(
    errors, lengths=None, *, method: Method = "mahalanobis", level: Level = "window",
    shrinkage: float | Literal["ledoit_wolf"] = "ledoit_wolf",
) -> Scorer:
    """Fit a scorer on error vectors [B, T, K] of NORMAL (validation) data.

    ``mae``/``mse`` need no fitting (mean |e| or e^2 over valid steps and K)."""
    if method not in ("mahalanobis", "mae", "mse"):
        raise ValueError(f"method must be 'mahalanobis', 'mae' or 'mse', got {method!r}; choose one of them")
    if level not in ("window", "step"):
        raise ValueError(f"level must be 'window' or 'step', got {level!r}; choose one of them")
    e = _check_errors(errors)
    if method != "mahalanobis":
        return Scorer(method, level, None, None)
    ls = _lengths(e, lengths)
    check_scorer_size(e.shape[1], e.shape[2], method=method, level=level)
    if level == "window":
        if np.any(ls != e.shape[1]):
            raise ValueError(
                "level='window' flattens each window's [T, K] errors into one vector, so every window must "
                "have the full length T; use level='step' for sequences of different lengths"
            )
        return Scorer(method, level, fit_gaussian(e.reshape(e.shape[0], -1), shrinkage=shrinkage), e.shape[1])
    valid = np.arange(e.shape[1])[None, :] < ls[:, None]
    return Scorer(method, level, fit_gaussian(e[valid], shrinkage=shrinkage), None)


def score_errors(scorer: Scorer, errors, lengths=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Error vectors [B, T, K] -> (window scores [B], step scores [B, T] or None).

    Step scores (zero on padding) exist for level='step' and for mae/mse;
    a window-level Mahalanobis score has no per-step split. An empty
    sequence (length 0) scores 0: it holds nothing that could be anomalous
    (never -inf or NaN, which would poison a threshold taken from the scores)."""
    e = _check_errors(errors)
    ls = _lengths(e, lengths)
    valid = np.arange(e.shape[1])[None, :] < ls[:, None]
    if scorer.method in ("mae", "mse"):
        per = np.abs(e) if scorer.method == "mae" else np.square(e)
        steps = np.where(valid, per.mean(axis=-1), 0.0)
        return steps.sum(axis=1) / np.maximum(ls, 1), steps
    if scorer.level == "window":
        if e.shape[1] != scorer.steps or np.any(ls != e.shape[1]):
            raise ValueError(
                f"this window-level scorer was fitted on windows of T={scorer.steps} full steps; "
                f"got windows of T={e.shape[1]} with lengths {ls.min()}..{ls.max()}; score windows like those it was fitted on"
            )
        return mahalanobis(scorer.gaussian, e.reshape(e.shape[0], -1)), None
    steps = np.where(valid, mahalanobis(scorer.gaussian, e), 0.0)
    return np.where(ls > 0, np.where(valid, steps, -np.inf).max(axis=1), 0.0), steps


# ----------------------------------------------------------------- series
@partial(jax.jit, static_argnums=(2, 3))
def _scatter_points(values, starts, n_points, reduce):
    w = values.shape[1]
    idx = starts[:, None] + jnp.arange(w)[None, :]
    if reduce == "max":
        acc = jnp.full((n_points,), -jnp.inf).at[idx].max(values)
        cover = jnp.zeros((n_points,)).at[idx].add(1.0)
        return acc, cover
    acc = jnp.zeros((n_points,)).at[idx].add(values)
    cover = jnp.zeros((n_points,)).at[idx].add(1.0)
    return acc / jnp.maximum(cover, 1.0), cover


def points_from_windows(
    values, starts, n_points: int, *, window: int | None = None, reduce: Literal["mean", "max"] = "mean"
) -> np.ndarray:
    """Window scores back onto the series: a point's score is the mean (or max)
    over the windows covering it.

    values: [N] one score per window (``window`` = W required) or [N, W] one
    score per step of each window. starts: [N] first point of each window.
    Returns [n_points]; points no window covers get NaN (say a final stretch
    shorter than the stride)."""
    v = np.asarray(values, np.float32)
    s = np.asarray(starts, np.int32)
    if v.ndim == 1:
        if window is None:
            raise ValueError("one score per window does not say which points each window covers; pass window=W")
        v = np.repeat(v[:, None], int(window), axis=1)
    if v.ndim != 2 or s.shape != (v.shape[0],):
        raise ValueError(f"expected values [N] or [N, W] and starts [N], got {v.shape} and {s.shape}; "
                         "pass one start per window")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}; choose one of them")
    if s.size and (s.min() < 0 or s.max() + v.shape[1] > n_points):
        raise ValueError(f"windows of W={v.shape[1]} starting at {s.min()}..{s.max()} do not fit in {n_points} points; "
                         "pass "
                         "n_points of the whole series")
    acc, cover = _scatter_points(jnp.asarray(v), jnp.asarray(s), int(n_points), reduce)
    out = np.asarray(acc, np.float64)
    out[np.asarray(cover) == 0] = np.nan
    return out


def points_from_windows_reference(values, starts, n_points, window=None, reduce="mean") -> np.ndarray:
    """Plain loop version of :func:`points_from_windows` (for tests)."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = np.repeat(v[:, None], window, axis=1)
    cover = [[] for _ in range(n_points)]
    for row, s0 in zip(v, np.asarray(starts)):
        for j, val in enumerate(row):
            cover[s0 + j].append(val)
    agg = np.mean if reduce == "mean" else np.max
    return np.array([agg(c) if c else np.nan for c in cover])


def window_overlaps(starts, window: int, lo: int, hi: int) -> np.ndarray:
    """[N] bool: does window [start, start + W) share a point with the
    labelled stretch lo < i < hi (the discord files' convention)?"""
    s = np.asarray(starts)
    return (s + window - 1 > lo) & (s < hi)
