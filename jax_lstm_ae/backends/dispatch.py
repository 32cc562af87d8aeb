"""Which backend runs an LSTM stack, picked in one place, and the batched stack on it.

The per-example stack in ``jax_lstm_ae.kernels.reference`` is the
specification; :func:`lstm_stack_batched` (xs[B, T, F], lengths[B]) is what
the encoder and decoders call. It hands the whole batch to the backend's
stack function (one GEMM per step for all B rows, the backend's own VJP); for
the "reference" backend it is ``jax.vmap`` of the per-example stack. The
per-example :func:`lstm_stack`, :func:`lstm_layer` and :func:`scan_gates`
here take a ``backend=`` too: other than "reference" they run that backend on
a batch of one.

Backends: a closed set (:class:`Backend`), checked when a model is built and
resolved by :func:`resolve_backend` when the model is traced (so building a
model never starts a JAX runtime):

| name          | what runs                                                    |
| ------------- | ------------------------------------------------------------ |
| "reference"   | ``jax.vmap`` of the per-example scan (``kernels.reference``) |
| "fast"        | ``kernels.fast``: batched, time-major stacks with a custom   |
|               | VJP (weight gradients as one GEMM after the backward scan)   |
| "fast_bf16"   | the same with bf16 operands and float32 sums in every matmul |
|               | (forward and backward), float32 parameters, state and gates  |
| "pallas"      | ``kernels.pallas``: a fused Triton kernel per layer (GPU;    |
|               | Pallas interpret mode elsewhere)                              |
| "pallas_bf16" | the same with bf16 recurrent matmuls, float32 state          |
| "cudnn"       | ``kernels.cudnn``: cuDNN's fused LSTM (GPU)                  |
| "auto"        | "fast" on CPU, "cudnn" on GPU, "fast" elsewhere              |

Options per backend: ``unroll`` (the ``lax.scan`` unroll factor) is used by
"reference", "fast" and "fast_bf16"; the fused kernels ignore it. A kernel
module loads only when its backend is first traced (inside
:func:`stack_function`).

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

import enum
from functools import partial
from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae._typing import Array, Gates, Length, PRNGKey, Seq
from jax_lstm_ae.kernels import reference
from jax_lstm_ae.kernels.cell import (
    DEFAULT_ACTIVATIONS,
    LayerParams,
    LSTMParams,
    LSTMState,
    check_activations,
    zero_state,
)
from jax_lstm_ae.kernels.reference import FirstInput

__all__ = [
    "BACKENDS",
    "Backend",
    "StackFn",
    "check_backend",
    "lstm_layer",
    "lstm_stack",
    "lstm_stack_batched",
    "resolve_backend",
    "scan_gates",
    "stack_function",
]


class Backend(str, enum.Enum):
    """The LSTM backends (module doc). A ``str`` mixin: ``Backend.FAST == "fast"``."""

    AUTO = "auto"
    REFERENCE = "reference"
    FAST = "fast"
    FAST_BF16 = "fast_bf16"
    PALLAS = "pallas"
    PALLAS_BF16 = "pallas_bf16"
    CUDNN = "cudnn"


# The names as plain strings (what specs, config.json and older callers use).
BACKENDS: tuple[str, ...] = tuple(b.value for b in Backend)
# The fastest correct backend per platform, measured in bench/throughput.py
# (CPU) and planned in notes/gpu.md (GPU); other platforms get "fast".
_AUTO = {"cpu": Backend.FAST, "gpu": Backend.CUDNN}


class StackFn(Protocol):
    """A backend's batched stack (contract in the module doc)."""

    def __call__(
        self, layers: Sequence[LayerParams], inp: Array, lengths: Array, states: Sequence[LSTMState | None],
        *, first: FirstInput, steps: int,
    ) -> tuple[Array, list]: ...


def _backend(name: str | Backend) -> Backend:
    try:
        return Backend(name)
    except ValueError:
        raise ValueError(f"unknown LSTM backend {name!r}; choose one of {BACKENDS}") from None


def check_backend(name: str | Backend) -> str:
    """Check a backend name without touching any device (factories call this).

    Returns the plain string value, so a spec or config stores (and hashes)
    the same as before backends were an Enum."""
    return _backend(name).value


def resolve_backend(name: str | Backend, platform: str | None = None) -> str:
    """A concrete backend for ``name``: "auto" becomes the best one for
    ``platform`` (default: JAX's default backend, looked up only for "auto",
    at trace time). Returns the plain string value."""
    match _backend(name):
        case Backend.AUTO:
            return _AUTO.get(platform if platform is not None else jax.default_backend(), Backend.FAST).value
        case concrete:
            return concrete.value


def stack_function(backend: str | Backend, *, unroll: int = 1) -> StackFn:
    """The batched stack function of a concrete backend (loads its kernel module)."""
    match Backend(resolve_backend(backend)):
        case Backend.REFERENCE:
            return partial(reference.stack_reference_batched, unroll=int(unroll))
        case Backend.FAST | Backend.FAST_BF16 as name:
            from jax_lstm_ae.kernels import fast  # loaded when first chosen

            mm = jnp.bfloat16 if name == Backend.FAST_BF16 else jnp.float32
            return partial(fast.stack_fast, unroll=int(unroll), matmul_dtype=mm)
        case Backend.PALLAS | Backend.PALLAS_BF16 as name:
            from jax_lstm_ae.kernels import pallas  # Triton lowering: loaded only when chosen

            return pallas.stack_function(bf16=name == Backend.PALLAS_BF16)
        case Backend.CUDNN:
            from jax_lstm_ae.kernels import cudnn  # jax.experimental.rnn: loaded only when chosen

            return cudnn.stack_function()
    raise AssertionError("unreachable: resolve_backend returns a concrete name")


# ------------------------------------------------------------------ batched
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
    first, inp = reference.first_input(layers, xs, first_gates, batched=True)
    steps = reference.stack_steps(first, inp, steps, batched=True)
    lengths = jnp.asarray(lengths, jnp.int32)
    acts = check_activations(activation, recurrent_activation)
    if reference.dropping(dropout, keys, len(layers), remat):
        def one_layer(layer, xs_, gates_, state, last):
            return lstm_stack_batched([layer], xs_, lengths, [state], first_gates=gates_, steps=steps, unroll=unroll,
                                      backend=backend, out=out if last else None, activation=activation,
                                      recurrent_activation=recurrent_activation)

        split = jax.vmap(lambda k: jax.random.split(k, len(layers) - 1))(keys)  # [B, L - 1] keys

        def mask(i, shape):
            return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - dropout, shape[1:]))(split[:, i])

        return reference.layerwise_dropout(one_layer, layers, xs, first_gates, states, float(dropout), mask)
    # The fused backends hard-code tanh / sigmoid: other cells run the plain scans.
    backend = resolve_backend(backend) if acts == DEFAULT_ACTIVATIONS else Backend.REFERENCE.value
    with jax.named_scope(f"lstm_stack_{backend}"):
        if remat is not None and backend == Backend.REFERENCE:
            return jax.vmap(lambda x, n, st: reference.remat_stack(layers, x, first, steps, n, st, unroll, int(remat),
                                                                   out, acts))(
                inp, lengths, [reference.zeros_state(layer, lengths.shape[0], inp.dtype) if s is None else s
                               for layer, s in zip(layers, states)])
        fn = partial(reference.stack_reference_batched, unroll=int(unroll), acts=acts) \
            if backend == Backend.REFERENCE else stack_function(backend, unroll=unroll)
        if remat is not None:
            return _remat_batched(fn, layers, inp, first, steps, lengths, states, int(remat), out)
        hs, finals = fn(layers, inp, lengths, states, first=first, steps=steps)
        return (hs if out is None else out(hs)), finals


def _remat_batched(fn: StackFn, layers, inp, first, t_steps, lengths, states, chunk, out):
    """``remat`` around a batched stack function: chunks of ``chunk`` steps
    under ``jax.checkpoint`` (the per-example twin is ``kernels.reference.remat_stack``)."""
    reference.check_remat(layers, chunk)
    batch = lengths.shape[0]
    n_chunks = -(-t_steps // chunk)
    states = [reference.zeros_state(layer, batch, inp.dtype) if s is None else s for layer, s in zip(layers, states)]
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


# ------------------------------------------------------------------ per example, on any backend
def _one(x):
    return None if x is None else jnp.asarray(x)[None]


def _unbatch(tree):
    return jax.tree.map(lambda a: a[0], tree)


def _plain(backend: str, activation: str, recurrent_activation: str) -> bool:
    """Whether a per-example call runs the plain scans: the "reference"
    backend, or a cell other than tanh / sigmoid (the fused kernels hard-code those)."""
    acts = check_activations(activation, recurrent_activation)
    return acts != DEFAULT_ACTIVATIONS or resolve_backend(backend) == Backend.REFERENCE


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
    """``kernels.reference.scan_gates`` (gates_x[T, G] -> hs[T, H], state) with
    ``backend=``: a name from :data:`BACKENDS`; the default is the plain scan,
    which the other backends are tested against (they run on a batch of one).
    Other than tanh / sigmoid the plain scan runs whatever the backend."""
    if _plain(backend, activation, recurrent_activation):
        return reference.scan_gates(params, gates_x, length, state, reverse=reverse, unroll=unroll,
                                    activation=activation, recurrent_activation=recurrent_activation)
    if state is None:
        state = zero_state(params.w_h.shape[0], gates_x.dtype)
    with jax.named_scope("lstm_layer"):
        if reverse:  # reverse the valid steps, run forward, reverse the outputs back (the same recurrence)
            hs, fin = scan_gates(params, reference.reverse_valid(gates_x, length), length, state, unroll=unroll,
                                 backend=backend)
            return reference.reverse_valid(hs, length), fin
        # On a batch of one, as a stack of one layer fed precomputed gates.
        hs, (fin,) = stack_function(backend, unroll=unroll)(
            [params], gates_x[None], _one(length), [LSTMState(_one(state.h), _one(state.c))],
            first="gates", steps=gates_x.shape[0])
        return hs[0], _unbatch(fin)


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
    """One LSTM layer on one example: xs[T, F] -> (hs[T, H], (h[H], c[H])), on ``backend``."""
    reference.check_layer_input(params, xs)
    return scan_gates(params, reference.project_inputs(params, xs), length, state, reverse=reverse, unroll=unroll,
                      backend=backend, activation=activation, recurrent_activation=recurrent_activation)


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
    """``kernels.reference.lstm_stack`` (a stack on one example; arguments
    there) with ``backend=``: "reference" (plain scans) or another name from
    :data:`BACKENDS`, which then runs on a batch of one (through
    :func:`lstm_stack_batched`)."""
    cell = dict(activation=activation, recurrent_activation=recurrent_activation)
    if _plain(backend, activation, recurrent_activation):
        return reference.lstm_stack(layers, xs, length, states, first_gates=first_gates, steps=steps, unroll=unroll,
                                    remat=remat, out=out, dropout=dropout, key=key, **cell)
    states = list(states) if states is not None else [None] * len(layers)
    first, inp = reference.first_input(layers, xs, first_gates, batched=False)
    steps = reference.stack_steps(first, inp, steps, batched=False)
    if reference.dropping(dropout, key, len(layers), remat):
        def one_layer(layer, xs_, gates_, state, last):
            return lstm_stack([layer], xs_, length, [state], first_gates=gates_, steps=steps, unroll=unroll,
                              backend=backend, out=out if last else None, **cell)

        keys = jax.random.split(key, len(layers) - 1)
        return reference.layerwise_dropout(one_layer, layers, xs, first_gates, states, float(dropout),
                                           lambda i, shape: jax.random.bernoulli(keys[i], 1.0 - dropout, shape))
    batch_states = [None if s is None else LSTMState(_one(s.h), _one(s.c)) for s in states]
    xs_b, gates_b = (inp[None], None) if first == "xs" else (None, inp[None])
    hs, finals = lstm_stack_batched(layers, xs_b, _one(length), batch_states, first_gates=gates_b, steps=steps,
                                    unroll=unroll, backend=backend, remat=remat, out=out)
    return hs[0], _unbatch(finals)
