"""Batches and splits of a :class:`~jax_lstm_ae.data.Dataset`, in an order fixed by a seed or a JAX key.

    train, val = train_val_split(ds, 0.2, seed=0)
    for batch in batches(train, 32, seed): ...       # Batch(x[B, T, F], lengths[B]) NumPy arrays

NumPy only: a JAX key is read as its raw data, and JAX is never imported here.
"""

from __future__ import annotations

import sys
from typing import Iterator

import numpy as np

from jax_lstm_ae.data.core import Batch, Dataset


def _rng(key_or_seed) -> np.random.Generator:
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    if isinstance(key_or_seed, (tuple, list)):  # e.g. (seed, epoch)
        return np.random.default_rng([int(k) for k in key_or_seed])
    key = key_or_seed
    jax = sys.modules.get("jax")  # a typed JAX key exists only once JAX is imported: never import it here
    if jax is not None and jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def batches(
    dataset: Dataset, batch_size: int, key_or_seed=0, shuffle: bool = True, *, drop_last: bool = False
) -> Iterator:
    """Yield ``Batch(x[B, T, F], lengths[B])`` NumPy batches.

    The order is a deterministic function of ``key_or_seed`` (an int or a JAX
    key), so a resumed run sees the same batches. ``drop_last`` keeps every
    batch the same shape (one compilation); otherwise the last may be smaller.
    """
    n = dataset.n
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    order = _rng(key_or_seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield Batch(dataset.x[idx], dataset.lengths[idx])


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """``(n_train, n_val)`` of :func:`train_val_split` on ``n`` examples, without splitting."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}; "
                         "pass e.g. 0.2, or 0 for no validation set")
    n_val = max(min(int(round(n * val_fraction)), n - 1), 0)
    return n - n_val, n_val


def train_val_split(dataset: Dataset, val_fraction: float = 0.2, seed=0) -> tuple[Dataset, Dataset | None]:
    """Random split; ``val`` is None when ``val_fraction`` is 0 or the set has one example."""
    n = dataset.n
    _, n_val = split_sizes(n, val_fraction)
    if n_val < 1:
        return dataset, None
    order = _rng(seed).permutation(n)
    return dataset.take(np.sort(order[n_val:])), dataset.take(np.sort(order[:n_val]))
