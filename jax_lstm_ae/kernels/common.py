"""A batched stack built from a batched per-layer function (the Pallas and
cuDNN backends run one fused kernel per layer).

    layer_fn(params, inputs[B, T, .], lengths[B], h0[B, H], c0[B, H], *, reverse)
        -> (hs[B, T, H], h[B, H], c[B, H])

``takes="gates"``: ``inputs`` are the input gates gx[B, T, G]; ``takes="xs"``:
the layer's raw inputs xs[B, T, F] (cuDNN projects them itself). A layer whose
input gates are already computed (layer 0 of the repeat and unconditioned
decoders) then runs on ``gates_fn`` instead. The result meets the stack
contract of ``jax_lstm_ae.backends.dispatch`` (``StackFn``).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import jax.numpy as jnp

from jax_lstm_ae.kernels.cell import LayerParams, LSTMParams, LSTMState, dense

LayerFn = Callable[..., tuple]


def layerwise_stack(layer_fn: LayerFn, *, takes: Literal["gates", "xs"] = "gates",
                    gates_fn: LayerFn | None = None) -> Callable:
    """A batched stack function that runs ``layer_fn`` layer by layer (module doc)."""
    if takes == "xs" and gates_fn is None:
        raise ValueError("a layer function that takes xs needs gates_fn for layers fed precomputed gates")

    def stack(layers: Sequence[LayerParams], inp, lengths, states, *, first, steps):
        x, mode, finals = inp, first, []
        batch = lengths.shape[0]

        def run(p: LSTMParams, state, reverse):
            if state is None:
                zeros = jnp.zeros((batch, p.w_h.shape[0]), p.w_h.dtype)
                state = LSTMState(zeros, zeros)
            if mode == "xs" and takes == "xs":
                hs, h, c = layer_fn(p, x, lengths, state.h, state.c, reverse=reverse)
            else:
                if mode == "xs":
                    gx = dense(x, p.w_i, p.b)
                elif mode == "const":
                    gx = jnp.broadcast_to(x[:, None], (batch, steps, x.shape[-1]))
                else:
                    gx = x
                hs, h, c = (layer_fn if takes == "gates" else gates_fn)(p, gx, lengths, state.h, state.c,
                                                                         reverse=reverse)
            return hs, LSTMState(h, c)

        for layer, state in zip(layers, states):
            if isinstance(layer, LSTMParams):
                x, fin = run(layer, state, False)
            else:
                hs_f, fin_f = run(layer[0], state, False)
                hs_b, fin_b = run(layer[1], None, True)
                x, fin = jnp.concatenate([hs_f, hs_b], axis=-1), (fin_f, fin_b)
            finals.append(fin)
            mode = "xs"
        return x, finals

    return stack
