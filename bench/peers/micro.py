"""Micro-benchmarks behind the design choices of the "fast" backend.

    python bench/peers/micro.py gates    # sigmoid as exp+divide vs one tanh pass, forward scan
    python bench/peers/micro.py layer    # one layer, vmapped, train (value+grad) and forward, per backend/unroll
    python bench/peers/micro.py wgrad    # dW_h as one GEMM over T*B vs per-example GEMMs summed over B
    python bench/peers/micro.py inloop   # input projection in the time loop vs hoisted, per F
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
    from jax_lstm_ae.nn.cell import init_lstm
    from jax_lstm_ae.nn.layer import lstm_layer

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
    from jax_lstm_ae.backends import fast as _fast
    from jax_lstm_ae.nn.layer import init_stack, lstm_stack

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


if __name__ == "__main__":
    if "--allocator=default" not in sys.argv:  # as throughput.py: glibc keeps XLA's temporaries mapped
        from jax_lstm_ae.train import tune_cpu_allocator

        tune_cpu_allocator()
    {"gates": gates, "layer": layer, "wgrad": wgrad, "inloop": inloop}[sys.argv[1] if len(sys.argv) > 1 else "gates"]()
