"""Input corruptions for denoising training: the encoder reads a corrupted
batch, the loss still scores the reconstruction of the clean one.

    step = make_train_step(model, optimizer, corrupt=gaussian_noise(0.1))
    fit(model, optimizer, train, val, step_kwargs={"corrupt": step_dropout(0.2)})

A corruption is a pure function ``(key, x[B, T, F], lengths[B]) -> x'[B, T, F]``
(any function of that form works). It changes valid steps only: padding
stays as it was (the encoder ignores it either way). The draws depend on the
batch's shape, so the same rows padded differently get different noise.
Decoders that read the target (teacher forcing, scheduled sampling) read the
clean one: only the encoder's view of the data is corrupted, which is what
makes the latent, not the decoder, learn to see through the noise.
Corruptions apply to real-valued inputs; token models raise.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jax_lstm_ae._typing import Array, BatchSeq, Lengths, PRNGKey

Corruption = Callable[[PRNGKey, BatchSeq, Lengths], BatchSeq]


def _valid(x: Array, lengths: Lengths) -> Array:
    """[B, T, 1] True on valid steps."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"input corruptions are for real-valued x; got dtype {x.dtype} (token inputs cannot be "
                        "corrupted this way: train without corrupt=)")
    return (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]


def gaussian_noise(std: float) -> Corruption:
    """x' = x + std * N(0, 1) on every valid step and feature (the data is
    normalised, so ``std`` is in units of each feature's spread)."""
    if isinstance(std, (int, float)):  # a traced std (one per model, train.many) is taken as it is
        std = float(std)
        if not std >= 0.0:
            raise ValueError(f"gaussian_noise std must be >= 0, got {std}")

    def corrupt(key: PRNGKey, x: BatchSeq, lengths: Lengths) -> BatchSeq:
        valid = _valid(x, lengths)
        return jnp.where(valid, x + std * jax.random.normal(key, x.shape, x.dtype), x)

    return corrupt


def step_dropout(rate: float) -> Corruption:
    """Every valid step is zeroed (all its features) with probability ``rate``
    (a masking corruption; zero is the normalised data's mean)."""
    if isinstance(rate, (int, float)):  # a traced rate (one per model, train.many) is taken as it is
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"step_dropout rate must lie in [0, 1), got {rate}")

    def corrupt(key: PRNGKey, x: BatchSeq, lengths: Lengths) -> BatchSeq:
        valid = _valid(x, lengths)
        drop = jax.random.bernoulli(key, rate, x.shape[:2])[..., None]
        return jnp.where(valid & drop, jnp.zeros((), x.dtype), x)

    return corrupt
