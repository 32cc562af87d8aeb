"""LSTM layers over time: per example (the specification) and batched (the fast path).

The input projection ``xs @ w_i + b`` is one [T, F] x [F, G] matmul done
before ``lax.scan``; the scan body only does ``h @ w_h`` and the gate maths.

Lengths: an example holds ``length`` valid steps (0 <= length <= T), the rest
is padding. A step at or past ``length`` keeps the carry unchanged and emits
zeros, so whatever the padding holds never reaches the state or the outputs.
With ``reverse=True`` the scan runs from T-1 down to 0; the padded steps come
first and are skipped, so the backward direction starts at step length-1.

Two faces, the same semantics:

- per example: :func:`lstm_layer`, :func:`scan_gates`, :func:`lstm_stack`
  (xs[T, F], length[]) -- plain ``lax.scan`` code, differentiated by JAX: the
  specification every backend is tested against. With ``backend=`` other than
  "reference" they run that backend on a batch of one.
- batched: :func:`lstm_stack_batched` (xs[B, T, F], lengths[B]) -- what the
  encoder and decoders call. It hands the whole batch to the backend's stack
  function (one GEMM per step for all B rows, the backend's own VJP); for the
  "reference" backend it is ``jax.vmap`` of the per-example stack.

Backends: a closed set of names (:data:`Backend`), checked when a model is
built and resolved by :func:`resolve_backend` when the model is traced (so
building a model never starts a JAX runtime):

| name          | what runs                                                    |
| ------------- | ------------------------------------------------------------ |
| "reference"   | ``jax.vmap`` of the per-example scan                         |
| "fast"        | ``backends.fast``: batched, time-major stacks with a custom  |
|               | VJP (weight gradients as one GEMM after the backward scan)   |
| "pallas"      | ``backends.pallas``: a fused Triton kernel per layer (GPU;   |
|               | Pallas interpret mode elsewhere)                              |
| "pallas_bf16" | the same with bf16 recurrent matmuls, float32 state          |
| "cudnn"       | ``backends.cudnn``: cuDNN's fused LSTM (GPU)                 |
| "auto"        | "fast" on CPU, "cudnn" on GPU, "fast" elsewhere              |

Options per backend: ``unroll`` (the ``lax.scan`` unroll factor) is used by
"reference" and "fast"; the fused kernels ignore it. A backend module loads
only when its backend is first traced.

The batched stack contract (:class:`StackFn`), met by every backend:

    stack(layers, inp, lengths[B], states, *, first, steps)
        -> (hs[B, T, H_out], finals)

``inp`` is xs[B, T, F] (``first="xs"``), layer 0's input gates gx[B, T, G]
("gates") or gx[B, G], the same at every one of the T = ``steps`` steps
("const": the repeat decoder's ``z @ w_i + b``, never broadcast over T);
``states`` one initial ``LSTMState`` of [B, H] arrays or None per layer
(forward direction). ``finals`` hold one ``LSTMState`` per layer, a
``(fwd, bwd)`` pair for a bidirectional layer: the carry after the last valid
step (the first valid one for the backward direction). Lengths lie in [0, T]
(0 occurs under ``remat`` for a chunk wholly past an example's end, and for
empty sequences: the carry passes through). It is differentiable in the
layers, ``inp`` and ``states``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal, Protocol, Sequence, get_args

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae.nn.cell import (
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
from jax_lstm_ae._typing import Array, Gates, Length, PRNGKey, Seq

__all__ = [
    "BACKENDS",
    "Backend",
    "LayerParams",
    "StackFn",
    "check_backend",
    "init_stack",
    "lstm_layer",
    "lstm_stack",
    "lstm_stack_batched",
    "project_inputs",
    "resolve_backend",
    "reverse_valid",
    "scan_gates",
    "stack_function",
    "stack_output_size",
]

# ------------------------------------------------------------------ backends
Backend = Literal["auto", "reference", "fast", "pallas", "pallas_bf16", "cudnn"]
BACKENDS: tuple[str, ...] = get_args(Backend)
FirstInput = Literal["xs", "gates", "const"]
# The fastest correct backend per platform, measured in bench/throughput.py
# (CPU) and planned in notes/gpu.md (GPU); other platforms get "fast".
_AUTO = {"cpu": "fast", "gpu": "cudnn"}


class StackFn(Protocol):
    """A backend's batched stack (contract in the module doc)."""

    def __call__(
        self, layers: Sequence[LayerParams], inp: Array, lengths: Array, states: Sequence[LSTMState | None],
        *, first: FirstInput, steps: int,
    ) -> tuple[Array, list]: ...


def check_backend(name: str) -> str:
    """Check a backend name without touching any device (factories call this)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown LSTM backend {name!r}; choose one of {BACKENDS}")
    return name


def resolve_backend(name: str, platform: str | None = None) -> str:
    """A concrete backend for ``name``: "auto" becomes the best one for
    ``platform`` (default: JAX's default backend, looked up only for "auto",
    at trace time)."""
    check_backend(name)
    if name != "auto":
        return name
    return _AUTO.get(platform if platform is not None else jax.default_backend(), "fast")


def stack_function(backend: str, *, unroll: int = 1) -> StackFn:
    """The batched stack function of a concrete backend (loads its module)."""
    match resolve_backend(backend):
        case "reference":
            return partial(_reference_stack, unroll=int(unroll))
        case "fast":
            from jax_lstm_ae.backends import fast  # loaded when first chosen

            return partial(fast.stack_fast, unroll=int(unroll))
        case "pallas" | "pallas_bf16" as name:
            from jax_lstm_ae.backends import pallas  # Triton lowering: loaded only when chosen

            return pallas.stack_function(bf16=name == "pallas_bf16")
        case "cudnn":
            from jax_lstm_ae.backends import cudnn  # jax.experimental.rnn: loaded only when chosen

            return cudnn.stack_function()
    raise AssertionError("unreachable: resolve_backend returns a concrete name")


# ------------------------------------------------------------------ per example
def project_inputs(params: LSTMParams, xs: Seq) -> Gates:
    """[T, F] -> [T, G]: the part of the gates that does not depend on h."""
    return dense(xs, params.w_i, params.b)


def _reference_scan(params, gates_x, length, state, reverse, unroll, acts=DEFAULT_ACTIVATIONS):
    t_steps = gates_x.shape[0]

    def body(carry: LSTMState, inp):
        gx, t = inp
        new, h = lstm_step(params, carry, gx, acts)
        valid = t < length
        carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, carry)
        return carry, jnp.where(valid, h, jnp.zeros_like(h))

    final, hs = lax.scan(body, state, (gates_x, jnp.arange(t_steps)), reverse=reverse, unroll=unroll)
    return hs, final


def _one(x):
    return None if x is None else jnp.asarray(x)[None]


def _unbatch(tree):
    return jax.tree.map(lambda a: a[0], tree)


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
    backend: str = "reference",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, LSTMState]:
    """Run the recurrence over precomputed input gates, on one example.

    Args:
      gates_x: [T, G] input projections.
      length: [] number of valid steps.
      state: initial ``(h[H], c[H])``; zeros when None.
      backend: a name from :data:`BACKENDS`; the default is the plain scan,
        which the other backends are tested against (they run on a batch of one).
      activation, recurrent_activation: Keras's names (``nn.cell.ACTIVATIONS``);
        other than tanh / sigmoid the plain scan runs whatever the backend.
    Returns:
      ``hs[T, H]`` (zeros at padded steps) and the state after the last valid
      step (the first valid one when ``reverse``).
    """
    hidden = params.w_h.shape[0]
    if state is None:
        state = zero_state(hidden, gates_x.dtype)
    acts = check_activations(activation, recurrent_activation)
    with jax.named_scope("lstm_layer"):
        if acts != DEFAULT_ACTIVATIONS or resolve_backend(backend) == "reference":
            return _reference_scan(params, gates_x, length, state, reverse, unroll, acts)
        # On a batch of one, as a stack of one layer fed precomputed gates.
        if not reverse:
            hs, (fin,) = stack_function(backend, unroll=unroll)(
                [params], gates_x[None], _one(length), [LSTMState(_one(state.h), _one(state.c))],
                first="gates", steps=gates_x.shape[0])
            return hs[0], _unbatch(fin)
        return _reverse_via_backend(params, gates_x, length, state, unroll, backend)


def _reverse_via_backend(params, gates_x, length, state, unroll, backend):
    """A reverse layer on a batched backend, on one example: reverse the valid
    steps, run forward, reverse the outputs back (the same recurrence)."""
    hs, fin = scan_gates(params, reverse_valid(gates_x, length), length, state, unroll=unroll, backend=backend)
    return reverse_valid(hs, length), fin


def lstm_layer(
    params: LSTMParams,
    xs: Seq,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    backend: str = "reference",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, LSTMState]:
    """One LSTM layer on one example: xs[T, F] -> (hs[T, H], (h[H], c[H]))."""
    if xs.ndim != 2:
        raise ValueError(f"lstm_layer expects xs of shape (T, F), got {xs.shape}; use jax.vmap for a batch")
    if xs.shape[1] != params.w_i.shape[0]:
        raise ValueError(f"lstm_layer: xs has {xs.shape[1]} features but the layer expects {params.w_i.shape[0]}")
    return scan_gates(params, project_inputs(params, xs), length, state, reverse=reverse, unroll=unroll,
                      backend=backend, activation=activation, recurrent_activation=recurrent_activation)


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


def _stack_reference(layers, first, inp, length, states, steps, unroll, acts=DEFAULT_ACTIVATIONS):
    """The per-example stack, layer by layer, on plain scans."""
    if first == "const":
        inp = jnp.broadcast_to(inp, (steps, inp.shape[0]))
    finals = []
    hs = inp
    for idx, (layer, state) in enumerate(zip(layers, states)):
        gates0 = idx == 0 and first != "xs"
        if not isinstance(layer, LSTMParams):
            fwd, bwd = layer
            hs_f, fin_f = _reference_scan(fwd, project_inputs(fwd, hs), length, _state(fwd, state, hs), False,
                                          unroll, acts)
            hs_b, fin_b = _reference_scan(bwd, project_inputs(bwd, hs), length, _state(bwd, None, hs), True,
                                          unroll, acts)
            hs = jnp.concatenate([hs_f, hs_b], axis=-1)
            finals.append((fin_f, fin_b))
        else:
            gx = hs if gates0 else project_inputs(layer, hs)
            hs, fin = _reference_scan(layer, gx, length, _state(layer, state, gx), False, unroll, acts)
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
    backend: str = "reference",
    remat: int | None = None,
    out: Callable[[Array], Array] | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    dropout: float = 0.0,
    key: PRNGKey | None = None,
) -> tuple[Array, list]:
    """A stack of layers on one example (the batched face: :func:`lstm_stack_batched`).

    Args:
      layers: from :func:`init_stack`; a tuple entry is a bidirectional layer.
      xs: [T, F] inputs, or None when ``first_gates`` is given.
      states: optional initial state per layer (forward direction only).
      first_gates: layer 0's input gates, used instead of ``xs @ w_i + b``:
        [T, G] per step, or [G] the same at every step, with ``steps=T``
        (the repeat decoder's ``z @ w_i + b``: a batched backend never
        broadcasts it over T).
      steps: T, needed only with constant ``first_gates``.
      backend: "reference" (plain scans) or another name from :data:`BACKENDS`,
        which then runs on a batch of one.
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
        names and semantics (``nn.cell.ACTIVATIONS``; default tanh, sigmoid).
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
    first, inp = _first_input(layers, xs, first_gates, batched=False)
    steps = _steps(first, inp, steps, batched=False)
    acts = check_activations(activation, recurrent_activation)
    if _dropping(dropout, key, len(layers), remat):
        def one_layer(layer, xs_, gates_, state, last):
            return lstm_stack([layer], xs_, length, [state], first_gates=gates_, steps=steps, unroll=unroll,
                              backend=backend, out=out if last else None, activation=activation,
                              recurrent_activation=recurrent_activation)

        keys = jax.random.split(key, len(layers) - 1)
        return _layerwise_dropout(one_layer, layers, xs, first_gates, states, float(dropout),
                                  lambda i, shape: jax.random.bernoulli(keys[i], 1.0 - dropout, shape))
    if acts == DEFAULT_ACTIVATIONS and resolve_backend(backend) != "reference":
        batch_states = [None if s is None else LSTMState(_one(s.h), _one(s.c)) for s in states]
        xs_b, gates_b = (inp[None], None) if first == "xs" else (None, inp[None])
        hs, finals = lstm_stack_batched(layers, xs_b, _one(length), batch_states, first_gates=gates_b, steps=steps,
                                        unroll=unroll, backend=backend, remat=remat, out=out)
        return hs[0], _unbatch(finals)
    with jax.named_scope("lstm_stack"):
        if remat is not None:
            return _remat_stack(layers, inp, first, steps, length, states, unroll, int(remat), out, acts)
        hs, finals = _stack_reference(layers, first, inp, length, states, steps, unroll, acts)
        return (hs if out is None else out(hs)), finals


def _first_input(layers, xs, first_gates, *, batched: bool) -> tuple[FirstInput, Array]:
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


def _steps(first, inp, steps, *, batched: bool) -> int:
    if first == "const":
        if steps is None:
            raise ValueError("constant first_gates (the same gates at every step) need steps=T")
        return int(steps)
    return int(inp.shape[1 if batched else 0])


def _remat_stack(layers, inp, first, t_steps, length, states, unroll, chunk, out=None, acts=DEFAULT_ACTIVATIONS):
    """The per-example stack under ``remat`` (see :func:`lstm_stack`)."""
    _check_remat(layers, chunk)
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
        hs, fins = _stack_reference(layers, first, inp if first == "const" else part, sub_len, carry, chunk, unroll,
                                    acts)
        return fins, (hs if out is None else out(hs))

    finals, hs = lax.scan(body, states, (parts, jnp.arange(n_chunks) * chunk))
    return hs.reshape(n_chunks * chunk, -1)[:t_steps], finals


def _check_remat(layers, chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"remat is a chunk length in steps and must be >= 1, got {chunk}")
    if not all(isinstance(layer, LSTMParams) for layer in layers):
        raise ValueError("remat runs a stack chunk by chunk forward in time; it does not support bidirectional layers")


# ------------------------------------------------------------------ batched
def _reference_stack(layers, inp, lengths, states, *, first, steps, unroll=1, acts=DEFAULT_ACTIVATIONS):
    """The "reference" backend's batched stack: ``jax.vmap`` of the per-example stack."""
    states = [_zeros_state(layer, lengths.shape[0], inp.dtype) if s is None else s
              for layer, s in zip(layers, states)]

    def one(x, n, st):
        return _stack_reference(layers, first, x, n, st, steps, unroll, acts)

    return jax.vmap(one)(inp, lengths, states)


def _zeros_state(layer: LayerParams, batch: int, dtype) -> LSTMState:
    fwd = layer if isinstance(layer, LSTMParams) else layer[0]
    z = jnp.zeros((batch, fwd.w_h.shape[0]), dtype)
    return LSTMState(z, z)


def lstm_stack_batched(
    layers: Sequence[LayerParams],
    xs: Array | None,
    lengths: Array,
    states: Sequence[LSTMState | None] | None = None,
    *,
    first_gates: Array | None = None,
    steps: int | None = None,
    unroll: int = 1,
    backend: str = "reference",
    remat: int | None = None,
    out: Callable[[Array], Array] | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    dropout: float = 0.0,
    keys: Array | None = None,
) -> tuple[Array, list]:
    """A stack on a batch: xs[B, T, F] (or first_gates [B, T, G] / [B, G]),
    lengths[B], states of [B, H] -> (hs[B, T, H_out] or out(hs), finals).

    The same arguments and semantics as :func:`lstm_stack`, with a leading
    batch axis; equal to ``jax.vmap`` of it (tested for every backend). The
    backend is resolved here, at trace time, and gets the whole batch.
    ``keys`` [B]: one PRNG key per example for ``dropout`` (each row's mask
    is the one :func:`lstm_stack` draws from that key)."""
    states = list(states) if states is not None else [None] * len(layers)
    first, inp = _first_input(layers, xs, first_gates, batched=True)
    steps = _steps(first, inp, steps, batched=True)
    lengths = jnp.asarray(lengths, jnp.int32)
    acts = check_activations(activation, recurrent_activation)
    if _dropping(dropout, keys, len(layers), remat):
        def one_layer(layer, xs_, gates_, state, last):
            return lstm_stack_batched([layer], xs_, lengths, [state], first_gates=gates_, steps=steps, unroll=unroll,
                                      backend=backend, out=out if last else None, activation=activation,
                                      recurrent_activation=recurrent_activation)

        split = jax.vmap(lambda k: jax.random.split(k, len(layers) - 1))(keys)  # [B, L - 1] keys

        def mask(i, shape):
            return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - dropout, shape[1:]))(split[:, i])

        return _layerwise_dropout(one_layer, layers, xs, first_gates, states, float(dropout), mask)
    # The fused backends hard-code tanh / sigmoid: other cells run the plain scans.
    backend = resolve_backend(backend) if acts == DEFAULT_ACTIVATIONS else "reference"
    with jax.named_scope(f"lstm_stack_{backend}"):
        if remat is not None and backend == "reference":
            return jax.vmap(lambda x, n, st: _remat_stack(layers, x, first, steps, n, st, unroll, int(remat), out,
                                                          acts))(
                inp, lengths, [_zeros_state(layer, lengths.shape[0], inp.dtype) if s is None else s
                               for layer, s in zip(layers, states)])
        fn = partial(_reference_stack, unroll=int(unroll), acts=acts) if backend == "reference" else \
            stack_function(backend, unroll=unroll)
        if remat is not None:
            return _remat_batched(fn, layers, inp, first, steps, lengths, states, int(remat), out)
        hs, finals = fn(layers, inp, lengths, states, first=first, steps=steps)
        return (hs if out is None else out(hs)), finals


def _dropping(dropout: float, key, n_layers: int, remat) -> bool:
    """Whether inter-layer dropout applies (checks the rate)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a probability in [0, 1), got {dropout}")
    if dropout == 0.0 or key is None or n_layers < 2:
        return False
    if remat is not None:
        raise ValueError("dropout between layers and remat cannot be combined; use one of them")
    return True


def _layerwise_dropout(one_layer, layers, xs, first_gates, states, rate: float, mask) -> tuple[Array, list]:
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


def _remat_batched(fn: StackFn, layers, inp, first, t_steps, lengths, states, chunk, out):
    """``remat`` around a batched stack function: chunks of ``chunk`` steps
    under ``jax.checkpoint`` (the per-example twin is :func:`_remat_stack`)."""
    _check_remat(layers, chunk)
    batch = lengths.shape[0]
    n_chunks = -(-t_steps // chunk)
    states = [_zeros_state(layer, batch, inp.dtype) if s is None else s for layer, s in zip(layers, states)]
    if first == "const":
        parts = None
    else:
        seq = jnp.pad(inp, ((0, 0), (0, n_chunks * chunk - t_steps), (0, 0)))
        parts = jnp.swapaxes(seq.reshape(batch, n_chunks, chunk, inp.shape[-1]), 0, 1)  # [n, B, chunk, .]

    @partial(jax.checkpoint, prevent_cse=False)
    def body(carry, step):
        part, start = step
        sub_len = jnp.clip(lengths - start, 0, chunk)
        hs, fins = fn(layers, inp if first == "const" else part, sub_len, carry, first=first, steps=chunk)
        return fins, (hs if out is None else out(hs))

    finals, hs = lax.scan(body, states, (parts, jnp.arange(n_chunks) * chunk))
    hs = jnp.swapaxes(hs, 0, 1).reshape(batch, n_chunks * chunk, -1)
    return hs[:, :t_steps], finals
