"""A fused LSTM recurrence in Pallas: all T steps of a batch tile in one launch.

Batched layer contract (shared with the other backends)::

    fn(params, gates_x[B, T, G], lengths[B], h0[B, H], c0[B, H], *, reverse)
        -> (hs[B, T, H], h_final[B, H], c_final[B, H])

with the semantics of ``jax.vmap(scan_gates)``: steps at or past ``length``
keep the carry and emit zeros; ``reverse=True`` runs T-1..0, so the backward
direction starts at step length-1.

Why a kernel: ``lax.scan`` on a GPU pays loop control and several launches per
step. Here one program owns a tile of ``block_b`` examples and walks the whole
sequence, keeping h and c in registers and ``w_h`` on chip (or re-read from
L1/L2 each step when it is too large to hold, see ``hold_weights``). Steps
at or past the longest length in a tile are not computed, only zeroed.

Layout inside the kernel: gates are split per gate, ``[B, T, 4, Hp]``, and
``w_h`` as ``[4, Hp, Hp]``, so every load, dot and store is a 2-D tile
``[block_b, Hp]`` -- the Triton lowering cannot slice register tensors, and
all its tensor sizes must be powers of two. ``Hp`` is H rounded up to a power
of two (at least 16, Triton's smallest dot). The padding is exact: padded
units have zero weights, zero gates and zero state, so they stay zero
(c' = 0.5 * 0 + 0.5 * tanh(0) = 0) and never feed the real units.

Gradients (``jax.custom_vjp``): the forward kernel saves the gate activations
``[B, T, 4, Hp]`` and the cell state before each step ``[B, T, Hp]``; a second
kernel walks time backwards carrying (dh, dc) and writes the gate
pre-activation gradients ``dgates[B, T, 4, Hp]``; the weight gradient
``dw_h = sum_t h_{t-1}^T dgates_t`` is then one large GEMM outside the time
loop, and ``dgates`` is also the gradient of ``gates_x``.

``matmul_dtype=jnp.bfloat16``: the recurrent dots take bf16 operands and
accumulate in float32; gates, state, outputs and all gradients stay float32.

On a platform without a Pallas compiler (CPU) the kernels run with
``interpret=True``: slow, but the same program, which is what the CPU tests
check against the scan reference.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jax_lstm_ae.kernels.common import layerwise_stack
from jax_lstm_ae.kernels.cell import LSTMParams
from jax_lstm_ae._typing import Array

__all__ = ["make_pallas_layer", "pallas_layer", "pallas_supported", "padded_hidden"]

LayerFn = Callable[..., tuple[Array, Array, Array]]

# Above this many bytes, w_h is re-read each step instead of held across the
# loop: [4, Hp, Hp] must share the register file with the h/c/gate tiles.
_HOLD_BYTES = 64 * 1024
_MIN_TILE = 16  # Triton's smallest dot dimension


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def padded_hidden(hidden: int) -> int:
    """H rounded up to the kernel's tile width (a power of two, >= 16)."""
    return max(_MIN_TILE, _next_pow2(hidden))


def _on_accelerator() -> bool:
    return jax.default_backend() in ("gpu", "cuda", "rocm")


def pallas_supported() -> bool:
    """True where the kernel compiles natively (NVIDIA/AMD GPU, Triton)."""
    return _on_accelerator()


# --------------------------------------------------------------------------
# kernels


def _forward_kernel(
    gx_ref, w_ref, len_ref, h0_ref, c0_ref, *out_refs, steps, reverse, save, hold, mm_dtype, precision
):
    """One batch tile: gx[bB, T, 4, Hp], w[4, Hp, Hp], lengths[bB], h0/c0[bB, Hp]."""
    if save:
        hs_ref, hT_ref, cT_ref, acts_ref, cprev_ref = out_refs
    else:
        hs_ref, hT_ref, cT_ref = out_refs
    lens = len_ref[...]
    # Steps at or past the tile's longest length are padding for every row:
    # skip them (they would only carry the state) and just zero their outputs.
    n_steps = jnp.max(lens)
    held = [w_ref[k] for k in range(4)] if hold else None

    def body(i, carry):
        h, c = carry
        t = n_steps - 1 - i if reverse else i
        hm = h.astype(mm_dtype)
        pre = []
        for k in range(4):
            w_k = held[k] if hold else w_ref[k]
            rec = jnp.dot(hm, w_k, precision=precision, preferred_element_type=jnp.float32)
            pre.append(gx_ref[:, t, k, :] + rec)
        i_g = jax.nn.sigmoid(pre[0])
        f_g = jax.nn.sigmoid(pre[1])
        g_g = jnp.tanh(pre[2])
        o_g = jax.nn.sigmoid(pre[3])
        c_new = f_g * c + i_g * g_g
        h_new = o_g * jnp.tanh(c_new)
        valid = (t < lens)[:, None]  # [bB, 1]
        hs_ref[:, t, :] = jnp.where(valid, h_new, jnp.zeros_like(h_new))
        if save:
            for k, a in enumerate((i_g, f_g, g_g, o_g)):
                acts_ref[:, t, k, :] = a
            cprev_ref[:, t, :] = c
        return jnp.where(valid, h_new, h), jnp.where(valid, c_new, c)

    h, c = lax.fori_loop(0, n_steps, body, (h0_ref[...], c0_ref[...]))
    hT_ref[...] = h
    cT_ref[...] = c

    def pad(t, carry):
        hs_ref[:, t, :] = jnp.zeros_like(h)
        return carry

    lax.fori_loop(n_steps, steps, pad, 0)


def _backward_kernel(
    dhs_ref, acts_ref, cprev_ref, wt_ref, len_ref, dhT_ref, dcT_ref, dg_ref, dh0_ref, dc0_ref,
    *, steps, reverse, hold, mm_dtype, precision,
):
    """Reverse-time sweep: carries (dh, dc), writes dgates[bB, T, 4, Hp].

    wt[k] is w_h[k].T, so dh_prev = sum_k dgates_k @ wt[k].
    """
    lens = len_ref[...]
    n_steps = jnp.max(lens)  # later steps are padding for the whole tile
    held = [wt_ref[k] for k in range(4)] if hold else None

    def body(i, carry):
        dh, dc = carry
        # opposite order to the forward scan
        t = i if reverse else n_steps - 1 - i
        i_g = acts_ref[:, t, 0, :]
        f_g = acts_ref[:, t, 1, :]
        g_g = acts_ref[:, t, 2, :]
        o_g = acts_ref[:, t, 3, :]
        c_prev = cprev_ref[:, t, :]
        tc = jnp.tanh(f_g * c_prev + i_g * g_g)
        dh_t = dh + dhs_ref[:, t, :]
        dct = dc + dh_t * o_g * (1.0 - tc * tc)
        d_pre = (
            dct * g_g * i_g * (1.0 - i_g),
            dct * c_prev * f_g * (1.0 - f_g),
            dct * i_g * (1.0 - g_g * g_g),
            dh_t * tc * o_g * (1.0 - o_g),
        )
        valid = (t < lens)[:, None]
        zero = jnp.zeros_like(dh)
        dh_prev = zero
        for k in range(4):
            d_k = jnp.where(valid, d_pre[k], zero)
            dg_ref[:, t, k, :] = d_k
            wt_k = held[k] if hold else wt_ref[k]
            dh_prev = dh_prev + jnp.dot(
                d_k.astype(mm_dtype), wt_k, precision=precision, preferred_element_type=jnp.float32
            )
        return jnp.where(valid, dh_prev, dh), jnp.where(valid, dct * f_g, dc)

    dh, dc = lax.fori_loop(0, n_steps, body, (dhT_ref[...], dcT_ref[...]))
    dh0_ref[...] = dh
    dc0_ref[...] = dc

    def pad(t, carry):
        for k in range(4):
            dg_ref[:, t, k, :] = jnp.zeros_like(dh)
        return carry

    lax.fori_loop(n_steps, steps, pad, 0)


# --------------------------------------------------------------------------
# pallas_call wrappers on padded arrays: gx[Bp, T, 4, Hp], w4[4, Hp, Hp], ...


class _Config:
    """Static settings of one compiled variant (hashable, never traced)."""

    def __init__(self, reverse, mm_dtype, precision, block_b, interpret, num_warps, hold):
        self.key = (reverse, jnp.dtype(mm_dtype).name, precision, block_b, interpret, num_warps, hold)
        self.reverse, self.mm_dtype, self.precision = reverse, jnp.dtype(mm_dtype), precision
        self.block_b, self.interpret, self.num_warps, self.hold = block_b, interpret, num_warps, hold

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Config) and self.key == other.key


def _compiler_params(cfg: _Config) -> dict[str, Any]:
    if cfg.interpret:
        return {"interpret": True}
    from jax.experimental.pallas import triton as plt

    return {"compiler_params": plt.CompilerParams(num_warps=cfg.num_warps, num_stages=1)}


def _hold(cfg: _Config, hp: int) -> bool:
    if cfg.hold is not None:
        return cfg.hold
    return 4 * hp * hp * cfg.mm_dtype.itemsize <= _HOLD_BYTES


def _run_forward(cfg: _Config, w4, gx, lens, h0, c0, save: bool):
    bp, steps, _, hp = gx.shape
    bb = cfg.block_b
    f32 = jnp.float32
    kernel = functools.partial(
        _forward_kernel, steps=steps, reverse=cfg.reverse, save=save, hold=_hold(cfg, hp),
        mm_dtype=cfg.mm_dtype, precision=cfg.precision,
    )
    seq4 = pl.BlockSpec((bb, steps, 4, hp), lambda b: (b, 0, 0, 0))
    seq = pl.BlockSpec((bb, steps, hp), lambda b: (b, 0, 0))
    vec = pl.BlockSpec((bb, hp), lambda b: (b, 0))
    out_shape = [
        jax.ShapeDtypeStruct((bp, steps, hp), f32),
        jax.ShapeDtypeStruct((bp, hp), f32),
        jax.ShapeDtypeStruct((bp, hp), f32),
    ]
    out_specs = [seq, vec, vec]
    if save:
        out_shape += [jax.ShapeDtypeStruct((bp, steps, 4, hp), f32), jax.ShapeDtypeStruct((bp, steps, hp), f32)]
        out_specs += [seq4, seq]
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(bp // bb,),
        in_specs=[
            seq4,
            pl.BlockSpec((4, hp, hp), lambda b: (0, 0, 0)),
            pl.BlockSpec((bb,), lambda b: (b,)),
            vec,
            vec,
        ],
        out_specs=out_specs,
        name="lstm_fwd",
        **_compiler_params(cfg),
    )(gx, w4.astype(cfg.mm_dtype), lens, h0, c0)


def _run_backward(cfg: _Config, w4, lens, acts, cprev, dhs, dhT, dcT):
    bp, steps, _, hp = acts.shape
    bb = cfg.block_b
    f32 = jnp.float32
    kernel = functools.partial(
        _backward_kernel, steps=steps, reverse=cfg.reverse, hold=_hold(cfg, hp),
        mm_dtype=cfg.mm_dtype, precision=cfg.precision,
    )
    seq4 = pl.BlockSpec((bb, steps, 4, hp), lambda b: (b, 0, 0, 0))
    seq = pl.BlockSpec((bb, steps, hp), lambda b: (b, 0, 0))
    vec = pl.BlockSpec((bb, hp), lambda b: (b, 0))
    wt = jnp.swapaxes(w4, 1, 2).astype(cfg.mm_dtype)
    return pl.pallas_call(
        kernel,
        out_shape=[
            jax.ShapeDtypeStruct((bp, steps, 4, hp), f32),
            jax.ShapeDtypeStruct((bp, hp), f32),
            jax.ShapeDtypeStruct((bp, hp), f32),
        ],
        grid=(bp // bb,),
        in_specs=[seq, seq4, seq, pl.BlockSpec((4, hp, hp), lambda b: (0, 0, 0)), pl.BlockSpec((bb,), lambda b: (b,)), vec, vec],
        out_specs=[seq4, vec, vec],
        name="lstm_bwd",
        **_compiler_params(cfg),
    )(dhs, acts, cprev, wt, lens, dhT, dcT)


def _previous_h(hs, h0, lens, reverse: bool):
    """h before each step, [Bp, T, Hp]; exact on valid steps (the only ones
    whose gate gradients are non-zero)."""
    if not reverse:
        return jnp.concatenate([h0[:, None, :], hs[:, :-1, :]], axis=1)
    steps = hs.shape[1]
    nxt = jnp.concatenate([hs[:, 1:, :], jnp.zeros_like(hs[:, :1, :])], axis=1)
    first = (jnp.arange(steps)[None, :] + 1 >= lens[:, None])[:, :, None]  # step length-1 starts the scan
    return jnp.where(first, h0[:, None, :], nxt)


@functools.lru_cache(maxsize=None)
def _fused(cfg: _Config):
    """custom_vjp core on padded arrays: (w4, gx, lens, h0, c0) -> (hs, hT, cT)."""

    @jax.custom_vjp
    def core(w4, gx, lens, h0, c0):
        return tuple(_run_forward(cfg, w4, gx, lens, h0, c0, save=False))

    def fwd(w4, gx, lens, h0, c0):
        hs, hT, cT, acts, cprev = _run_forward(cfg, w4, gx, lens, h0, c0, save=True)
        return (hs, hT, cT), (w4, lens, h0, hs, acts, cprev)

    def bwd(res, cts):
        w4, lens, h0, hs, acts, cprev = res
        dhs, dhT, dcT = cts
        dg, dh0, dc0 = _run_backward(cfg, w4, lens, acts, cprev, dhs, dhT, dcT)
        h_prev = _previous_h(hs, h0, lens, cfg.reverse)
        # the weight gradient as one GEMM over all (example, step) pairs
        dw4 = jnp.einsum("bth,btkj->khj", h_prev, dg, precision=lax.Precision.HIGHEST)
        return dw4, dg, None, dh0, dc0

    core.defvjp(fwd, bwd)
    return core


# --------------------------------------------------------------------------
# public layer functions


def _default_block(batch: int) -> int:
    # The recurrence is latency-bound: the smallest tile Triton's dot takes
    # gives the most programs (SMs) per batch; bench/gpu_bench.py --parts tune
    # measures the alternatives.
    del batch
    return _MIN_TILE


def pallas_layer(
    params: LSTMParams,
    gates_x: Array,
    lengths: Array,
    h0: Array,
    c0: Array,
    *,
    reverse: bool = False,
    matmul_dtype: Any = jnp.float32,
    precision: Any = None,
    block_b: int | None = None,
    interpret: bool | None = None,
    num_warps: int = 4,
    hold_weights: bool | None = None,
) -> tuple[Array, Array, Array]:
    """One LSTM direction over a batch with the fused Pallas kernels.

    Args:
      params: ``LSTMParams``; only ``w_h[H, G]`` is used (``w_i`` and ``b`` are
        already inside ``gates_x``), so their gradients here are zero.
      gates_x: [B, T, G] float32 input projections ``xs @ w_i + b``.
      lengths: [B] int32 valid steps, 0 <= length <= T.
      h0, c0: [B, H] initial state.
      reverse: scan T-1..0 (the backward direction of a bidirectional layer).
      matmul_dtype: ``jnp.float32`` or ``jnp.bfloat16`` operands for the
        recurrent dots (accumulation, state and outputs stay float32).
      precision: passed to the in-kernel dots; None is the platform default
        (TF32 on recent NVIDIA GPUs, as for XLA and cuDNN); use
        ``lax.Precision.HIGHEST`` for IEEE float32.
      block_b: examples per program (a power of two >= 16 on GPU); default 16.
      interpret: force Pallas interpret mode; default: on unless on a GPU
        (CPU: interpret; TPU: an error, the kernel is Triton's).
      num_warps: Triton warps per program (GPU only).
      hold_weights: keep ``w_h`` in registers across steps; default when it
        takes at most 64 KiB.
    Returns:
      ``hs[B, T, H]`` (zeros at padded steps), ``h_final[B, H]``, ``c_final[B, H]``.
    """
    if gates_x.ndim != 3:
        raise ValueError(f"pallas_layer expects gates_x of shape (B, T, G), got {gates_x.shape}; "
                         "for one example add a batch axis of 1")
    batch, steps, g = gates_x.shape
    hidden = params.w_h.shape[0]
    if g != 4 * hidden or params.w_h.shape != (hidden, g):
        raise ValueError(f"pallas_layer: gates_x has G={g} but w_h has shape {params.w_h.shape}; expected G = 4H")
    if lengths.shape != (batch,) or h0.shape != (batch, hidden) or c0.shape != (batch, hidden):
        raise ValueError(f"pallas_layer: expected lengths ({batch},) and h0/c0 ({batch}, {hidden}), "
                         f"got {lengths.shape}, {h0.shape}, {c0.shape}")
    mm = jnp.dtype(matmul_dtype)
    if mm not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"pallas_layer: matmul_dtype must be float32 or bfloat16, got {mm}")
    bb = block_b or _default_block(batch)
    if bb < 1 or bb & (bb - 1):
        raise ValueError(f"pallas_layer: block_b must be a power of two, got {bb}")
    if interpret is None:
        if jax.default_backend() == "tpu":
            raise ValueError("the Pallas LSTM kernel is written for Triton (NVIDIA/AMD GPUs); on TPU use "
                             "backend='fast', or pass interpret=True to run it (slowly) anyway")
        interpret = not _on_accelerator()
    cfg = _Config(bool(reverse), mm, precision, bb, bool(interpret), num_warps, hold_weights)

    hp = padded_hidden(hidden)
    bp = -(-batch // bb) * bb
    f32 = jnp.float32
    # w_h [H, 4H] -> [4, H, H] per gate -> pad to [4, Hp, Hp]
    w4 = jnp.transpose(params.w_h.astype(f32).reshape(hidden, 4, hidden), (1, 0, 2))
    w4 = jnp.pad(w4, ((0, 0), (0, hp - hidden), (0, hp - hidden)))
    gx = gates_x.astype(f32).reshape(batch, steps, 4, hidden)
    gx = jnp.pad(gx, ((0, bp - batch), (0, 0), (0, 0), (0, hp - hidden)))
    # padded examples get length 0: they keep their (zero) state and emit zeros
    lens = jnp.pad(lengths.astype(jnp.int32), (0, bp - batch))

    def pad_state(s):
        return jnp.pad(s.astype(f32), ((0, bp - batch), (0, hp - hidden)))

    hs, hT, cT = _fused(cfg)(w4, gx, lens, pad_state(h0), pad_state(c0))
    return hs[:batch, :, :hidden], hT[:batch, :hidden], cT[:batch, :hidden]


def make_pallas_layer(
    *,
    matmul_dtype: Any = jnp.float32,
    precision: Any = None,
    block_b: int | None = None,
    interpret: bool | None = None,
    num_warps: int = 4,
    hold_weights: bool | None = None,
) -> LayerFn:
    """Close over the kernel settings; returns ``fn(params, gates_x, lengths, h0, c0, *, reverse)``."""

    def fn(params, gates_x, lengths, h0, c0, *, reverse: bool = False):
        return pallas_layer(
            params, gates_x, lengths, h0, c0, reverse=reverse, matmul_dtype=matmul_dtype,
            precision=precision, block_b=block_b, interpret=interpret, num_warps=num_warps,
            hold_weights=hold_weights,
        )

    return fn


@functools.lru_cache(maxsize=None)
def stack_function(*, bf16: bool = False) -> Callable:
    """The backend's batched stack (``backends.dispatch`` contract): this kernel per
    layer, with bf16 recurrent matmuls when ``bf16`` ("pallas_bf16")."""
    return layerwise_stack(make_pallas_layer(matmul_dtype=jnp.bfloat16 if bf16 else jnp.float32))
