"""LSTM layers over time, on one example: single layer, stack, bidirectional.

The input projection ``xs @ w_i + b`` is one [T, F] x [F, G] matmul done
before ``lax.scan``; the scan body only does ``h @ w_h`` and the gate maths.

Lengths: an example holds ``length`` valid steps (1 <= length <= T), the rest
is padding. A step at or past ``length`` keeps the carry unchanged and emits
zeros, so whatever the padding holds never reaches the state or the outputs.
With ``reverse=True`` the scan runs from T-1 down to 0; the padded steps come
first and are skipped, so the backward direction starts at step length-1.

Backends: how a layer runs its recurrence is a named *backend*, picked once
by the factories (``backend=`` on :func:`lstm_layer`, :func:`lstm_stack`,
``lstm_encoder`` and every decoder), never switched inside traced code.

| name        | what runs                                                      |
| ----------- | -------------------------------------------------------------- |
| "reference" | the plain per-example ``lax.scan`` below, differentiated by JAX |
| "fast"      | ``_fast``: batched, time-major stacks with a custom VJP        |
|             | (weight gradients as one GEMM after the backward scan); the    |
|             | CPU default                                                    |
| "pallas"    | ``_pallas`` (GPU), registered by that module on import         |
| "pallas_bf16" | ``_pallas`` with bf16 recurrent matmuls, float32 state       |
| "cudnn"     | ``_cudnn`` (GPU), registered by that module on import          |
| "auto"      | the fastest correct one for ``jax.default_backend()``          |

Every non-reference backend is a *batched* function with this contract:

    fn(params: LSTMParams, gates_x[B, T, G], lengths[B], h0[B, H], c0[B, H],
       *, reverse: bool) -> (hs[B, T, H], h_final[B, H], c_final[B, H])

with exactly the per-example semantics above, for lengths in [0, T] (0 occurs
under ``remat``, for a chunk wholly past an example's end: every step is
padding and the carry passes through): ``hs`` is zero on padded steps,
the finals are the carry after the last valid step (the first valid one when
``reverse``). It must be differentiable in ``params``, ``gates_x``, ``h0``
and ``c0`` (``lengths`` is integer). An ``inputs="xs"`` backend (cuDNN) takes
``xs[B, T, F]`` instead of ``gates_x`` and applies ``w_i`` and ``b`` itself;
a layer whose input gates are precomputed (layer 0 of the repeat and
unconditioned decoders) then runs on the "fast" backend. A backend may
accept extra keyword options of the layer (today ``unroll``); the ones its
signature names are passed, the rest are not.

A backend may also register a *stack* function (``register_backend(...,
stack=)``, contract in ``_fast.stack_fast``) that runs a whole stack in one
batched call; :func:`lstm_stack` then uses it instead of ``fn`` layer by
layer (the "fast" backend does, to stay time-major between layers).

The model stays per example and batched with ``jax.vmap``: the layer (or
stack) wraps the batched function in ``jax.custom_batching.custom_vmap``, so a vmapped
call runs ``fn`` once on the whole batch (one GEMM per step, and the
backend's own VJP), and an un-batched call runs it with B = 1. When the
*weights* are batched too (vmap over an ensemble of models), the reference
scan runs instead. A backend module calls :func:`register_backend` at import
time; :func:`get_backend` imports it lazily on first use of its name.
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache, partial
from typing import Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae.nn.cell import Init, LSTMParams, LSTMState, dense, init_lstm, lstm_step, zero_state
from jax_lstm_ae._typing import Array, Gates, Length, PRNGKey, Seq

# One layer of a stack: a single direction, or (forward, backward).
LayerParams = LSTMParams | tuple[LSTMParams, LSTMParams]

# ------------------------------------------------------------------ backends
# The one place that names backends. A module listed here registers its
# function(s) with register_backend when imported.
_BACKEND_MODULES = {
    "fast": "jax_lstm_ae.backends.fast",
    "pallas": "jax_lstm_ae.backends.pallas",
    "pallas_bf16": "jax_lstm_ae.backends.pallas",  # bf16 recurrent matmuls, float32 state
    "cudnn": "jax_lstm_ae.backends.cudnn",
}
BACKENDS = ("auto", "reference", *_BACKEND_MODULES)
# The fastest correct backend per platform (``jax.default_backend()``),
# measured in bench/throughput.py; platforms not listed get "fast".
# GPU: cuDNN (jax.experimental.rnn), the path that brought JAX LSTMs to
# PyTorch's speed in MLCommons; not yet measured here (notes/gpu.md).
_AUTO = {"cpu": "fast", "gpu": "cudnn"}
BackendInputs = Literal["gates", "xs"]


class Backend(NamedTuple):
    """A registered batched layer function (contract in the module doc)."""

    name: str
    fn: Callable[..., tuple[Array, Array, Array]]
    inputs: BackendInputs  # "gates": fn takes gates_x[B,T,G]; "xs": xs[B,T,F]
    options: frozenset[str]  # extra keyword options fn accepts (e.g. "unroll")
    stack: Callable[..., tuple[Array, list]] | None = None  # optional batched whole-stack function


_REGISTRY: dict[str, Backend] = {}
_LAYER_OPTIONS = ("unroll",)


def register_backend(name: str, fn: Callable, *, inputs: BackendInputs = "gates", stack: Callable | None = None) -> None:
    """Register ``fn`` as backend ``name`` (called by the backend's module on import).

    ``stack``, optional, runs a whole unidirectional-or-bidirectional stack at
    once (contract: ``_fast.stack_fast``); ``lstm_stack`` then calls it instead
    of ``fn`` layer by layer."""
    if inputs not in ("gates", "xs"):
        raise ValueError(f"register_backend: inputs must be 'gates' or 'xs', got {inputs!r}")
    if name in ("auto", "reference"):
        raise ValueError(f"backend name {name!r} is reserved; pick another name")
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    options = frozenset(o for o in _LAYER_OPTIONS if takes_all or o in params)
    _REGISTRY[name] = Backend(name, fn, inputs, options, stack)
    _per_example.cache_clear()
    _stack_per_example.cache_clear()


def resolve_backend(name: str) -> str:
    """Check a backend name and turn ``"auto"`` into a concrete one."""
    if name == "auto":
        name = _AUTO.get(jax.default_backend(), "fast")
    if name not in BACKENDS:
        raise ValueError(f"unknown LSTM backend {name!r}; choose one of {BACKENDS}")
    return name


def get_backend(name: str) -> Backend:
    """The registered :class:`Backend` for ``name`` (imports its module once)."""
    name = resolve_backend(name)
    if name == "reference":
        raise ValueError("the 'reference' backend is the plain per-example scan and has no batched function")
    if name not in _REGISTRY:
        try:
            importlib.import_module(_BACKEND_MODULES[name])
        except ImportError as err:
            raise ValueError(
                f"LSTM backend {name!r} is not available here ({err}); use backend='auto' or 'reference'"
            ) from err
        if name not in _REGISTRY:
            raise ValueError(f"module {_BACKEND_MODULES[name]} did not register backend {name!r}")
    return _REGISTRY[name]


def project_inputs(params: LSTMParams, xs: Seq) -> Gates:
    """[T, F] -> [T, G]: the part of the gates that does not depend on h."""
    return dense(xs, params.w_i, params.b)


def scan_gates(
    params: LSTMParams,
    gates_x: Gates,
    length: Length,
    state: LSTMState | None = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    backend: str = "reference",
) -> tuple[Array, LSTMState]:
    """Run the recurrence over precomputed input gates.

    Args:
      gates_x: [T, G] input projections.
      length: [] number of valid steps.
      state: initial ``(h[H], c[H])``; zeros when None.
      backend: a name from :data:`BACKENDS` (module doc); the default is the
        plain scan, which the other backends are tested against.
    Returns:
      ``hs[T, H]`` (zeros at padded steps) and the state after the last valid
      step (the first valid one when ``reverse``).
    """
    hidden = params.w_h.shape[0]
    if state is None:
        state = zero_state(hidden, gates_x.dtype)
    backend = resolve_backend(backend)
    if backend != "reference":
        be = get_backend(backend)
        if be.inputs == "xs":
            be = get_backend("fast")
        hs, h, c = _per_example(be.name, reverse, unroll)(params, gates_x, length, state.h, state.c)
        return hs, LSTMState(h, c)
    return _reference_scan(params, gates_x, length, state, reverse, unroll)


@lru_cache(maxsize=None)
def _per_example(name: str, reverse: bool, unroll: int) -> Callable:
    """The per-example face of a batched backend: ``(params, inp[T, .],
    length, h0[H], c0[H]) -> (hs[T, H], h[H], c[H])``, where ``inp`` is
    gates_x or xs as the backend takes; under ``jax.vmap`` it runs the backend
    once on the whole batch."""
    be = _REGISTRY[name]
    opts = {"unroll": unroll} if "unroll" in be.options else {}

    def batched(params, inp, lengths, h0, c0):
        return be.fn(params, inp, lengths, h0, c0, reverse=reverse, **opts)

    def reference(params, inp, length, h0, c0):
        gx = project_inputs(params, inp) if be.inputs == "xs" else inp
        hs, fin = _reference_scan(params, gx, length, LSTMState(h0, c0), reverse, unroll)
        return hs, fin.h, fin.c

    return _batch_dispatch(batched, reference)


@lru_cache(maxsize=None)
def _stack_per_example(name: str, first: str, steps: int, unroll: int) -> Callable:
    """The per-example face of a backend's whole-stack function:
    ``(layers, inp, length, states) -> (hs[T, H_out], finals)`` with ``inp``
    xs[T, F], gates[T, G] or constant gates[G] as ``first`` says."""
    stack_fn = _REGISTRY[name].stack

    def batched(layers, inp, lengths, states):
        return stack_fn(layers, inp, lengths, states, first=first, steps=steps, unroll=unroll)

    def reference(layers, inp, length, states):
        xs, gates = (inp, None) if first == "xs" else (None, inp)
        return lstm_stack(layers, xs, length, states, first_gates=gates, steps=steps, unroll=unroll,
                          backend="reference")

    return _batch_dispatch(batched, reference)


def _batch_dispatch(batched: Callable, reference: Callable) -> Callable:
    """A per-example function ``f(params, *per_example)`` that runs
    ``batched(params, *batch)`` once on the whole batch under ``jax.vmap``,
    and with B = 1 otherwise (see :func:`_vmapped_here`). ``reference(params,
    *per_example)`` serves a vmap over the weights too (an ensemble), where
    there is no shared GEMM to gain."""

    def alone(params, *rest):
        out = batched(params, *jax.tree.map(lambda x: jnp.asarray(x)[None], rest))
        return jax.tree.map(lambda x: x[0], out)

    one = jax.custom_batching.custom_vmap(alone)

    @one.def_vmap
    def _rule(axis_size, in_batched, params, *rest):
        p_b, *rest_b = in_batched
        # Broadcast what the vmap left unbatched: one batched call serves all.
        rest = jax.tree.map(
            lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))), list(rest), list(rest_b)
        )
        if any(jax.tree.leaves(p_b)):
            p_axes = jax.tree.map(lambda b: 0 if b else None, p_b)
            out = jax.vmap(reference, in_axes=(p_axes, *[0] * len(rest)))(params, *rest)
        else:
            out = batched(params, *rest)
        return out, jax.tree.map(lambda _: True, out)

    def dispatch(params, *rest):
        args = (params, *rest)
        return one(*args) if _vmapped_here(args) else alone(*args)

    return dispatch


def _vmapped_here(args) -> bool:
    """True when the innermost transformation is a ``jax.vmap`` over some of args.

    ``custom_vmap`` supports neither reverse-mode autodiff of an un-batched
    call nor a vmap applied to the traced jaxpr later, so it is used only when
    the vmap is known to come first (the model's ``grad(vmap(...))``): its
    rule then runs the batched backend, whose VJP sums the weight gradients in
    one GEMM. Everywhere else (a single example, per-example gradients
    ``vmap(grad(...))``, a vmap applied outside a ``jit`` or ``scan``) the
    backend runs on B = 1, which is correct under every transformation.
    Reads JAX's current trace; if that private API moves, the B = 1 path is used.
    """
    try:
        from jax._src import core as jcore
        from jax._src.interpreters import batching

        trace = jcore.unsafe_get_current_trace()
        if not isinstance(trace, batching.BatchTrace):
            return False
        return any(isinstance(x, batching.BatchTracer) and x._trace is trace for x in jax.tree.leaves(args))
    except (ImportError, AttributeError):  # pragma: no cover - depends on JAX internals
        return False


def _run_layer(params, xs, gates_x, length, state, *, reverse, unroll, backend) -> tuple[Array, LSTMState]:
    """One layer from xs[T, F] or precomputed gates_x[T, G] on the given backend."""
    backend = resolve_backend(backend)
    if backend != "reference" and xs is not None and get_backend(backend).inputs == "xs":
        if state is None:
            state = zero_state(params.w_h.shape[0], xs.dtype)
        hs, h, c = _per_example(backend, reverse, unroll)(params, xs, length, state.h, state.c)
        return hs, LSTMState(h, c)
    gx = gates_x if gates_x is not None else project_inputs(params, xs)
    return scan_gates(params, gx, length, state, reverse=reverse, unroll=unroll, backend=backend)


def _reference_scan(params, gates_x, length, state, reverse, unroll):
    t_steps = gates_x.shape[0]

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
    backend: str = "reference",
) -> tuple[Array, LSTMState]:
    """One LSTM layer on one example: xs[T, F] -> (hs[T, H], (h[H], c[H]))."""
    if xs.ndim != 2:
        raise ValueError(f"lstm_layer expects xs of shape (T, F), got {xs.shape}; use jax.vmap for a batch")
    if xs.shape[1] != params.w_i.shape[0]:
        raise ValueError(f"lstm_layer: xs has {xs.shape[1]} features but the layer expects {params.w_i.shape[0]}")
    return _run_layer(params, xs, None, length, state, reverse=reverse, unroll=unroll, backend=backend)


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
    steps: int | None = None,
    unroll: int = 1,
    backend: str = "reference",
    remat: int | None = None,
    out: Callable[[Array], Array] | None = None,
) -> tuple[Array, list]:
    """A stack of layers on one example.

    Args:
      layers: from :func:`init_stack`; a tuple entry is a bidirectional layer.
      xs: [T, F] inputs, or None when ``first_gates`` is given.
      states: optional initial state per layer (forward direction only).
      first_gates: layer 0's input gates, used instead of ``xs @ w_i + b``:
        [T, G] per step, or [G] the same at every step, with ``steps=T``
        (the repeat decoder's ``z @ w_i + b``: a backend with a stack
        function never broadcasts it over T).
      steps: T, needed only with constant ``first_gates``.
      backend: how each layer runs (module doc).
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
    Returns:
      ``hs[T, H_out]`` of the top layer (``out(hs)`` [T, K] with ``out``) and
      the list of final states, one per layer (a ``(fwd, bwd)`` pair for a
      bidirectional layer).
    """
    states = list(states) if states is not None else [None] * len(layers)
    first, inp = _first_input(layers, xs, first_gates)
    if first == "const":
        if steps is None:
            raise ValueError("lstm_stack: constant first_gates of shape (G,) need steps=T")
    else:
        steps = inp.shape[0]
    if remat is not None:
        return _remat_stack(layers, inp, first, steps, length, states, unroll, backend, int(remat), out)
    backend = resolve_backend(backend)
    if backend != "reference" and get_backend(backend).stack is not None:
        hs, finals = _stack_per_example(backend, first, int(steps), int(unroll))(layers, inp, length, states)
        return (hs if out is None else out(hs)), finals
    if first == "const":
        inp = jnp.broadcast_to(inp, (steps, inp.shape[0]))
    finals = []
    hs = inp if first == "xs" else None
    for idx, (layer, state) in enumerate(zip(layers, states)):
        gates0 = inp if idx == 0 and first != "xs" else None
        if not isinstance(layer, LSTMParams):
            fwd, bwd = layer
            hs_f, fin_f = _run_layer(fwd, hs, gates0, length, state, reverse=False, unroll=unroll, backend=backend)
            hs_b, fin_b = _run_layer(bwd, hs, None, length, None, reverse=True, unroll=unroll, backend=backend)
            hs = jnp.concatenate([hs_f, hs_b], axis=-1)
            finals.append((fin_f, fin_b))
        else:
            hs, fin = _run_layer(layer, hs, gates0, length, state, reverse=False, unroll=unroll, backend=backend)
            finals.append(fin)
    return (hs if out is None else out(hs)), finals


def _first_input(layers, xs, first_gates) -> tuple[str, Array]:
    """What layer 0 reads: ("xs", xs[T, F]), ("gates", gx[T, G]) or ("const", gx[G])."""
    if first_gates is None:
        if xs is None:
            raise ValueError("lstm_stack needs xs of shape (T, F) or first_gates")
        return "xs", xs
    if xs is not None:
        raise ValueError("lstm_stack takes xs or first_gates, not both")
    if not isinstance(layers[0], LSTMParams):
        raise ValueError("first_gates replace one direction's input projection; "
                         "a bidirectional first layer needs xs")
    if first_gates.ndim not in (1, 2):
        raise ValueError(f"first_gates must be (T, G) or (G,), got shape {first_gates.shape}")
    return ("gates" if first_gates.ndim == 2 else "const"), first_gates


def _remat_stack(layers, inp, first, t_steps, length, states, unroll, backend, chunk, out=None):
    if chunk < 1:
        raise ValueError(f"remat is a chunk length in steps and must be >= 1, got {chunk}")
    if not all(isinstance(layer, LSTMParams) for layer in layers):
        raise ValueError("remat runs a stack chunk by chunk forward in time; it does not support bidirectional layers")
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
        xs, gates = (part, None) if first == "xs" else (None, inp if first == "const" else part)
        hs, fins = lstm_stack(layers, xs, sub_len, carry, first_gates=gates, steps=chunk, unroll=unroll,
                              backend=backend, out=out)
        return fins, hs

    finals, hs = lax.scan(body, states, (parts, jnp.arange(n_chunks) * chunk))
    return hs.reshape(n_chunks * chunk, -1)[:t_steps], finals
