"""Time pooling: a model that reads the means of d consecutive steps and
answers at the input's own resolution.

With pooling d, x[B, T, F] with lengths[B] becomes xp[B, Tp, F], Tp = ceil(T / d),
lengths ceil(l / d): pooled step j is the mean of the valid steps among
d*j .. d*j + d - 1. The decoder runs over Tp steps and each of its outputs
stands for the d input steps it pooled (``unpool``), so reconstructions,
errors and the loss are those of every input step. A long sequence becomes
one the LSTM can carry across (the series pipeline pools the same way).
"""

from __future__ import annotations

import jax.numpy as jnp

from jax_lstm_ae._typing import Array


def pooled_steps(steps: int, d: int) -> int:
    """Tp = ceil(T / d)."""
    return -(-int(steps) // int(d))


def pool_time(x: Array, lengths: Array, d: int) -> tuple[Array, Array]:
    """x[B, T, K], lengths[B] -> (xp[B, Tp, K] means over each block's valid steps, lengths ceil(l / d));
    a block with no valid step is 0."""
    b, t = x.shape[0], x.shape[1]
    tp = pooled_steps(t, d)
    valid = (jnp.arange(tp * d)[None, :] < lengths[:, None]).astype(x.dtype)  # [B, Tp*d]
    xs = jnp.pad(x, ((0, 0), (0, tp * d - t), (0, 0))) * valid[..., None]
    sums = xs.reshape(b, tp, d, x.shape[2]).sum(axis=2)
    counts = valid.reshape(b, tp, d).sum(axis=2)[..., None]
    return sums / jnp.maximum(counts, 1), (lengths + d - 1) // d


def unpool(y: Array, d: int, steps: int) -> Array:
    """yp[B, Tp, K] -> y[B, T, K]: each pooled step repeated d times, cut to T = ``steps``."""
    return jnp.repeat(y, d, axis=1)[:, :steps]
