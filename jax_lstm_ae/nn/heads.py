"""Output heads and their masked losses.

A :class:`Head` maps the decoder's hidden states to outputs and scores them
against the input. Per-step errors are averaged over features (or are the
cross-entropy of one token); losses average them over *valid* steps only, so
padding never contributes.

| head      | outputs          | prediction / feedback | per-step error          |
| --------- | ---------------- | --------------------- | ----------------------- |
| linear    | [T, F] values    | identity              | mean (y - x)^2 or abs    |
| sigmoid   | [T, F] logits    | sigmoid               | mean binary CE          |
| softmax   | [T, V] logits    | softmax               | CE of the true token    |
| identity  | [T, F] = hs      | identity              | mse, mae, or Keras BCE  |
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jax_lstm_ae.kernels.cell import dense
from jax_lstm_ae.nn.encoder import _dense_init
from jax_lstm_ae._typing import Array, PRNGKey, PyTree


class Head(NamedTuple):
    init: Callable[[PRNGKey, int, int], PyTree]  # (key, H, out_dim) -> params
    apply: Callable[[PyTree, Array], Array]  # (params, h[..., H]) -> logits[..., K]
    activate: Callable[[Array], Array]  # logits -> prediction = decoder feedback [..., K]
    target: Callable[[Array], Array]  # one example's input x -> target in the same space [T, K]
    error: Callable[[Array, Array], Array]  # (logits[T, K], x) -> per-step error [T]
    name: str
    vocab_size: int | None = None


def _linear_apply(params: PyTree, h: Array) -> Array:
    return dense(h, params["w"], params["b"])


def _init(key: PRNGKey, hidden: int, out_dim: int) -> PyTree:
    return _dense_init(key, hidden, out_dim)


def linear(loss: Literal["mse", "mae"] = "mse") -> Head:
    """Real values: Dense H -> F, mean squared (or absolute) error."""
    if loss == "mse":
        err = lambda y, x: jnp.mean(jnp.square(y - x), axis=-1)  # noqa: E731
    elif loss == "mae":
        err = lambda y, x: jnp.mean(jnp.abs(y - x), axis=-1)  # noqa: E731
    else:
        raise ValueError(f"linear head loss must be 'mse' or 'mae', got {loss!r}")
    return Head(_init, _linear_apply, lambda y: y, lambda x: x, err, f"linear_{loss}")


def sigmoid() -> Head:
    """Multi-hot / one-hot inputs in {0, 1}: Dense H -> F logits, binary CE."""

    def err(logits, x):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)

    return Head(_init, _linear_apply, jax.nn.sigmoid, lambda x: x, err, "sigmoid_bce")


def softmax(vocab_size: int) -> Head:
    """Integer tokens in [0, V): Dense H -> V logits, cross-entropy."""
    if vocab_size < 2:
        raise ValueError(f"softmax head needs vocab_size >= 2, got {vocab_size}")

    def err(logits, tokens):
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens)

    def target(tokens):
        return jax.nn.one_hot(tokens, vocab_size)

    return Head(_init, _linear_apply, jax.nn.softmax, target, err, "softmax_ce", vocab_size)


KERAS_EPSILON = 1e-7
"""``keras.backend.epsilon()``: Keras clips probabilities to [eps, 1 - eps] before its BCE."""


def keras_binary_crossentropy(p: Array, x: Array, eps: float = KERAS_EPSILON) -> Array:
    """Keras's ``binary_crossentropy(x, p)`` on *probabilities* p[..., F]
    (``from_logits=False``), averaged over features -> [...].

        p' = clip(p, eps, 1 - eps);  mean_f -(x log p' + (1 - x) log(1 - p'))

    Outside [eps, 1 - eps] (an LSTM's tanh output may be negative) the clip
    holds p' constant, so the gradient there is zero, as in Keras."""
    q = jnp.clip(p, eps, 1.0 - eps)
    return jnp.mean(-(x * jnp.log(q) + (1.0 - x) * jnp.log(1.0 - q)), axis=-1)


def _identity_init(key: PRNGKey, hidden: int, out_dim: int) -> PyTree:
    del key, hidden, out_dim  # make_autoencoder checks that the decoder's width is F
    return {}


def identity(loss: Literal["mse", "mae", "bce"] = "mse") -> Head:
    """No output layer: the decoder's top LSTM output hs[T, H] *is* the
    reconstruction, so H must equal F (``make_autoencoder`` checks it), as in
    Keras decoders that end in ``LSTM(F, return_sequences=True)``.

    ``loss="bce"`` is Keras's binary cross-entropy on those outputs read as
    probabilities, clipped to [1e-7, 1 - 1e-7] (:func:`keras_binary_crossentropy`),
    so losses match a Keras model compiled with ``loss="binary_crossentropy"``.
    """
    errs = {
        "mse": lambda y, x: jnp.mean(jnp.square(y - x), axis=-1),
        "mae": lambda y, x: jnp.mean(jnp.abs(y - x), axis=-1),
        "bce": keras_binary_crossentropy,
    }
    if loss not in errs:
        raise ValueError(f"identity head loss must be 'mse', 'mae' or 'bce', got {loss!r}")
    return Head(_identity_init, lambda params, h: h, lambda y: y, lambda x: x, errs[loss], f"identity_{loss}")


def masked_mean(per_step: Array, mask: Array) -> Array:
    """Mean of per_step[..., T] over the steps where mask is True (>= 1 step)."""
    return jnp.sum(jnp.where(mask, per_step, 0.0), axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1).astype(per_step.dtype)


HEADS = {"linear": linear, "sigmoid": sigmoid, "softmax": softmax, "identity": identity}
