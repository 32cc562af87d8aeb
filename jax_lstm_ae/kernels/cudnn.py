"""cuDNN's fused LSTM through ``jax.experimental.rnn``, on our parameters.

Parameter mapping (both ways, differentiable): ``jax.experimental.rnn`` takes
one flat float32 vector in cuDNN's packing (see ``rnn.unpack_lstm_weights``):
for each pseudo-layer (forward 0, backward 0, forward 1, ...) ``W_ih[G, F]``
then ``W_hh[G, H]``, followed by all the biases ``b_ih[G], b_hh[G]``, gate
order i, f, g, o -- PyTorch's, and ours. So ``W_ih = w_i.T``,
``W_hh = w_h.T``, and we put our single bias ``b`` in ``b_ih`` with
``b_hh = 0`` (only the sum matters; back from cuDNN, ``b = b_ih + b_hh``).
Gradients flow through the packing by ordinary autodiff, so a cuDNN layer
returns the same ``LSTMParams`` cotangents as the scan.

Semantics and the differences we handle:

* cuDNN takes ``xs[B, T, F]`` and projects the inputs itself (its weights
  include ``W_ih``); :func:`cudnn_layer_xs` is the fast entry point. The
  shared gate contract ``fn(params, gates_x, ...)`` is met by
  :func:`cudnn_layer`, which hands cuDNN identity input weights: correct, but
  it pays a [B*T, G] x [G, G] GEMM that the xs form does not.
* Padded steps: cuDNN (and ``rnn.lstm_ref``) emit zeros at t >= length and
  return the state after step length-1 -- as our scan does.
* ``reverse``: cuDNN has no reverse-only mode; its backward direction (in
  bidirectional mode) reads each sequence reversed *within its length*,
  i.e. from step length-1 down to 0, which is our ``reverse=True``. For one
  reverse direction we flip each sequence within its length, run forward,
  and flip the outputs back; :func:`cudnn_bidirectional_xs` uses cuDNN's
  bidirectional mode directly.
* Empty sequences: cuDNN needs 1 <= length; we run length-0 rows with
  length 1 and then restore their initial state and zero their outputs.
* dtype: float32 only. ``precision`` is passed to cuDNN: None allows TF32 on
  GPUs that have it (like XLA's default, and PyTorch's cuDNN default);
  ``lax.Precision.HIGHEST`` forbids it.

``impl``: ``"cudnn"`` runs the cuDNN kernels (CUDA GPUs only); ``"reference"``
runs ``rnn.lstm_ref`` -- JAX's own scan model of cuDNN, on the weights
unpacked from the same flat vector -- so the mapping, the flips and the
length handling are tested on CPU. The default is cuDNN on a CUDA GPU and the
reference elsewhere.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import rnn

from jax_lstm_ae.kernels.common import layerwise_stack
from jax_lstm_ae.kernels.fast import lstm_fast
from jax_lstm_ae.kernels.cell import LSTMParams
from jax_lstm_ae._typing import Array

__all__ = [
    "cudnn_available",
    "cudnn_bidirectional_xs",
    "cudnn_layer",
    "cudnn_layer_xs",
    "flip_valid",
    "from_cudnn_weights",
    "make_cudnn_layer",
    "to_cudnn_weights",
]

IMPLS = ("cudnn", "reference")


def cudnn_available() -> bool:
    """True when the default backend is a CUDA GPU with JAX's cuDNN RNN linked."""
    if jax.default_backend() != "gpu":
        return False
    # jax.experimental.rnn binds its GPU kernels as ``rnn.gpu_rnn`` (None when
    # this jaxlib has no cuDNN RNN); read from the public module.
    gpu_rnn = getattr(rnn, "gpu_rnn", None)
    return gpu_rnn is not None and hasattr(gpu_rnn, "compute_rnn_workspace_reserve_space_sizes")


def _pick_impl(impl: str | None) -> str:
    if impl is None:
        return "cudnn" if cudnn_available() else "reference"
    if impl not in IMPLS:
        raise ValueError(f"unknown cuDNN impl {impl!r}; choose one of {IMPLS}")
    if impl == "cudnn" and not cudnn_available():
        raise ValueError(f"impl='cudnn' needs a CUDA GPU with JAX's cuDNN RNN (default backend here: "
                         f"{jax.default_backend()}); use impl='reference' or leave impl=None")
    return impl


# --------------------------------------------------------------------------
# parameter mapping


def _pseudo_layers(layers, bidirectional: bool) -> list[LSTMParams]:
    if not bidirectional:
        return list(layers)
    return [p for pair in layers for p in pair]


def to_cudnn_weights(layers: Sequence[Any], *, bidirectional: bool = False) -> Array:
    """Our layers -> cuDNN's flat weight vector [P].

    Args:
      layers: ``[LSTMParams, ...]`` (one per layer, all with the same H, layer
        l > 0 taking H inputs), or ``[(fwd, bwd), ...]`` when bidirectional
        (layer l > 0 taking 2H inputs).
    """
    pseudo = _pseudo_layers(layers, bidirectional)
    if not pseudo:
        raise ValueError("to_cudnn_weights needs at least one layer")
    hidden = pseudo[0].w_h.shape[0]
    if any(p.w_h.shape != (hidden, 4 * hidden) for p in pseudo):
        raise ValueError("cuDNN needs the same hidden size in every layer; got "
                         f"{[p.w_h.shape[0] for p in pseudo]}: use one cuDNN call per layer")
    mats, biases = [], []
    for p in pseudo:
        mats += [p.w_i.T.reshape(-1), p.w_h.T.reshape(-1)]
        biases += [p.b, jnp.zeros_like(p.b)]
    return jnp.concatenate([a.astype(jnp.float32) for a in mats + biases])


def from_cudnn_weights(
    weights: Array, input_size: int, hidden_size: int, num_layers: int = 1, *, bidirectional: bool = False
) -> list[Any]:
    """cuDNN's flat weights [P] -> our layers (``b = b_ih + b_hh``)."""
    expected = rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
    if weights.shape != (expected,):
        raise ValueError(f"from_cudnn_weights: expected {expected} weights for F={input_size}, H={hidden_size}, "
                         f"{num_layers} layers, bidirectional={bidirectional}; got shape {weights.shape}")
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
    pseudo = [LSTMParams(w_ih[k].T, w_hh[k].T, b_ih[k] + b_hh[k]) for k in range(len(w_ih))]
    if not bidirectional:
        return pseudo
    return [(pseudo[2 * k], pseudo[2 * k + 1]) for k in range(num_layers)]


# --------------------------------------------------------------------------
# running


def flip_valid(xs: Array, lengths: Array) -> Array:
    """Reverse each sequence of xs[B, T, ...] within its length; padding stays
    at the end. Its own inverse."""
    steps = xs.shape[1]
    t = jnp.arange(steps)[None, :]
    n = lengths[:, None]
    idx = jnp.where(t < n, n - 1 - t, t)  # [B, T]
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=1)


def _run(impl, weights, xs, lengths, h0, c0, *, input_size, hidden_size, bidirectional, precision):
    """xs[B, T, F], h0/c0[D, B, H] -> (ys[B, T, D*H], h[D, B, H], c[D, B, H]); lengths >= 1."""
    if impl == "cudnn":
        return rnn.lstm(
            xs, h0, c0, weights, lengths, input_size=input_size, hidden_size=hidden_size, num_layers=1,
            dropout=0.0, bidirectional=bidirectional, precision=precision,
        )
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1, bidirectional)
    return rnn.lstm_ref(xs, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, input_size, hidden_size, 1, 0.0, bidirectional)


def _check(name, xs, lengths, h0, c0, hidden):
    if xs.ndim != 3:
        raise ValueError(f"{name} expects inputs of shape (B, T, ·), got {xs.shape}; add a batch axis for one example")
    batch = xs.shape[0]
    if lengths.shape != (batch,) or h0.shape != (batch, hidden) or c0.shape != (batch, hidden):
        raise ValueError(f"{name}: expected lengths ({batch},) and h0/c0 ({batch}, {hidden}), "
                         f"got {lengths.shape}, {h0.shape}, {c0.shape}")


def _finish(hs, h, c, lengths, h0, c0):
    """Undo the length-1 stand-in for empty rows; zero every padded step."""
    empty = (lengths == 0)[:, None]
    valid = (jnp.arange(hs.shape[1])[None, :] < lengths[:, None])[:, :, None]
    return jnp.where(valid, hs, jnp.zeros_like(hs)), jnp.where(empty, h0, h), jnp.where(empty, c0, c)


def cudnn_layer_xs(
    params: LSTMParams,
    xs: Array,
    lengths: Array,
    h0: Array,
    c0: Array,
    *,
    reverse: bool = False,
    precision: Any = None,
    impl: str | None = None,
) -> tuple[Array, Array, Array]:
    """One LSTM direction over raw inputs with cuDNN (projection included).

    Args:
      xs: [B, T, F] inputs; lengths: [B] int32 (0 <= length <= T); h0, c0: [B, H].
    Returns:
      ``hs[B, T, H]`` (zeros at padded steps), ``h_final[B, H]``, ``c_final[B, H]``,
      as ``jax.vmap(lstm_layer)`` with the same ``reverse``.
    """
    hidden = params.w_h.shape[0]
    _check("cudnn_layer_xs", xs, lengths, h0, c0, hidden)
    if xs.shape[2] != params.w_i.shape[0]:
        raise ValueError(f"cudnn_layer_xs: xs has {xs.shape[2]} features but w_i expects {params.w_i.shape[0]}")
    impl = _pick_impl(impl)
    lengths = lengths.astype(jnp.int32)
    xs = xs.astype(jnp.float32)
    if reverse:
        xs = flip_valid(xs, lengths)
    ys, h, c = _run(
        impl, to_cudnn_weights([params]), xs, jnp.maximum(lengths, 1), h0[None].astype(jnp.float32),
        c0[None].astype(jnp.float32), input_size=xs.shape[2], hidden_size=hidden, bidirectional=False,
        precision=precision,
    )
    if reverse:
        ys = flip_valid(ys, lengths)
    return _finish(ys, h[0], c[0], lengths, h0, c0)


def cudnn_layer(
    params: LSTMParams,
    gates_x: Array,
    lengths: Array,
    h0: Array,
    c0: Array,
    *,
    reverse: bool = False,
    precision: Any = None,
    impl: str | None = None,
) -> tuple[Array, Array, Array]:
    """The shared gate contract on cuDNN: gates_x[B, T, G] -> (hs[B, T, H], h, c).

    cuDNN cannot skip its input projection through ``jax.experimental.rnn``,
    so it is given identity input weights and ``gates_x`` as the input; the
    bias is already inside ``gates_x``. Prefer :func:`cudnn_layer_xs`.
    """
    hidden = params.w_h.shape[0]
    g = 4 * hidden
    if gates_x.ndim != 3 or gates_x.shape[2] != g:
        raise ValueError(f"cudnn_layer expects gates_x of shape (B, T, {g}), got {gates_x.shape}")
    identity = LSTMParams(jnp.eye(g, dtype=jnp.float32), params.w_h, jnp.zeros((g,), jnp.float32))
    return cudnn_layer_xs(identity, gates_x, lengths, h0, c0, reverse=reverse, precision=precision, impl=impl)


def cudnn_bidirectional_xs(
    fwd: LSTMParams,
    bwd: LSTMParams,
    xs: Array,
    lengths: Array,
    h0: Array | None = None,
    c0: Array | None = None,
    *,
    precision: Any = None,
    impl: str | None = None,
) -> tuple[Array, tuple[tuple[Array, Array], tuple[Array, Array]]]:
    """A bidirectional layer in one cuDNN call.

    Args:
      xs: [B, T, F]; lengths: [B]; h0, c0: optional [B, H] initial state of the
        forward direction (the backward direction starts from zeros, as in
        :func:`jax_lstm_ae.lstm_stack`).
    Returns:
      ``hs[B, T, 2H]`` (forward then backward outputs) and
      ``((h_f, c_f), (h_b, c_b))``, each [B, H].
    """
    hidden = fwd.w_h.shape[0]
    batch = xs.shape[0]
    zeros = jnp.zeros((batch, hidden), jnp.float32)
    h0 = zeros if h0 is None else h0.astype(jnp.float32)
    c0 = zeros if c0 is None else c0.astype(jnp.float32)
    _check("cudnn_bidirectional_xs", xs, lengths, h0, c0, hidden)
    impl = _pick_impl(impl)
    lengths = lengths.astype(jnp.int32)
    ys, h, c = _run(
        impl, to_cudnn_weights([(fwd, bwd)], bidirectional=True), xs.astype(jnp.float32), jnp.maximum(lengths, 1),
        jnp.stack([h0, zeros]), jnp.stack([c0, zeros]), input_size=xs.shape[2], hidden_size=hidden,
        bidirectional=True, precision=precision,
    )
    ys, h_f, c_f = _finish(ys, h[0], c[0], lengths, h0, c0)
    _, h_b, c_b = _finish(ys, h[1], c[1], lengths, zeros, zeros)
    return ys, ((h_f, c_f), (h_b, c_b))


def make_cudnn_layer(*, precision: Any = None, impl: str | None = None, takes: str = "gates") -> Callable:
    """Close over the settings; ``takes="gates"`` gives the shared gate
    contract ``fn(params, gates_x, lengths, h0, c0, *, reverse)``, ``takes="xs"``
    the same with raw inputs xs[B, T, F] in place of gates_x."""
    if takes not in ("gates", "xs"):
        raise ValueError(f"make_cudnn_layer: takes must be 'gates' or 'xs', got {takes!r}")
    impl = _pick_impl(impl) if impl is not None else None
    run = cudnn_layer if takes == "gates" else cudnn_layer_xs

    def fn(params, inputs, lengths, h0, c0, *, reverse: bool = False):
        return run(params, inputs, lengths, h0, c0, reverse=reverse, precision=precision, impl=impl)

    fn.takes = takes  # type: ignore[attr-defined]
    return fn


@functools.lru_cache(maxsize=None)
def stack_function() -> Callable:
    """The backend's batched stack (``backends.dispatch`` contract): cuDNN per layer on
    raw inputs; a layer fed precomputed gates (layer 0 of the repeat and
    unconditioned decoders) runs on the "fast" backend's layer."""
    return layerwise_stack(make_cudnn_layer(takes="xs"), takes="xs", gates_fn=lstm_fast)
