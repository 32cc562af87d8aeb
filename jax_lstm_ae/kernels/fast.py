"""The "fast" LSTM backend: batched, time-major scans with a hand-written VJP.

The backend ``"fast"`` (stack contract in the ``backends.dispatch`` module doc), with
two faces:

    lstm_fast(params, gates_x[B, T, G], lengths[B], h0[B, H], c0[B, H],
              *, reverse, unroll=1) -> (hs[B, T, H], h[B, H], c[B, H])
    stack_fast(layers, inp, lengths[B], states, *, first, steps, unroll)
              -> (hs[B, T, H_out], finals)

The stack face is what ``lstm_stack`` uses: it transposes to time-major once,
runs every layer time-major, and transposes the top layer's outputs back once
(per-layer transposes of [B, T, G] arrays cost as much as a layer's GEMMs).

Why it is faster than differentiating the plain scan (XLA:CPU runs small
per-step ops poorly, large GEMMs well, and every large temporary costs page
faults as well as memory traffic):

- the backward scan carries only (dh, dc) [B, H] and does one
  [B, G] x [G, H] product per step; JAX's own transpose of the scan also
  accumulates dW_h += h_{t-1}^T dz_t inside the loop, a small GEMM per step;
- dW_h = sum_t h_{t-1}^T dz_t is one [H, T*B] x [T*B, G] GEMM after the loop;
- the forward pass (when differentiated) stores the carry-independent
  factors of the gate derivatives, computed in the loop while the step's
  activations are in cache, so the backward needs no pass over [T, B, G]
  arrays before its loop;
- the gate sigmoids are one tanh pass over [B, G] (``_activate``);
- a layer's input gates come in one of three forms (``mode``):
  ``"gates"``: precomputed gx[T, B, G] (one big GEMM outside the loop, best
  when the layer has many input features); ``"xs"``: x[T, B, F] with
  ``x_t @ w_i + b`` computed in the loop (for F <= ``IN_LOOP_MAX_FEATURES``
  writing and reading a [T, B, G] array costs more than the in-loop product);
  ``"const"``: gx[B, G], the same at every step (the repeat decoder's
  ``z @ w_i + b``), never broadcast over T.

``matmul_dtype=jnp.bfloat16`` (the backend ``"fast_bf16"``): every product
the backend computes (the recurrent ``h @ w_h``, the input product in the loop
or hoisted out of it, and the backward's ``dz @ w^T`` and weight-gradient
GEMMs) takes bfloat16 operands and sums in float32
(``preferred_element_type``); parameters, state, gate math and every
gradient stay float32. The float32 default runs exactly the float32 code.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae.kernels.cell import LayerParams, LSTMParams, LSTMState, dense
from jax_lstm_ae._typing import Array

Mode = Literal["gates", "xs", "const"]

# Layers with at most this many input features compute their input gates in
# the time loop instead of materialising gx[T, B, G]: measured faster for
# F = 1 ... 128 (H = 128) and on the ecg, wide and braun models, even with
# F = 128; a tie at F = 256 (bench/peers/micro.py inloop, bench/RESULTS.md).
IN_LOOP_MAX_FEATURES = 128


def _split(z: Array) -> tuple[Array, Array, Array, Array]:
    return tuple(jnp.split(z, 4, axis=-1))  # type: ignore[return-value]


def _low(mm) -> bool:
    """Whether ``mm`` asks for narrow (bfloat16) matmul operands."""
    return jnp.dtype(mm) != jnp.dtype(jnp.float32)


def _dot(a: Array, b: Array, mm) -> Array:
    """a @ b; for a bfloat16 ``mm`` with bf16 operands and float32 sums
    (``b`` may already be bf16: casting it once outside the loop saves a
    conversion per step)."""
    if not _low(mm):
        return a @ b
    return jnp.matmul(a.astype(mm), b.astype(mm), preferred_element_type=jnp.float32)


def _dense(x: Array, w: Array, b: Array, mm) -> Array:
    """``cell.dense`` (x[..., N] @ w[N, M] + b[M]) with :func:`_dot`'s operands."""
    if not _low(mm):
        return dense(x, w, b)
    y = _dot(x, w, mm)
    return y + b.reshape((1,) * (y.ndim - 1) + b.shape)


def _gate_scale(hidden: int, dtype) -> Array:
    """[G]: 1/2 on the sigmoid gates (i, f, o), 1 on the tanh gate g."""
    half, one = jnp.full((hidden,), 0.5, dtype), jnp.ones((hidden,), dtype)
    return jnp.concatenate([half, half, one, half])


def _activate(z: Array, scale: Array) -> tuple[Array, Array, Array, Array]:
    """Gate activations from pre-activations z[..., G] with ONE tanh pass:
    sigmoid(x) = (1 + tanh(x / 2)) / 2. XLA:CPU expands sigmoid into exp and
    a division; one vectorised tanh over all G columns is about twice as fast
    (measured in the layer's forward scan) and equal to float32 rounding."""
    i, f, g, o = _split(jnp.tanh(z * scale))
    return 0.5 * i + 0.5, 0.5 * f + 0.5, g, 0.5 * o + 0.5


def _step_masks(steps: int, lengths: Array) -> Array:
    """[T, B, 1] True on valid steps."""
    return (jnp.arange(steps)[:, None] < lengths[None, :])[..., None]


def _scan_forward(mode, reverse, unroll, mm, keep, w_h, w_i, b, inp, mask, h0, c0):
    """Time-major forward over T = mask.shape[0] steps.

    Returns hs[T, B, H] (zeros on padded steps), or with ``keep`` the tuple
    (hs, k[T, B, G], a[T, B, H], f[T, B, H]) of derivative factors, and the
    final (h, c). On a valid step, with c' = f c + i g and h' = o tanh(c'),
    the backward needs
      dc = dc_in + dh * a,                 a = o (1 - tanh(c')^2),
      dz = [dc, dc, dc, dh] * k,           k = [g i(1-i), c f(1-f), i(1-g^2), tanh(c') o(1-o)],
      dc_prev = dc * f,  dh_prev = dz @ w_h^T.
    """
    scale = _gate_scale(w_h.shape[0], h0.dtype)[None]
    w_h, w_i = w_h.astype(mm), None if w_i is None else w_i.astype(mm)  # no-ops in float32

    def body(carry, step):
        h, c = carry
        x_t, m = step
        gx = x_t if mode == "gates" else _dense(x_t, w_i, b, mm) if mode == "xs" else inp
        i, f, g, o = _activate(gx + _dot(h, w_h, mm), scale)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        h_out = jnp.where(m, h_new, 0.0)
        if keep:
            k = jnp.concatenate([g * i * (1 - i), c * f * (1 - f), i * (1 - g * g), tc * o * (1 - o)], axis=-1)
            out = (h_out, k, o * (1 - tc * tc), f)
        else:
            out = h_out
        return (jnp.where(m, h_new, h), jnp.where(m, c_new, c)), out

    per_step = None if mode == "const" else inp
    (h, c), out = lax.scan(body, (h0, c0), (per_step, mask), reverse=reverse, unroll=unroll)
    return out, h, c


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _layer_tm(mode: Mode, steps: int, reverse: bool, unroll: int, mm, w_h, w_i, b, inp, lengths, h0, c0):
    """One layer, time-major, over ``steps`` steps: (hs[T, B, H], h[B, H], c[B, H]).
    ``inp`` is gx[T, B, G], x[T, B, F] or gx[B, G] as ``mode`` says (module
    doc); ``w_i`` and ``b`` are used (and differentiated) only for "xs";
    ``mm`` the matmul operands' dtype."""
    mask = _step_masks(steps, lengths)
    return _scan_forward(mode, reverse, unroll, mm, False, w_h, w_i, b, inp, mask, h0, c0)


def _layer_tm_fwd(mode, steps, reverse, unroll, mm, w_h, w_i, b, inp, lengths, h0, c0):
    mask = _step_masks(steps, lengths)
    (hs, k, a, f), h, c = _scan_forward(mode, reverse, unroll, mm, True, w_h, w_i, b, inp, mask, h0, c0)
    # Only the "xs" mode needs its input again (for dW_i); gx arrays are not kept.
    kept_inp = inp if mode == "xs" else None
    return (hs, h, c), (w_h, w_i, kept_inp, lengths, h0, hs, k, a, f)


def _previous(seq: Array, first: Array, mask: Array, reverse: bool) -> Array:
    """The carry entering each valid step: seq[t-1] (seq[t+1] when reverse),
    or the initial state where no valid step precedes."""
    if not reverse:
        # Steps before a valid step are valid, so only t = 0 reads the initial state.
        return jnp.concatenate([first[None], seq[:-1]], axis=0)
    nxt = jnp.concatenate([seq[1:], first[None]], axis=0)
    nxt_valid = jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])], axis=0)
    return jnp.where(nxt_valid, nxt, first[None])


def _sum_outer(a: Array, b: Array, mm=jnp.float32) -> Array:
    """sum over t, b of a[t, b]^T b[t, b], for a[T, B, M] and b[T, B, N]: one
    [M, T*B] x [T*B, N] GEMM (bf16 operands, float32 sums for a bfloat16
    ``mm``). In this 2-D form XLA reads both operands where they are (the
    reshapes are free); the 3-D einsum "tbm,tbn->mn" made it copy both into
    transposed layouts first (bench/RESULTS.md)."""
    rows = a.shape[0] * a.shape[1]
    a, b = a.reshape(rows, a.shape[2]), b.reshape(rows, b.shape[2])
    if not _low(mm):
        return lax.dot_general(a, b, (((0,), (0,)), ((), ())))
    return lax.dot_general(a.astype(mm), b.astype(mm), (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def _layer_tm_bwd(mode, steps, reverse, unroll, mm, res, cts):
    w_h, w_i, x, lengths, h0, hs, k, a, f = res
    d_hs, d_h, d_c = cts
    mask = _step_masks(steps, lengths)
    w_t = w_h.T.astype(mm)

    def body(carry, inp):
        dh, dc = carry
        dh_out, k_t, a_t, f_t, m = inp
        dh_tot = dh + dh_out
        dc_tot = dc + dh_tot * a_t
        dz = jnp.where(m, jnp.concatenate([dc_tot, dc_tot, dc_tot, dh_tot], axis=-1) * k_t, 0.0)
        carry = (jnp.where(m, _dot(dz, w_t, mm), dh), jnp.where(m, dc_tot * f_t, dc))
        return carry, dz

    (dh0, dc0), dz = lax.scan(body, (d_h, d_c), (d_hs, k, a, f, mask), reverse=not reverse, unroll=unroll)
    # The weight gradients as GEMMs over all T * B rows (dz is zero on padded
    # steps). Shift hs[T, B, H], not dz[T, B, G]: a sliced operand is copied.
    dw_h = _sum_outer(_previous(hs, h0, mask, reverse), dz, mm)
    if mode == "gates":
        return dw_h, None, None, dz, None, dh0, dc0
    if mode == "const":
        return dw_h, None, None, jnp.sum(dz, axis=0), None, dh0, dc0
    dw_i, d_b, dx = _project_grads(x, w_i, dz, mm)
    return dw_h, dw_i, d_b, dx, None, dh0, dc0


_layer_tm.defvjp(_layer_tm_fwd, _layer_tm_bwd)


def _project_grads(x: Array, w_i: Array, dz: Array, mm) -> tuple[Array, Array, Array]:
    """The gradients of gx = x @ w_i + b from dz[T, B, G], x[T, B, F]:
    (dw_i[F, G], db[G], dx[T, B, F]), the products in ``mm`` operands."""
    return _sum_outer(x, dz, mm), jnp.sum(dz, axis=(0, 1)), _dot(dz, w_i.T, mm)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _project(mm, x: Array, w_i: Array, b: Array) -> Array:
    """x[T, B, F] @ w_i + b -> gx[T, B, G] with ``mm`` operands and float32
    sums, and the backward's products too (JAX's own transpose of a bf16
    product would round the weight gradient to bf16)."""
    return _dense(x, w_i, b, mm)


def _project_fwd(mm, x, w_i, b):
    return _dense(x, w_i, b, mm), (x, w_i)


def _project_bwd(mm, res, dz):
    dw_i, d_b, dx = _project_grads(*res, dz, mm)
    return dx, dw_i, d_b


_project.defvjp(_project_fwd, _project_bwd)


def _run_tm(params: LSTMParams, mode: Mode, inp: Array, steps: int, lengths, h0, c0, *, reverse, unroll, mm):
    """One layer, time-major; an "xs" input with many features is projected
    outside the loop first (one [T*B, F] x [F, G] GEMM)."""
    if mode == "xs" and inp.shape[-1] > IN_LOOP_MAX_FEATURES:
        proj = _project(mm, inp, params.w_i, params.b) if _low(mm) else dense(inp, params.w_i, params.b)
        mode, inp = "gates", proj
    w_i, b = (params.w_i, params.b) if mode == "xs" else (None, None)
    return _layer_tm(mode, steps, bool(reverse), int(unroll), jnp.dtype(mm), params.w_h, w_i, b, inp, lengths,
                     h0, c0)


def lstm_fast(
    params: LSTMParams,
    gates_x: Array,
    lengths: Array,
    h0: Array,
    c0: Array,
    *,
    reverse: bool = False,
    unroll: int = 1,
    matmul_dtype=jnp.float32,
) -> tuple[Array, Array, Array]:
    """gates_x[B, T, G], lengths[B], h0/c0[B, H] -> (hs[B, T, H], h[B, H], c[B, H]);
    ``matmul_dtype`` as in the module doc."""
    gx = jnp.swapaxes(gates_x, 0, 1)
    hs, h, c = _run_tm(params, "gates", gx, gx.shape[0], lengths.astype(jnp.int32), h0, c0,
                       reverse=reverse, unroll=unroll, mm=matmul_dtype)
    return jnp.swapaxes(hs, 0, 1), h, c


def stack_fast(
    layers: Sequence[LayerParams],
    inp: Array,
    lengths: Array,
    states: Sequence[LSTMState | None],
    *,
    first: Mode,
    steps: int,
    unroll: int = 1,
    matmul_dtype=jnp.float32,
) -> tuple[Array, list]:
    """A batched stack: ``inp`` is xs[B, T, F] (``first="xs"``), layer 0's
    input gates gx[B, T, G] ("gates") or gx[B, G] constant over the T =
    ``steps`` steps ("const"); ``states`` one initial state [B, H] pair or
    None per layer (forward direction). Returns (hs[B, T, H_out], finals),
    finals as in ``lstm_stack``; ``matmul_dtype`` as in the module doc."""
    lengths = lengths.astype(jnp.int32)
    x = inp if first == "const" else jnp.swapaxes(inp, 0, 1)  # time-major from here on
    mode: Mode = first
    finals = []
    for layer, state in zip(layers, states):
        def run(p, state, reverse):
            hidden, batch = p.w_h.shape[0], lengths.shape[0]
            if state is None:
                state = LSTMState(*(jnp.zeros((batch, hidden), p.w_h.dtype),) * 2)
            hs, h, c = _run_tm(p, mode, x, steps, lengths, state.h, state.c, reverse=reverse, unroll=unroll,
                               mm=matmul_dtype)
            return hs, LSTMState(h, c)

        if isinstance(layer, LSTMParams):
            x, fin = run(layer, state, False)
        else:
            hs_f, fin_f = run(layer[0], state, False)
            hs_b, fin_b = run(layer[1], None, True)
            x, fin = jnp.concatenate([hs_f, hs_b], axis=-1), (fin_f, fin_b)
        finals.append(fin)
        mode = "xs"
    return jnp.swapaxes(x, 0, 1), finals

