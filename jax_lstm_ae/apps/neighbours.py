"""Neighbours kept: a label-free score of a representation, and a choice among K by it.

    score = neighbour_agreement(z, x, lengths)             # z[N, E] latents of the sequences x[N, T, F]
    best, scores = choose_by_neighbours([z_0, z_1], x, lengths)
    best, scores, rows = choose_model_by_neighbours(result.model, [result.pick(k) for k in range(result.k)],
                                                    result.normalizers, data)   # K trained models, raw data

Each sequence's k nearest neighbours among the others are found twice: by
1-NN DTW's distance between the sequences (``apps.dtw``: full window,
squared-Euclidean local cost) and by Euclidean distance between their
latents, each latent feature standardised over the rows first (the scale
the classifiers of ``apps.probe`` read). The score is the mean share of the
first set found in the second:

    agreement = 1/N sum_i |N_k^dtw(i) & N_k^z(i)| / k          in [0, 1]

1 when the latent keeps every sequence's DTW neighbours; about k / (N - 1)
for a latent unrelated to the data. It reads no labels. Why DTW: 1-NN DTW
is the classifier the UCR/UEA archives measure against, so a latent that
keeps the DTW neighbourhoods keeps the similarity that separates the classes
there. It is a proxy: an untrained network's latents keep many neighbours
too, so it compares models trained alike, and how well it follows the
classifiers' verdict on the shared sets is measured by
``bench/representation.py --criteria`` (bench/RESULTS.md, "Choosing without
labels"). Rows past ``max_rows`` are left out (a fixed random subset, the
same in both spaces): the DTW matrix costs N^2 T^2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jax_lstm_ae.apps.dtw import dtw_distances
from jax_lstm_ae.apps.probe import best_index, encode_all
from jax_lstm_ae.data import Dataset, Normalizer

NEIGHBOURS = 5
MAX_ROWS = 256


def _nearest(d: np.ndarray, k: int) -> np.ndarray:
    """[N, N] distances -> [N, k] indices of each row's k nearest other rows (ties: the lower index)."""
    d = np.array(d, np.float64)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _standardise(z: np.ndarray) -> np.ndarray:
    sd = z.std(axis=0)
    return (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def agreement_rows(n: int, max_rows: int = MAX_ROWS, seed: int = 0) -> np.ndarray:
    """The rows the score reads: all n, or a sorted random ``max_rows`` of them (``seed``)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def sequence_neighbours(x, lengths, *, k: int = NEIGHBOURS) -> np.ndarray:
    """[N, k]: each sequence's k nearest others by DTW (x[N, T, F] or [N, T], post-padded)."""
    x = np.asarray(x)
    lengths = np.asarray(lengths)
    _check_k(k, x.shape[0])
    return _nearest(dtw_distances(x, lengths, x, lengths), k)


def latent_agreement(z, neighbours: np.ndarray) -> float:
    """The share of ``neighbours`` [N, k] (from :func:`sequence_neighbours`) that
    are also among each row's k nearest by the standardised latents z[N, E]."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or z.shape[0] != neighbours.shape[0]:
        raise ValueError(f"z must be [N={neighbours.shape[0]}, E], got {z.shape}; pass one latent per sequence")
    if not np.all(np.isfinite(z)):
        return float("nan")
    k = neighbours.shape[1]
    zs = _standardise(z)
    near_z = _nearest(((zs[:, None] - zs[None]) ** 2).sum(-1), k)
    hits = (near_z[:, :, None] == neighbours[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(hits / k))


def neighbour_agreement(z, x, lengths, *, k: int = NEIGHBOURS) -> float:
    """The agreement (module docstring) of latents z[N, E] with sequences x[N, T, F]; nan for a non-finite z."""
    return latent_agreement(z, sequence_neighbours(x, lengths, k=k))


def choose_by_neighbours(latents: Sequence, x, lengths, *, k: int = NEIGHBOURS,
                         order: Sequence[int] | None = None) -> tuple[int, list[float]]:
    """Which of K representations (``latents``: K arrays [N, E_k] of the same
    sequences x[N, T, F]) keeps the most DTW neighbours: the index of the
    highest agreement, and the K agreements (the DTW matrix is computed once).
    Ties (and nan, which loses) go to the index first in ``order`` (default 0..K-1)."""
    if not len(latents):
        raise ValueError("no representations to choose from; give at least one latents array")
    near = sequence_neighbours(x, lengths, k=k)
    scores = [latent_agreement(z, near) for z in latents]
    return best_index(scores, order), scores


def reference_neighbours(data: Dataset, pool: int = 1, *, k: int = NEIGHBOURS,
                         max_rows: int = MAX_ROWS) -> tuple[Dataset, np.ndarray]:
    """(the rows read, [n, k] their DTW neighbours) as the choice below finds them: the non-empty
    sequences of ``data`` (at most ``max_rows``, a fixed subset), z-scored by their own mean and spread
    and time-pooled by ``pool`` (what an encoder with that pool reads; DTW's cost falls by pool^2).
    k is capped at n - 1."""
    from jax_lstm_ae.nn.pool import pool_time

    nonempty = np.flatnonzero(np.asarray(data.lengths) > 0)
    sub = data.take(nonempty[agreement_rows(len(nonempty), max_rows)])
    ref = Normalizer.fit(sub).apply(sub)
    x, lengths = ref.x, ref.lengths
    if pool > 1:
        x, lengths = (np.asarray(a) for a in pool_time(x, lengths, pool))
    return sub, sequence_neighbours(x, lengths, k=min(k, sub.n - 1))


def choose_model_by_neighbours(model, params: Sequence, normalizers: Sequence, data: Dataset, *,
                               k: int = NEIGHBOURS, max_rows: int = MAX_ROWS, order: Sequence[int] | None = None,
                               mesh=None) -> tuple[int, list[float], int]:
    """Which of K trained models (one ``model``, K ``params`` and the ``normalizers``
    they were trained with) keeps the most DTW neighbours of ``data`` (raw units,
    e.g. the training sequences; labels unread): (index, the K agreements, rows read).

    Each model encodes the rows through its own normaliser; the neighbours are
    found once, by :func:`reference_neighbours` with the model's ``pool``."""
    if len(params) != len(normalizers) or not len(params):
        raise ValueError(f"give one normaliser per model: {len(params)} params, {len(normalizers)} normalisers")
    if model.spec.encoder.vocab_size is not None:
        raise ValueError("token sequences have no DTW distance between them; choose among token models by "
                         "validation loss instead")
    sub, near = reference_neighbours(data, model.spec.pool, k=k, max_rows=max_rows)
    scores = []
    for p, norm in zip(params, normalizers):
        seen = norm.apply(sub) if norm is not None else sub
        scores.append(latent_agreement(encode_all(model, p, seen.x, seen.lengths, mesh=mesh), near))
    return best_index(scores, order), scores, int(sub.n)


def _check_k(k: int, n: int) -> None:
    if not 1 <= k < n:
        raise ValueError(f"k = {k} neighbours needs more than k sequences (got {n}); give k in [1, {n - 1}]")
