"""The LSTM cell: parameters, initialisers and one pure step on one example.

Gate order is i, f, g, o (PyTorch's), fused into G = 4H columns, so that
``w_i = weight_ih.T``, ``w_h = weight_hh.T`` and ``b = bias_ih + bias_hh``
map one to one to ``torch.nn.LSTM``.

    gates = x @ w_i + b + h @ w_h                      [G]
    i, f, g, o = sigmoid(gates[:H]), sigmoid(gates[H:2H]),
                 tanh(gates[2H:3H]), sigmoid(gates[3H:])
    c' = f * c + i * g
    h' = o * tanh(c')
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jax_lstm_ae._typing import Array, Gates, Hidden, PRNGKey


class LSTMParams(NamedTuple):
    """Weights of one LSTM layer (one direction)."""

    w_i: Array  # [F, G] input weights
    w_h: Array  # [H, G] recurrent weights
    b: Array  # [G]   bias (b_ih + b_hh in PyTorch terms)


class LSTMState(NamedTuple):
    """Carry of one LSTM layer."""

    h: Hidden  # [H]
    c: Hidden  # [H]


# One layer of a stack: a single direction, or (forward, backward).
LayerParams = LSTMParams | tuple[LSTMParams, LSTMParams]

Init = Literal["uniform", "orthogonal"]
INITS = ("uniform", "orthogonal")


def zero_state(hidden: int, dtype=jnp.float32) -> LSTMState:
    return LSTMState(jnp.zeros((hidden,), dtype), jnp.zeros((hidden,), dtype))


def init_lstm(
    key: PRNGKey, in_features: int, hidden: int, init: Init = "uniform", dtype=jnp.float32
) -> LSTMParams:
    """Initialise one layer F -> H.

    ``"uniform"``: PyTorch's ``nn.LSTM`` scheme, every weight and both biases
    U(-1/sqrt(H), 1/sqrt(H)); ``b`` is the sum of two such draws, as
    ``b_ih + b_hh`` is in PyTorch.
    ``"orthogonal"``: Keras's scheme, Glorot-uniform input weights, orthogonal
    recurrent weights over the whole [H, G] matrix, zero bias except 1 on the
    forget gate (Jozefowicz et al. 2015).
    """
    if in_features < 0 or hidden < 1:
        raise ValueError(f"init_lstm needs in_features >= 0 and hidden >= 1, got {in_features}, {hidden}")
    g = 4 * hidden
    k_i, k_h, k_b1, k_b2 = jax.random.split(key, 4)
    if init == "uniform":
        bound = 1.0 / jnp.sqrt(hidden)

        def u(k, shape):
            return jax.random.uniform(k, shape, dtype, -bound, bound)

        return LSTMParams(u(k_i, (in_features, g)), u(k_h, (hidden, g)), u(k_b1, (g,)) + u(k_b2, (g,)))
    if init == "orthogonal":
        if in_features > 0:
            w_i = jax.nn.initializers.glorot_uniform()(k_i, (in_features, g), dtype)
        else:
            w_i = jnp.zeros((0, g), dtype)
        w_h = jax.nn.initializers.orthogonal()(k_h, (hidden, g), dtype)
        b = jnp.zeros((g,), dtype).at[hidden : 2 * hidden].set(1.0)
        return LSTMParams(w_i, w_h, b)
    raise ValueError(f"unknown init {init!r}; choose one of {INITS}")


def _hard_sigmoid(x: Array) -> Array:
    """Keras 3's ``hard_sigmoid``: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1)."""
    return jnp.clip(x / 6.0 + 0.5, 0.0, 1.0)


# Keras's names and semantics. ``activation`` is applied to the candidate g and
# to the cell state in h = o * activation(c); ``recurrent_activation`` to the
# gates i, f and o.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "relu": jax.nn.relu,
    "linear": lambda x: x,
    "softsign": jax.nn.soft_sign,
    "elu": jax.nn.elu,
}
DEFAULT_ACTIVATIONS = ("tanh", "sigmoid")  # (activation, recurrent_activation), as Keras and PyTorch


def check_activations(activation: str, recurrent_activation: str) -> tuple[str, str]:
    """Check the names (factories call this); returns the pair."""
    for what, name in (("activation", activation), ("recurrent_activation", recurrent_activation)):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown {what} {name!r}; choose one of {tuple(ACTIVATIONS)}")
    return activation, recurrent_activation


def gate_math(gates: Gates, c: Hidden, acts: tuple[str, str] = DEFAULT_ACTIVATIONS) -> LSTMState:
    """Gate non-linearities and the state update from pre-activations [G]:
    c' = r(f) c + r(i) a(g), h' = r(o) a(c'), with a = ``acts[0]`` (tanh)
    and r = ``acts[1]`` (sigmoid)."""
    act, rec = ACTIVATIONS[acts[0]], ACTIVATIONS[acts[1]]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = rec(f) * c + rec(i) * act(g)
    h_new = rec(o) * act(c_new)
    return LSTMState(h_new, c_new)


def dense(x: Array, w: Array, b: Array) -> Array:
    """x[..., N] @ w[N, M] + b[M], with the bias broadcast explicitly (the
    tests forbid implicit rank promotion)."""
    y = x @ w
    return y + b.reshape((1,) * (y.ndim - 1) + b.shape)


def lstm_step(params: LSTMParams, state: LSTMState, gates_x: Gates,
              acts: tuple[str, str] = DEFAULT_ACTIVATIONS) -> tuple[LSTMState, Hidden]:
    """One time step on one example.

    Args:
      params: the layer's weights (only ``w_h`` is used here).
      state: ``(h[H], c[H])``.
      gates_x: ``x @ w_i + b`` for this step, [G] (computed outside the time
        loop, for all steps at once).
      acts: ``(activation, recurrent_activation)`` names (:data:`ACTIVATIONS`).
    Returns:
      ``((h', c'), h')``.
    """
    with jax.named_scope("lstm_cell"):
        new = gate_math(gates_x + state.h @ params.w_h, state.c, acts)
        return new, new.h


def lstm_cell(params: LSTMParams, state: LSTMState, x: Array,
              acts: tuple[str, str] = DEFAULT_ACTIVATIONS) -> tuple[LSTMState, Hidden]:
    """One step from the raw input x[F] (projection included); for tests and users."""
    return lstm_step(params, state, x @ params.w_i + params.b, acts)
