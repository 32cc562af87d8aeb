"""LSTM layers over time, on one example: single layer, stack, bidirectional.

The input projection ``xs @ w_i + b`` is one [T, F] x [F, G] matmul done
before ``lax.scan``; the scan body only does ``h @ w_h`` and the gate maths.

Lengths: an example holds ``length`` valid steps (1 <= length <= T), the rest
is padding. A step at or past ``length`` keeps the carry unchanged and emits
zeros, so whatever the padding holds never reaches the state or the outputs.
With ``reverse=True`` the scan runs from T-1 down to 0; the padded steps come
first and are skipped, so the backward direction starts at step length-1.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae._cell import Init, LSTMParams, LSTMState, init_lstm, lstm_step, zero_state
from jax_lstm_ae._typing import Array, Gates, Length, PRNGKey, Seq

# One layer of a stack: a single direction, or (forward, backward).
LayerParams = LSTMParams | tuple[LSTMParams, LSTMParams]


def project_inputs(params: LSTMParams, xs: Seq) -> Gates:
    """[T, F] -> [T, G]: the part of the gates that does not depend on h."""
    return xs @ params.w_i + params.b


def scan_gates(
    params: LSTMParams,
    gates_x: Gates,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple[Array, LSTMState]:
    """Run the recurrence over precomputed input gates.

    Args:
      gates_x: [T, G] input projections.
      length: [] number of valid steps.
      state: initial ``(h[H], c[H])``; zeros when None.
    Returns:
      ``hs[T, H]`` (zeros at padded steps) and the state after the last valid
      step (the first valid one when ``reverse``).
    """
    t_steps = gates_x.shape[0]
    hidden = params.w_h.shape[0]
    if state is None:
        state = zero_state(hidden, gates_x.dtype)

    def body(carry: LSTMState, inp):
        gx, t = inp
        new, h = lstm_step(params, carry, gx)
        valid = t < length
        carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, carry)
        return carry, jnp.where(valid, h, jnp.zeros_like(h))

    final, hs = lax.scan(body, state, (gates_x, jnp.arange(t_steps)), reverse=reverse, unroll=unroll)
    return hs, final


def lstm_layer(
    params: LSTMParams,
    xs: Seq,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple[Array, LSTMState]:
    """One LSTM layer on one example: xs[T, F] -> (hs[T, H], (h[H], c[H]))."""
    if xs.ndim != 2:
        raise ValueError(f"lstm_layer expects xs of shape (T, F), got {xs.shape}; use jax.vmap for a batch")
    if xs.shape[1] != params.w_i.shape[0]:
        raise ValueError(f"lstm_layer: xs has {xs.shape[1]} features but the layer expects {params.w_i.shape[0]}")
    return scan_gates(params, project_inputs(params, xs), length, state, reverse=reverse, unroll=unroll)


def init_stack(
    key: PRNGKey,
    in_features: int,
    sizes: Sequence[int],
    *,
    init: Init = "uniform",
    bidirectional: bool = False,
) -> list[LayerParams]:
    """Parameters of a stack F -> sizes[0] -> sizes[1] -> ...

    A bidirectional layer is a (forward, backward) pair whose outputs are
    concatenated, so the next layer sees 2 * sizes[l] features.
    """
    if not sizes:
        raise ValueError("a stack needs at least one layer size, e.g. sizes=(64,)")
    layers: list[LayerParams] = []
    f = in_features
    for key_l, h in zip(jax.random.split(key, len(sizes)), sizes):
        if bidirectional:
            k_f, k_b = jax.random.split(key_l)
            layers.append((init_lstm(k_f, f, h, init), init_lstm(k_b, f, h, init)))
            f = 2 * h
        else:
            layers.append(init_lstm(key_l, f, h, init))
            f = h
    return layers


def stack_output_size(sizes: Sequence[int], bidirectional: bool) -> int:
    return sizes[-1] * (2 if bidirectional else 1)


def lstm_stack(
    layers: Sequence[LayerParams],
    xs: Seq | None,
    length: Length,
    states: Sequence[LSTMState | None] | None = None,
    *,
    first_gates: Gates | None = None,
    unroll: int = 1,
) -> tuple[Array, list]:
    """A stack of layers on one example.

    Args:
      layers: from :func:`init_stack`; a tuple entry is a bidirectional layer.
      xs: [T, F] inputs, or None when ``first_gates`` is given.
      states: optional initial state per layer (forward direction only).
      first_gates: [T, G0] precomputed input gates of layer 0, used instead of
        ``xs @ w_i + b`` (the repeat decoder's input is constant in time, so
        its projection is computed once for one step and broadcast).
    Returns:
      ``hs[T, H_out]`` of the top layer and the list of final states, one per
      layer (a ``(fwd, bwd)`` pair for a bidirectional layer).
    """
    states = list(states) if states is not None else [None] * len(layers)
    finals = []
    hs = xs
    for idx, (layer, state) in enumerate(zip(layers, states)):
        if not isinstance(layer, LSTMParams):
            fwd, bwd = layer
            gx_f = first_gates if (idx == 0 and first_gates is not None) else project_inputs(fwd, hs)
            hs_f, fin_f = scan_gates(fwd, gx_f, length, state, unroll=unroll)
            hs_b, fin_b = scan_gates(bwd, project_inputs(bwd, hs), length, None, reverse=True, unroll=unroll)
            hs = jnp.concatenate([hs_f, hs_b], axis=-1)
            finals.append((fin_f, fin_b))
        else:
            gx = first_gates if (idx == 0 and first_gates is not None) else project_inputs(layer, hs)
            hs, fin = scan_gates(layer, gx, length, state, unroll=unroll)
            finals.append(fin)
    return hs, finals
