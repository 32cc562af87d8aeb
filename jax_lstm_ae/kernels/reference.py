"""LSTM layers over time on one example: the specification every backend is tested against.

The input projection ``xs @ w_i + b`` is one [T, F] x [F, G] matmul done
before ``lax.scan``; the scan body only does ``h @ w_h`` and the gate maths.

Lengths: an example holds ``length`` valid steps (0 <= length <= T), the rest
is padding. A step at or past ``length`` keeps the carry unchanged and emits
zeros, so whatever the padding holds never reaches the state or the outputs.
With ``reverse=True`` the scan runs from T-1 down to 0; the padded steps come
first and are skipped, so the backward direction starts at step length-1.

- per example: :func:`lstm_layer`, :func:`scan_gates`, :func:`lstm_stack`
  (xs[T, F], length[]) -- plain ``lax.scan`` code, differentiated by JAX.
  The same names in ``jax_lstm_ae.backends`` add a ``backend=`` option
  (another backend on a batch of one).
- batched: :func:`stack_reference_batched` -- the "reference" backend's
  stack function (the ``StackFn`` contract of ``jax_lstm_ae.backends``):
  ``jax.vmap`` of the per-example stack.

The other helpers here (``first_input``, ``stack_steps``, ``remat_stack``,
``layerwise_dropout``, ...) are shared with the batched dispatch in
``jax_lstm_ae.backends``, so both faces check and run their options alike.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae._typing import Array, Gates, Length, PRNGKey, Seq
from jax_lstm_ae.kernels.cell import (
    DEFAULT_ACTIVATIONS,
    Init,
    LayerParams,
    LSTMParams,
    LSTMState,
    check_activations,
    dense,
    init_lstm,
    lstm_step,
    zero_state,
)

__all__ = [
    "FirstInput",
    "check_layer_input",
    "check_remat",
    "dropping",
    "first_input",
    "init_stack",
    "layerwise_dropout",
    "lstm_layer",
    "lstm_stack",
    "project_inputs",
    "remat_stack",
    "reverse_valid",
    "scan_gates",
    "scan_reference",
    "stack_output_size",
    "stack_reference",
    "stack_reference_batched",
    "stack_steps",
    "zeros_state",
]

# What layer 0 of a stack reads: xs, precomputed gates per step, or the same gates at every step.
FirstInput = Literal["xs", "gates", "const"]


# ------------------------------------------------------------------ one layer
def project_inputs(params: LSTMParams, xs: Seq) -> Gates:
    """[T, F] -> [T, G]: the part of the gates that does not depend on h."""
    return dense(xs, params.w_i, params.b)


def scan_reference(params, gates_x, length, state, reverse, unroll, acts=DEFAULT_ACTIVATIONS):
    """The plain masked scan of one layer over gx[T, G] -> (hs[T, H], final state)."""
    t_steps = gates_x.shape[0]

    def body(carry: LSTMState, inp):
        gx, t = inp
        new, h = lstm_step(params, carry, gx, acts)
        valid = t < length
        carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, carry)
        return carry, jnp.where(valid, h, jnp.zeros_like(h))

    final, hs = lax.scan(body, state, (gates_x, jnp.arange(t_steps)), reverse=reverse, unroll=unroll)
    return hs, final


def reverse_valid(seq: Array, length: Length) -> Array:
    """Reverse the first ``length`` rows of seq[T, ...]; padding stays put."""
    t = jnp.arange(seq.shape[0])
    return seq[jnp.where(t < length, length - 1 - t, t)]


def scan_gates(
    params: LSTMParams,
    gates_x: Gates,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, LSTMState]:
    """Run the recurrence over precomputed input gates, on one example.

    Args:
      gates_x: [T, G] input projections.
      length: [] number of valid steps.
      state: initial ``(h[H], c[H])``; zeros when None.
      activation, recurrent_activation: Keras's names (``kernels.cell.ACTIVATIONS``).
    Returns:
      ``hs[T, H]`` (zeros at padded steps) and the state after the last valid
      step (the first valid one when ``reverse``).
    """
    hidden = params.w_h.shape[0]
    if state is None:
        state = zero_state(hidden, gates_x.dtype)
    acts = check_activations(activation, recurrent_activation)
    with jax.named_scope("lstm_layer"):
        return scan_reference(params, gates_x, length, state, reverse, unroll, acts)


def check_layer_input(params: LSTMParams, xs: Seq) -> None:
    """``lstm_layer``'s checks on xs[T, F]."""
    if xs.ndim != 2:
        raise ValueError(f"lstm_layer expects xs of shape (T, F), got {xs.shape}; use jax.vmap for a batch")
    if xs.shape[1] != params.w_i.shape[0]:
        raise ValueError(f"lstm_layer: xs has {xs.shape[1]} features but the layer expects {params.w_i.shape[0]}")


def lstm_layer(
    params: LSTMParams,
    xs: Seq,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, LSTMState]:
    """One LSTM layer on one example: xs[T, F] -> (hs[T, H], (h[H], c[H]))."""
    check_layer_input(params, xs)
    return scan_gates(params, project_inputs(params, xs), length, state, reverse=reverse, unroll=unroll,
                      activation=activation, recurrent_activation=recurrent_activation)


# ------------------------------------------------------------------ stacks
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


def _state(layer: LSTMParams, state, inp) -> LSTMState:
    return zero_state(layer.w_h.shape[0], inp.dtype) if state is None else state


def stack_reference(layers, first, inp, length, states, steps, unroll, acts=DEFAULT_ACTIVATIONS):
    """The per-example stack, layer by layer, on plain scans."""
    if first == "const":
        inp = jnp.broadcast_to(inp, (steps, inp.shape[0]))
    finals = []
    hs = inp
    for idx, (layer, state) in enumerate(zip(layers, states)):
        gates0 = idx == 0 and first != "xs"
        if not isinstance(layer, LSTMParams):
            fwd, bwd = layer
            hs_f, fin_f = scan_reference(fwd, project_inputs(fwd, hs), length, _state(fwd, state, hs), False,
                                         unroll, acts)
            hs_b, fin_b = scan_reference(bwd, project_inputs(bwd, hs), length, _state(bwd, None, hs), True,
                                         unroll, acts)
            hs = jnp.concatenate([hs_f, hs_b], axis=-1)
            finals.append((fin_f, fin_b))
        else:
            gx = hs if gates0 else project_inputs(layer, hs)
            hs, fin = scan_reference(layer, gx, length, _state(layer, state, gx), False, unroll, acts)
            finals.append(fin)
    return hs, finals


def lstm_stack(
    layers: Sequence[LayerParams],
    xs: Seq | None,
    length: Length,
    states: Sequence[LSTMState | None] | None = None,
    *,
    first_gates: Gates | None = None,
    steps: int | None = None,
    unroll: int = 1,
    remat: int | None = None,
    out: Callable[[Array], Array] | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    dropout: float = 0.0,
    key: PRNGKey | None = None,
) -> tuple[Array, list]:
    """A stack of layers on one example, on plain scans (the batched face:
    ``jax_lstm_ae.backends.lstm_stack_batched``).

    Args:
      layers: from :func:`init_stack`; a tuple entry is a bidirectional layer.
      xs: [T, F] inputs, or None when ``first_gates`` is given.
      states: optional initial state per layer (forward direction only).
      first_gates: layer 0's input gates, used instead of ``xs @ w_i + b``:
        [T, G] per step, or [G] the same at every step, with ``steps=T``
        (the repeat decoder's ``z @ w_i + b``: a batched backend never
        broadcasts it over T).
      steps: T, needed only with constant ``first_gates``.
      remat: when set to a chunk length K, run the whole stack K steps at a
        time under ``jax.checkpoint``: training keeps only the layers' carries
        at chunk boundaries (plus inputs and the top layer's outputs, or
        ``out``'s results) and recomputes a chunk's inside in the backward
        pass, so the saved activations of the inner layers no longer grow
        with T. Unidirectional stacks only.
      out: ``out(hs[..., H_out]) -> ys[..., K]``, applied to the top layer's
        outputs (a decoder's head). Under ``remat`` it runs inside each
        chunk, so training keeps only ys (K wide) for the backward pass, not
        the top layer's outputs (H_out wide).
      activation, recurrent_activation: the cell's non-linearities, Keras's
        names and semantics (``kernels.cell.ACTIVATIONS``; default tanh, sigmoid).
        The fused backends implement only the default pair: with any other,
        every backend runs the plain scans (correct, not fused).
      dropout, key: as ``nn.LSTM(dropout=)``: with a key, each layer's outputs
        but the last are zeroed with probability ``dropout`` and the rest
        scaled by 1 / (1 - dropout) before the next layer reads them (a
        training-time regulariser; without a key nothing is dropped). Mask
        of layer l: ``bernoulli(split(key, L - 1)[l], 1 - dropout, hs.shape)``.
    Returns:
      ``hs[T, H_out]`` of the top layer (``out(hs)`` [T, K] with ``out``) and
      the list of final states, one per layer (a ``(fwd, bwd)`` pair for a
      bidirectional layer).
    """
    states = list(states) if states is not None else [None] * len(layers)
    first, inp = first_input(layers, xs, first_gates, batched=False)
    steps = stack_steps(first, inp, steps, batched=False)
    acts = check_activations(activation, recurrent_activation)
    if dropping(dropout, key, len(layers), remat):
        def one_layer(layer, xs_, gates_, state, last):
            return lstm_stack([layer], xs_, length, [state], first_gates=gates_, steps=steps, unroll=unroll,
                              out=out if last else None, activation=activation,
                              recurrent_activation=recurrent_activation)

        keys = jax.random.split(key, len(layers) - 1)
        return layerwise_dropout(one_layer, layers, xs, first_gates, states, float(dropout),
                                 lambda i, shape: jax.random.bernoulli(keys[i], 1.0 - dropout, shape))
    with jax.named_scope("lstm_stack"):
        if remat is not None:
            return remat_stack(layers, inp, first, steps, length, states, unroll, int(remat), out, acts)
        hs, finals = stack_reference(layers, first, inp, length, states, steps, unroll, acts)
        return (hs if out is None else out(hs)), finals


def first_input(layers, xs, first_gates, *, batched: bool) -> tuple[FirstInput, Array]:
    """What layer 0 reads: ("xs", xs[(B,) T, F]), ("gates", gx[(B,) T, G]) or ("const", gx[(B,) G])."""
    name = "lstm_stack_batched" if batched else "lstm_stack"
    lead = 1 if batched else 0
    if first_gates is None:
        if xs is None:
            raise ValueError(f"{name} needs xs of shape {'(B, T, F)' if batched else '(T, F)'} or first_gates")
        if xs.ndim != 2 + lead:
            raise ValueError(f"{name} expects xs of shape {'(B, T, F)' if batched else '(T, F)'}, got {xs.shape}")
        return "xs", xs
    if xs is not None:
        raise ValueError(f"{name} takes xs or first_gates, not both")
    if not isinstance(layers[0], LSTMParams):
        raise ValueError("first_gates replace one direction's input projection; "
                         "a bidirectional first layer needs xs")
    if first_gates.ndim not in (1 + lead, 2 + lead):
        want = "(B, T, G) or (B, G)" if batched else "(T, G) or (G,)"
        raise ValueError(f"first_gates must be {want}, got shape {first_gates.shape}")
    return ("gates" if first_gates.ndim == 2 + lead else "const"), first_gates


def stack_steps(first, inp, steps, *, batched: bool) -> int:
    """T: from the inputs, or ``steps`` for constant first gates."""
    if first == "const":
        if steps is None:
            raise ValueError("constant first_gates (the same gates at every step) need steps=T")
        return int(steps)
    return int(inp.shape[1 if batched else 0])


# ------------------------------------------------------------------ remat and dropout
def remat_stack(layers, inp, first, t_steps, length, states, unroll, chunk, out=None, acts=DEFAULT_ACTIVATIONS):
    """The per-example stack under ``remat`` (see :func:`lstm_stack`)."""
    check_remat(layers, chunk)
    n_chunks = -(-t_steps // chunk)
    states = [zero_state(layer.w_h.shape[0], inp.dtype) if s is None else s for layer, s in zip(layers, states)]
    if first == "const":  # the same gates in every chunk: nothing to cut
        parts = None
    else:  # padding steps past T are masked like any padding: they never touch the state
        seq = jnp.pad(inp, ((0, n_chunks * chunk - t_steps), (0, 0)))
        parts = seq.reshape(n_chunks, chunk, inp.shape[1])

    @partial(jax.checkpoint, prevent_cse=False)
    def body(carry, step):
        part, start = step
        # length - start may be <= 0: a chunk wholly past the end only carries.
        sub_len = jnp.clip(length - start, 0, chunk)
        hs, fins = stack_reference(layers, first, inp if first == "const" else part, sub_len, carry, chunk, unroll,
                                   acts)
        return fins, (hs if out is None else out(hs))

    finals, hs = lax.scan(body, states, (parts, jnp.arange(n_chunks) * chunk))
    return hs.reshape(n_chunks * chunk, -1)[:t_steps], finals


def check_remat(layers, chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"remat is a chunk length in steps and must be >= 1, got {chunk}")
    if not all(isinstance(layer, LSTMParams) for layer in layers):
        raise ValueError("remat runs a stack chunk by chunk forward in time; it does not support bidirectional layers")


def dropping(dropout: float, key, n_layers: int, remat) -> bool:
    """Whether inter-layer dropout applies (checks the rate)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a probability in [0, 1), got {dropout}")
    if dropout == 0.0 or key is None or n_layers < 2:
        return False
    if remat is not None:
        raise ValueError("dropout between layers and remat cannot be combined; use one of them")
    return True


def layerwise_dropout(one_layer, layers, xs, first_gates, states, rate: float, mask) -> tuple[Array, list]:
    """Run a stack layer by layer, dropping the outputs between layers
    (``mask(l, shape)`` -> keep[shape]); the top layer's outputs are kept."""
    x, gates, finals = xs, first_gates, []
    for i, (layer, state) in enumerate(zip(layers, states)):
        last = i == len(layers) - 1
        hs, (fin,) = one_layer(layer, x, gates, state, last)
        finals.append(fin)
        if not last:
            hs = jnp.where(mask(i, hs.shape), hs / (1.0 - rate), 0.0)
        x, gates = hs, None
    return hs, finals


# ------------------------------------------------------------------ batched
def zeros_state(layer: LayerParams, batch: int, dtype) -> LSTMState:
    """A zero ``(h[B, H], c[B, H])`` for a layer's forward direction."""
    fwd = layer if isinstance(layer, LSTMParams) else layer[0]
    z = jnp.zeros((batch, fwd.w_h.shape[0]), dtype)
    return LSTMState(z, z)


def stack_reference_batched(layers, inp, lengths, states, *, first, steps, unroll=1, acts=DEFAULT_ACTIVATIONS):
    """The "reference" backend's batched stack: ``jax.vmap`` of the per-example stack."""
    states = [zeros_state(layer, lengths.shape[0], inp.dtype) if s is None else s
              for layer, s in zip(layers, states)]

    def one(x, n, st):
        return stack_reference(layers, first, x, n, st, steps, unroll, acts)

    return jax.vmap(one)(inp, lengths, states)
