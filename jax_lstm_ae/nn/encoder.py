"""The encoder strategy: a stacked (optionally bidirectional) LSTM, x[B, T, F] -> z[B, E].

Written once, on a batch: the stack runs on the encoder's backend
(``backends.lstm_stack_batched``). The readout (``pooling``) turns each
example's top layer into one vector: its state after the last valid step,
the mean of its outputs over the valid steps, or both. The per-example
specification it is tested against lives in ``tests/reference_model.py``.

An :class:`Encoder` is a NamedTuple of pure functions made by a factory that
closes over the hyper-parameters, as optax makes a ``GradientTransformation``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jax_lstm_ae.backends import check_backend, lstm_stack_batched
from jax_lstm_ae.kernels.cell import INITS, Init, LSTMState, check_activations, dense
from jax_lstm_ae.kernels.reference import init_stack, stack_output_size
from jax_lstm_ae._typing import Array, Length, PRNGKey, PyTree


class Encoder(NamedTuple):
    """``init(key, in_features) -> params``; ``apply(params, x[B, ...],
    lengths[B], initial=None, keys=None) -> z[B, E]`` on a batch, on the
    encoder's backend (``backend="reference"``: ``jax.vmap`` of the plain
    per-example scans). ``initial``: one ``LSTMState`` of [B, H] arrays per
    layer, the forward direction's starting state (PyTorch's
    ``forward(inputs, hidden)``); zeros when None. ``keys`` [B]: one PRNG key
    per example for ``dropout`` (training); None: no dropout.

    ``x`` is [B, T, F] reals, or [B, T] integer tokens when the encoder
    embeds tokens (``vocab_size`` set; then ``in_features`` is ignored). For
    one example add a batch axis: ``apply(params, x[None], length[None])[0]``.
    """

    init: Callable[[PRNGKey, int], PyTree]
    apply: Callable[..., Array]
    latent_dim: int  # E
    vocab_size: int | None  # V, or None for real-valued inputs
    sizes: tuple[int, ...]
    bidirectional: bool
    pooling: str = "last"  # one of POOLINGS
    dropout: float = 0.0  # between layers, in training (apply's keys)


def _dense_init(key: PRNGKey, n_in: int, n_out: int) -> dict[str, Array]:
    """PyTorch ``nn.Linear`` default: U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    k_w, k_b = jax.random.split(key)
    bound = 1.0 / jnp.sqrt(max(n_in, 1))
    return {
        "w": jax.random.uniform(k_w, (n_in, n_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(k_b, (n_out,), jnp.float32, -bound, bound),
    }


def _check_sizes(sizes: Sequence[int], what: str) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"{what} needs one or more positive layer sizes, got {sizes}")
    return sizes


def _valid_mean(hs: Array, length: Length) -> Array:
    """Mean of hs[T, H] over the first ``length`` steps -> [H]. The layers
    already emit zeros past ``length``; the explicit mask keeps the readout
    right even for a backend that did not, and costs one select. A length-0
    row (the padding rows data parallelism adds) reads out zeros, not 0 / 0:
    a NaN there would reach the loss through its zero weight (NaN * 0)."""
    valid = jnp.arange(hs.shape[0]) < length
    total = jnp.sum(jnp.where(valid[:, None], hs, 0.0), axis=0)
    return total / jnp.maximum(jnp.asarray(length, hs.dtype), 1.0)


# (last[H_top], hs[T, H_top], length) -> readout; keys are POOLINGS
_READOUTS: dict[str, Callable[[Array, Array, Length], Array]] = {
    "last": lambda last, hs, length: last,
    "mean": lambda last, hs, length: _valid_mean(hs, length),
    "last_mean": lambda last, hs, length: jnp.concatenate([last, _valid_mean(hs, length)]),
}
POOLINGS = tuple(_READOUTS)


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def _check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")


def lstm_encoder(
    sizes: Sequence[int],
    *,
    bidirectional: bool = False,
    latent_dim: int | None = None,
    vocab_size: int | None = None,
    token_dim: int = 32,
    init: Init = "uniform",
    unroll: int = 1,
    backend: str = "auto",
    remat: int | None = None,
    pooling: str = "last",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    dropout: float = 0.0,
) -> Encoder:
    """A stacked LSTM whose top layer, read out by ``pooling``, is the latent.

    Args:
      sizes: hidden size of each layer, e.g. ``(2 * E, E)`` for the seed's
        expand-then-compress encoder F -> 2E -> E.
      bidirectional: run each layer both ways; the last state is then
        ``concat(h_fwd, h_bwd)`` of the top layer, [2 * sizes[-1]].
      latent_dim: when given, a Dense layer projects the readout to E =
        ``latent_dim``; otherwise E is the readout's size: sizes[-1], x2 if
        bidirectional, x2 again for ``pooling="last_mean"``.
      vocab_size: when given, inputs are integer tokens [T] in [0, V),
        embedded by a learned [V, token_dim] table before the LSTM.
      init: ``"uniform"`` (PyTorch) or ``"orthogonal"`` (Keras) weights.
      unroll: ``lax.scan`` unroll factor.
      backend: how ``apply`` runs the LSTM layers (``backends.dispatch``
        module doc): ``"auto"`` (fastest for the platform, picked when traced),
        ``"reference"`` (``jax.vmap`` of the plain scans), ``"fast"``, ...
      remat: checkpoint the stack in chunks of this many steps (long
        sequences: training memory; see ``lstm_stack``).
      activation, recurrent_activation: the cell's non-linearities, Keras's
        names and semantics (``kernels.cell.ACTIVATIONS``): ``activation`` on the
        candidate and the cell output (tanh), ``recurrent_activation`` on the
        gates (sigmoid; Keras 3's ``"hard_sigmoid"`` is relu6(x + 3) / 6).
        Other than the defaults, the fused backends fall back to plain scans.
      dropout: PyTorch's ``nn.LSTM(dropout=)``: in training (when the model
        passes keys) each layer's outputs but the last are dropped with this
        probability and the rest scaled by 1 / (1 - dropout); never at
        inference. Runs the stack layer by layer.
      pooling: how the top layer becomes one vector. ``"last"``: its hidden
        state after the last valid step (the seeds' and EncDec-AD's choice),
        [H_top]. ``"mean"``: the mean of its outputs hs[t] over the valid
        steps t < length, [H_top]; every step then gets a gradient from the
        latent, not only through the recurrence. ``"last_mean"``: both,
        concatenated, [2 * H_top]. H_top = sizes[-1] (x2 if bidirectional,
        where the last state is ``concat(h_fwd, h_bwd)``).

    The latent depends only on each example's *valid* steps: padded steps keep
    the carry and are left out of the mean, so padding never changes z.
    """
    sizes = _check_sizes(sizes, "lstm_encoder")
    _check_init(init)
    _check_pooling(pooling)
    check_backend(backend)  # resolved when traced, so building a model starts no JAX runtime
    check_activations(activation, recurrent_activation)
    cell = {"activation": activation, "recurrent_activation": recurrent_activation}
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a probability in [0, 1), got {dropout}")
    if vocab_size is not None and vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    readout = _READOUTS[pooling]  # picked once, here, not at every call
    state_dim = stack_output_size(sizes, bidirectional) * (2 if pooling == "last_mean" else 1)
    e = state_dim if latent_dim is None else int(latent_dim)

    def init_fn(key: PRNGKey, in_features: int) -> PyTree:
        k_emb, k_rnn, k_proj = jax.random.split(key, 3)
        params: dict[str, Any] = {}
        f = in_features
        if vocab_size is not None:
            params["embedding"] = jax.random.normal(k_emb, (vocab_size, token_dim), jnp.float32)
            f = token_dim
        params["lstm"] = init_stack(k_rnn, f, sizes, init=init, bidirectional=bidirectional)
        if latent_dim is not None:
            params["proj"] = _dense_init(k_proj, state_dim, e)
        return params

    batched_readout = jax.vmap(readout)  # the readout is written for one example's rows

    def apply_fn(params: PyTree, x: Array, lengths: Array, initial: Sequence[LSTMState] | None = None,
                 keys: Array | None = None) -> Array:
        with jax.named_scope("encoder"):
            xs = params["embedding"][x] if vocab_size is not None else x
            hs, finals = lstm_stack_batched(params["lstm"], xs, lengths, initial, unroll=unroll, backend=backend,
                                            remat=remat, dropout=dropout, keys=keys, **cell)
            top = finals[-1]
            last = jnp.concatenate([top[0].h, top[1].h], axis=-1) if bidirectional else top.h
            z = batched_readout(last, hs, lengths)
            if latent_dim is not None:
                z = dense(z, params["proj"]["w"], params["proj"]["b"])
            return z

    return Encoder(init_fn, apply_fn, e, vocab_size, sizes, bidirectional, pooling, float(dropout))
