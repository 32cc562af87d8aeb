"""Micro-benchmarks behind the design choices of the "fast" backend.

    python bench/peers/micro.py gates    # sigmoid as exp+divide vs one tanh pass, forward scan
    python bench/peers/micro.py layer    # one layer, vmapped, train (value+grad) and forward, per backend/unroll
    python bench/peers/micro.py wgrad    # dW_h as one GEMM over T*B vs per-example GEMMs summed over B
    python bench/peers/micro.py inloop   # input projection in the time loop vs hoisted, per F
    python bench/peers/micro.py gemm     # the recurrence's [B, H] x [H, G] product in a scan: GFLOP/s vs NumPy
    python bench/peers/micro.py wave     # two stacked layers, forward: one loop each vs one wavefront loop
    python bench/peers/micro.py bf16     # the in-loop product with bfloat16 operands (float32 sums) vs float32
    XLA_FLAGS=... python bench/peers/micro.py gates   # an XLA flag's effect (one process per flag)

``jax_lstm_ae.tune_cpu_allocator()`` runs first, as in throughput.py; add
``--allocator=default`` to measure without it.

Same protocol as throughput.py: compile first, then alternate the variants in
rounds; median and min milliseconds per call. B=64, T=140, H=128 (the ecg
encoder's first layer), F=64 for ``layer``.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
from jax import lax

B, T, H, F = 64, 140, 128, 64


def _rounds(fns: dict, args, rounds: int = 9) -> None:
    for f in fns.values():
        jax.block_until_ready(f(*args))
    res = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args))
            res[k].append((time.perf_counter() - t) * 1e3)
    for k, v in res.items():
        print(f"{k:24s} median {statistics.median(v):8.1f} ms   min {min(v):8.1f} ms")


def gates() -> None:
    w = jax.random.normal(jax.random.PRNGKey(0), (H, 4 * H)) * 0.05
    gx = jax.random.normal(jax.random.PRNGKey(1), (T, B, 4 * H))
    scale = jnp.concatenate([jnp.full((2 * H,), 0.5), jnp.ones((H,)), jnp.full((H,), 0.5)])[None]

    def sigmoid_cell(z, c):
        i, f, g, o = jnp.split(z, 4, -1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def tanh_cell(z, c):
        i, f, g, o = jnp.split(jnp.tanh(z * scale), 4, -1)
        c = (0.5 * f + 0.5) * c + (0.5 * i + 0.5) * g
        return (0.5 * o + 0.5) * jnp.tanh(c), c

    def scan(cell):
        @jax.jit
        def run(w, gx):
            def body(carry, g):
                h, c = cell(g + carry[0] @ w, carry[1])
                return (h, c), h

            return lax.scan(body, (jnp.zeros((B, H)), jnp.zeros((B, H))), gx)[1]

        return run

    fns = {"sigmoid (exp, divide)": scan(sigmoid_cell), "one tanh pass": scan(tanh_cell)}
    a, b = (f(w, gx) for f in fns.values())
    print(f"max |difference| {float(jnp.max(jnp.abs(a - b))):.2e}")
    _rounds(fns, (w, gx))


def layer() -> None:
    from jax_lstm_ae.backends import lstm_layer
    from jax_lstm_ae.kernels.cell import init_lstm

    p = init_lstm(jax.random.PRNGKey(0), F, H)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))
    lens = jnp.full((B,), T)
    fns = {}
    for backend, unroll in (("reference", 1), ("fast", 1), ("fast", 2), ("fast", 4)):
        def loss(p, backend=backend, unroll=unroll):
            hs, _ = jax.vmap(lambda x, n: lstm_layer(p, x, n, backend=backend, unroll=unroll))(xs, lens)
            return jnp.sum(hs * hs)

        fns[f"{backend} unroll={unroll} train"] = jax.jit(jax.value_and_grad(loss))
        fns[f"{backend} unroll={unroll} fwd"] = jax.jit(loss)
    _rounds(fns, (p,), rounds=5)


def wgrad() -> None:
    h = jax.random.normal(jax.random.PRNGKey(0), (T, B, H))
    dz = jax.random.normal(jax.random.PRNGKey(1), (T, B, 4 * H))
    fns = {
        "one GEMM over T*B": jax.jit(lambda a, b: jnp.einsum("tbh,tbg->hg", a, b)),
        "per example, summed": jax.jit(lambda a, b: jnp.einsum("tbh,tbg->bhg", a, b).sum(0)),
    }
    _rounds(fns, (h, dz))


def inloop() -> None:
    """A layer's input gates x_t @ w_i + b inside the time loop vs one
    [T*B, F] x [F, G] GEMM before it (``_fast.IN_LOOP_MAX_FEATURES``), per F,
    train (value and gradient) of a one-layer stack, H=128."""
    from jax_lstm_ae.backends import lstm_stack
    from jax_lstm_ae.kernels import fast as _fast
    from jax_lstm_ae.kernels.reference import init_stack

    library_limit = _fast.IN_LOOP_MAX_FEATURES
    for f in (1, 16, 64, 128, 256):
        layers = init_stack(jax.random.PRNGKey(0), f, (H,))
        xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, f))
        lens = jnp.full((B,), T)
        fns = {}
        for name, limit in (("in loop", 10**6), ("hoisted", 0)):
            def loss(layers, limit=limit):
                _fast.IN_LOOP_MAX_FEATURES = limit  # read while tracing
                hs, _ = jax.vmap(lambda x, n: lstm_stack(layers, x, n, backend="fast"))(xs, lens)
                return jnp.sum(hs * hs)

            fns[f"F={f:3d} {name}"] = jax.jit(jax.value_and_grad(loss))
        _rounds(fns, (layers,), rounds=7)
    _fast.IN_LOOP_MAX_FEATURES = library_limit


def _recurrence(w, dtype=None):
    """T steps of h <- tanh(h @ w)[:, :H] (the gate product and one pass over it)."""
    def run(h0):
        def body(h, _):
            lhs, rhs = (h, w) if dtype is None else (h.astype(dtype), w.astype(dtype))
            z = jnp.dot(lhs, rhs, preferred_element_type=jnp.float32)
            return jnp.tanh(z[:, :H]), None
        return lax.scan(body, h0, None, length=T)[0]
    return jax.jit(run)


def gemm() -> None:
    """The per-step product alone: does XLA run a [B, 128] x [128, 512] GEMM in a
    loop at the rate one core reaches? (NumPy's BLAS, same shape, for scale;
    run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for one thread.)"""
    import numpy as np

    w = jax.random.normal(jax.random.PRNGKey(0), (H, 4 * H)) * 0.05
    for b in (32, 64):
        h0 = jnp.ones((b, H))
        print(f"B={b}: {2 * b * H * 4 * H * T / 1e9:.3f} GFLOP per {T} steps")
        _rounds({f"scan B={b}": _recurrence(w)}, (h0,), rounds=9)
        a, m = np.ones((b, H), np.float32), np.asarray(w)
        t = time.perf_counter()
        for _ in range(200 * T // 10):
            a @ m
        dt = (time.perf_counter() - t) / (200 * T // 10)
        print(f"numpy {b}x{H}x{4 * H}: {dt * 1e6:.1f} us per product, {2 * b * H * 4 * H / dt / 1e9:.1f} GFLOP/s")


def bf16() -> None:
    """The in-loop product with bfloat16 operands and float32 sums, against float32."""
    w = jax.random.normal(jax.random.PRNGKey(0), (H, 4 * H)) * 0.05
    for b in (32, 64):
        h0 = jnp.ones((b, H))
        fns = {f"float32 B={b}": _recurrence(w), f"bfloat16 B={b}": _recurrence(w, jnp.bfloat16)}
        _rounds(fns, (h0,), rounds=9)


def wave() -> None:
    """Two stacked layers (F=1 -> 128 -> 64, the ecg encoder, B=32, forward):
    one scan per layer vs one scan whose step t runs layer 1 at t and layer 2
    at t - 1 (a wavefront: half the loop trips, two independent products)."""
    b, h1, h2 = 32, 128, 64
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    w_i1, w_h1 = jax.random.normal(k[0], (1, 4 * h1)) * 0.1, jax.random.normal(k[1], (h1, 4 * h1)) * 0.05
    w_i2, w_h2 = jax.random.normal(k[2], (h1, 4 * h2)) * 0.05, jax.random.normal(k[3], (h2, 4 * h2)) * 0.05
    xs = jax.random.normal(k[4], (T, b, 1))

    def cell(gx, h, c, w_h):
        i, f, g, o = jnp.split(gx + h @ w_h, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    @jax.jit
    def layers(xs):
        def first(hc, x):
            h, c = cell(x @ w_i1, *hc, w_h1)
            return (h, c), h

        def second(hc, x):
            return cell(x @ w_i2, *hc, w_h2), None

        _, hs = lax.scan(first, (jnp.zeros((b, h1)),) * 2, xs)
        (h, _), _ = lax.scan(second, (jnp.zeros((b, h2)),) * 2, hs)
        return h

    @jax.jit
    def wavefront(xs):
        z1, z2 = jnp.zeros((b, h1)), jnp.zeros((b, h2))
        h, c = cell(xs[0] @ w_i1, z1, z1, w_h1)

        def body(carry, x):
            h, c, g, d = carry
            n1 = cell(x @ w_i1, h, c, w_h1)
            n2 = cell(h @ w_i2, g, d, w_h2)  # layer 2 at the previous step
            return (*n1, *n2), None

        (h, c, g, d), _ = lax.scan(body, (h, c, z2, z2), xs[1:])
        return cell(h @ w_i2, g, d, w_h2)[0]

    print(f"max difference {float(jnp.max(jnp.abs(layers(xs) - wavefront(xs)))):.1e}")
    _rounds({"one loop per layer": layers, "wavefront": wavefront}, (xs,), rounds=15)


if __name__ == "__main__":
    if "--allocator=default" not in sys.argv:  # as throughput.py: glibc keeps XLA's temporaries mapped
        from jax_lstm_ae.train import tune_cpu_allocator

        tune_cpu_allocator()
    {"gates": gates, "layer": layer, "wgrad": wgrad, "inloop": inloop, "gemm": gemm, "bf16": bf16, "wave": wave}[sys.argv[1] if len(sys.argv) > 1 else "gates"]()
