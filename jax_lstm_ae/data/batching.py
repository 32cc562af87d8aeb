"""Batches and splits of a :class:`~jax_lstm_ae.data.Dataset`, in an order fixed by a seed or a JAX key.

    train, val = train_val_split(ds, 0.2, seed=0)
    for batch in batches(train, 32, seed): ...       # Batch(x[B, T, F], lengths[B]) NumPy arrays

NumPy only: a JAX key is read as its raw data, and JAX is never imported here.
Up to ``PERMUTE_MAX`` examples an epoch's order is ``rng.permutation(n)``;
beyond, where that array alone would take hundreds of MB, it is a keyed
bijection of [0, n) (a Feistel network with cycle walking) evaluated for one
batch at a time: the memory of a batch, whatever n. Sets read from a file
(:mod:`~jax_lstm_ae.data.lazy`) are split by index ranges, reading nothing.
"""

from __future__ import annotations

import sys
from typing import Iterator

import numpy as np

from jax_lstm_ae.data.core import Batch, Dataset
from jax_lstm_ae.data.lazy import RowsView, is_lazy

PERMUTE_MAX = 1 << 20  # above this many examples (an 8 MB order) the order is computed per batch


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


class FeistelOrder:
    """A permutation of range(n) from ``rng``, evaluated on demand:
    ``order[i:j]`` is int64 [j - i]. Four Feistel rounds over 2 * h bits
    (2^(2h) < 4n) with a keyed SplitMix64 round function; values past n walk
    the cycle on until they fall inside (a bijection of [0, n) still)."""

    _M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def __init__(self, n: int, rng: np.random.Generator):
        self.n = int(n)
        self.half = max(1, ((self.n - 1).bit_length() + 1) // 2)
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = rng.integers(0, np.iinfo(np.int64).max, size=4, dtype=np.int64).astype(np.uint64)

    def _rounds(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            z = right ^ k
            z = (z ^ (z >> np.uint64(30))) * self._M1
            z = (z ^ (z >> np.uint64(27))) * self._M2
            left, right = right, left ^ ((z ^ (z >> np.uint64(31))) & self.mask)
        return (left << h) | right

    def __getitem__(self, key: slice) -> np.ndarray:
        a, b, _ = key.indices(self.n)
        y = self._rounds(np.arange(a, max(a, b), dtype=np.uint64))
        out = y >= self.n
        while out.any():
            y[out] = self._rounds(y[out])
            out = y >= self.n
        return y.astype(np.int64)


def epoch_order(n: int, key_or_seed=0):
    """The order of one shuffled epoch: ``rng.permutation(n)``, or past
    ``PERMUTE_MAX`` a :class:`FeistelOrder` (sliced the same way)."""
    rng = _rng(key_or_seed)
    return rng.permutation(n) if n <= PERMUTE_MAX else FeistelOrder(n, rng)


def batches(
    dataset: Dataset, batch_size: int, key_or_seed=0, shuffle: bool = True, *, drop_last: bool = False,
    skip: int = 0, defer: bool = False,
) -> Iterator:
    """Yield ``Batch(x[B, T, F], lengths[B])`` NumPy batches.

    The order is a deterministic function of ``key_or_seed`` (an int or a JAX
    key), so a resumed run sees the same batches. ``drop_last`` keeps every
    batch the same shape (one compilation); otherwise the last may be smaller.
    ``skip``: start at batch ``skip`` of the epoch (the earlier ones are not
    read). ``defer`` (a set read from a file): x is a
    :class:`~jax_lstm_ae.data.lazy.RowsView`, read when indexed, so that each
    process of a multi-process run reads only the rows it places.
    """
    n = dataset.n
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    order = epoch_order(n, key_or_seed) if shuffle else None
    defer = defer and is_lazy(dataset)
    stop = n - n % batch_size if drop_last else n
    for i in range(int(skip) * batch_size, stop, batch_size):
        idx = order[i : i + batch_size] if shuffle else np.arange(i, min(i + batch_size, n))
        yield Batch(RowsView(dataset.x, idx) if defer else dataset.x[idx], dataset.lengths[idx])


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """``(n_train, n_val)`` of :func:`train_val_split` on ``n`` examples, without splitting."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}; "
                         "pass e.g. 0.2, or 0 for no validation set")
    n_val = max(min(int(round(n * val_fraction)), n - 1), 0)
    return n - n_val, n_val


def train_val_split(dataset: Dataset, val_fraction: float = 0.2, seed=0) -> tuple[Dataset, Dataset | None]:
    """Random split; ``val`` is None when ``val_fraction`` is 0 or the set has one example.

    A set read from a file is split by index ranges instead: the first
    ``n_train`` windows train, the last ``n_val`` validate (for a series, its
    final stretch; at a stride below the window, the windows at the border
    share up to T - 1 rows)."""
    n = dataset.n
    n_train, n_val = split_sizes(n, val_fraction)
    if n_val < 1:
        return dataset, None
    if is_lazy(dataset):
        t = dataset.steps
        part = lambda a, b: Dataset(dataset.x.rows(a, b), np.broadcast_to(np.int32(t), (b - a,)))  # noqa: E731
        return part(0, n_train), part(n_train, n)
    order = _rng(seed).permutation(n)
    return dataset.take(np.sort(order[n_val:])), dataset.take(np.sort(order[:n_val]))
