"""The "fast" layer backend and the backend plumbing against the plain scan.

Every check compares values AND gradients with the "reference" backend (the
per-example ``lax.scan`` differentiated by JAX), with padded lengths, reverse
layers, initial states, and for every decoder strategy.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
from jax_lstm_ae.backends import dispatch as _dispatch
from jax_lstm_ae.backends import lstm_layer, lstm_stack, scan_gates
from jax_lstm_ae.kernels import fast as _fast
from jax_lstm_ae.kernels.cell import LSTMState, init_lstm
from jax_lstm_ae.kernels.fast import lstm_fast

from reference import np_layer

B, T, F, H = 4, 7, 3, 5
LENGTHS = jnp.array([7, 1, 4, 6], jnp.int32)
TOL = dict(rtol=2e-5, atol=2e-5)


def _data(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = init_lstm(k[0], F, H)
    xs = jax.random.normal(k[1], (B, T, F))
    h0 = jax.random.normal(k[2], (B, H))
    c0 = jax.random.normal(k[3], (B, H))
    return params, xs, h0, c0


def _close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **(tol or TOL))


def _layer_loss(backend, reverse):
    """A loss that reads every output of a vmapped layer."""

    def loss(params, xs, h0, c0):
        def one(x, length, h, c):
            return lstm_layer(params, x, length, LSTMState(h, c), reverse=reverse, backend=backend)

        hs, fin = jax.vmap(one)(xs, LENGTHS, h0, c0)
        return jnp.sum(jnp.sin(hs) * hs) + jnp.sum(fin.h**2) + jnp.sum(jnp.cos(fin.c)), (hs, fin)

    return loss


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_values_and_gradients_match_reference(reverse):
    args = _data()
    out = {}
    for backend in ("reference", "fast"):
        (val, aux), grads = jax.value_and_grad(_layer_loss(backend, reverse), argnums=(0, 1, 2, 3), has_aux=True)(
            *args
        )
        out[backend] = (val, aux, grads)
    _close(out["fast"], out["reference"])
    # The gradients reach every input, and padded steps are exactly zero.
    hs = out["fast"][1][0]
    mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    assert np.all(np.asarray(hs)[~mask] == 0.0)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(out["fast"][2]))


@pytest.mark.parametrize("reverse", [False, True])
def test_batched_function_matches_float64_loop(reverse):
    params, xs, h0, c0 = _data(1)
    gates = xs @ params.w_i + params.b[None, None]
    hs, h, c = jax.jit(lstm_fast, static_argnames="reverse")(params, gates, LENGTHS, h0, c0, reverse=reverse)
    for b in range(B):
        ref_hs, ref_h, ref_c = np_layer(params, xs[b], int(LENGTHS[b]), h0[b], c0[b], reverse=reverse)
        np.testing.assert_allclose(hs[b], ref_hs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h[b], ref_h, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c[b], ref_c, rtol=1e-5, atol=1e-5)


def test_zero_length_carries_the_state_through():
    """Under remat a chunk past an example's end has length 0."""
    params, xs, h0, c0 = _data(2)
    gates = xs @ params.w_i + params.b[None, None]
    zero = jnp.zeros((B,), jnp.int32)
    hs, h, c = lstm_fast(params, gates, zero, h0, c0)
    assert np.all(np.asarray(hs) == 0.0)
    _close((h, c), (h0, c0))
    g = jax.grad(lambda h0: jnp.sum(lstm_fast(params, gates, zero, h0, c0)[1] * 3.0))(h0)
    _close(g, jnp.full_like(h0, 3.0))


def test_every_transformation_order_gives_reference_gradients():
    """Un-batched grad, vmap(grad) (per-example gradients) and vmap over
    per-example weights (an ensemble); grad(vmap) is the model's order, tested
    everywhere else."""
    params, xs, _, _ = _data(3)

    def per_example(backend):
        return lambda p, x, n: jnp.sum(jnp.tanh(lstm_layer(p, x, n, backend=backend)[0]))

    ref, fast = per_example("reference"), per_example("fast")
    _close(jax.grad(fast)(params, xs[0], 3), jax.grad(ref)(params, xs[0], 3))
    per_ex = lambda f: jax.vmap(jax.grad(f), in_axes=(None, 0, 0))(params, xs, LENGTHS)  # noqa: E731
    _close(per_ex(fast), per_ex(ref))
    ensemble = jax.tree.map(lambda a: jnp.stack([a, 2 * a, -a, a / 2]), params)
    ens = lambda f: jax.vmap(f)(ensemble, xs, LENGTHS)  # noqa: E731
    _close(ens(fast), ens(ref))


def test_stack_with_initial_states_and_bidirectional_layers():
    k = jax.random.split(jax.random.PRNGKey(4), 4)
    xs = jax.random.normal(k[0], (B, T, F))
    for bidirectional in (True,):  # forward and reverse layers, an initial state
        layers = la.nn.init_stack(k[1], F, (5,), bidirectional=bidirectional)
        states = [LSTMState(jax.random.normal(k[2], (B, 5)), jax.random.normal(k[3], (B, 5)))]

        def loss(layers, backend):
            def one(x, n, h, c):
                st = [LSTMState(h, c)]
                hs, fins = lstm_stack(layers, x, n, st, backend=backend)
                return hs, jax.tree.leaves(fins)

            hs, fins = jax.vmap(one)(xs, LENGTHS, states[0].h, states[0].c)
            return jnp.sum(hs**2) + sum(jnp.sum(jnp.sin(f)) for f in fins)

        _close(
            jax.value_and_grad(loss)(layers, "fast"), jax.value_and_grad(loss)(layers, "reference")
        )


@pytest.mark.parametrize("features", [2, _fast.IN_LOOP_MAX_FEATURES + 3])
@pytest.mark.parametrize("first", ["xs", "gates", "const"])
def test_stack_every_first_input_and_projection_matches_reference(first, features):
    """The stack function's layer-0 inputs (xs, per-step gates, constant
    gates) with the input projection in the loop (few features) and hoisted
    out of it (many), values and gradients of everything it returns, with an
    initial state on every layer and padded lengths."""
    k = jax.random.split(jax.random.PRNGKey(11), 6)
    sizes = (features + 1, 3)  # layer 1 sees features + 1 inputs: the other projection path
    layers = la.nn.init_stack(k[0], features, sizes)
    g = 4 * sizes[0]
    inp = {"xs": jax.random.normal(k[1], (B, T, features)), "gates": jax.random.normal(k[2], (B, T, g)),
           "const": jax.random.normal(k[3], (B, g))}[first]
    h0 = [jax.random.normal(k[4], (B, s)) for s in sizes]
    c0 = [jax.random.normal(k[5], (B, s)) for s in sizes]

    def loss(layers, inp, h0, c0, backend):
        def one(x, n, h0, c0):
            states = [LSTMState(h, c) for h, c in zip(h0, c0)]
            xs, gates = (x, None) if first == "xs" else (None, x)
            hs, fins = lstm_stack(layers, xs, n, states, first_gates=gates, steps=T, backend=backend)
            return hs, fins

        hs, fins = jax.vmap(one)(inp, LENGTHS, h0, c0)
        return jnp.sum(jnp.sin(hs) * hs) + sum(jnp.sum(jnp.cos(f)) for f in jax.tree.leaves(fins)), hs

    grad = lambda b: jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(layers, inp, h0, c0, b)  # noqa: E731
    _close(grad("fast"), grad("reference"))


def test_stack_input_errors():
    layers = la.nn.init_stack(jax.random.PRNGKey(0), F, (4,))
    with pytest.raises(ValueError, match="steps=T"):
        lstm_stack(layers, None, 3, first_gates=jnp.zeros(16))
    with pytest.raises(ValueError, match="not both"):
        lstm_stack(layers, jnp.zeros((T, F)), 3, first_gates=jnp.zeros((T, 16)))
    with pytest.raises(ValueError, match="xs of shape"):
        lstm_stack(layers, None, 3)
    bi = la.nn.init_stack(jax.random.PRNGKey(0), F, (4,), bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional first layer"):
        lstm_stack(bi, None, 3, first_gates=jnp.zeros((T, 16)))


@pytest.mark.parametrize("name", sorted(la.nn.DECODERS))
def test_every_decoder_model_matches_reference(name):
    e = 7  # divides T for latent_as_sequence
    x = jax.random.normal(jax.random.PRNGKey(5), (B, T, F))
    key = jax.random.PRNGKey(6)
    results = {}
    for backend in ("reference", "fast"):
        model = la.make_autoencoder(la.lstm_encoder((e,), backend=backend), _decoder(name, e, backend), features=F)
        params = model.init(jax.random.PRNGKey(0))
        results[backend] = jax.value_and_grad(model.loss)(params, x, LENGTHS, key, train=True)
    _close(results["fast"], results["reference"])


def _decoder(name, e, backend):
    kw = {"backend": backend}
    return {
        "repeat": la.repeat((5,), **kw),
        "latent_as_sequence": la.latent_as_sequence((5,), steps=T, **kw),
        "teacher_forced": la.teacher_forced((5,), **kw),
        "conditional": la.conditional((5,), **kw),
        "unconditioned": la.unconditioned((5,), **kw),
    }[name]


@pytest.mark.parametrize("chunk", [3])
def test_remat_matches_the_plain_stack(chunk):
    """Chunked checkpointing changes memory, never values or gradients (T=7
    is not a multiple of 3 or 10: the padding chunk must be exact)."""
    x = jax.random.normal(jax.random.PRNGKey(7), (B, T, F))
    out = []
    for backend, remat in (("reference", None), ("fast", chunk)):
        model = la.make_autoencoder(
            la.lstm_encoder((6, 4), backend=backend, remat=remat),
            la.repeat((4, 6), backend=backend, remat=remat),
            features=F,
        )
        params = model.init(jax.random.PRNGKey(0))
        out.append(jax.value_and_grad(model.loss)(params, x, LENGTHS))
    _close(out[1], out[0])


@pytest.mark.parametrize("name", sorted(la.nn.DECODERS))
def test_remat_with_the_head_inside_the_chunks_matches_the_plain_model(name):
    """Every decoder under remat (the model's head passed into the decoder,
    applied per chunk) against the plain reference model: loss and gradients,
    in training (teacher forcing / scheduled sampling) and inference."""
    e = 7
    x = jax.random.normal(jax.random.PRNGKey(8), (B, T, F))
    key = jax.random.PRNGKey(9)
    out = {}
    for backend, remat in (("reference", None), ("fast", 3)):
        kw = {"backend": backend, "remat": remat}
        dec = {
            "repeat": la.repeat((6, 5), **kw),
            "latent_as_sequence": la.latent_as_sequence((5,), steps=T, **kw),
            "teacher_forced": la.teacher_forced((5, 4), **kw),
            "conditional": la.conditional((5,), teacher_prob=0.5, **kw),
            "unconditioned": la.unconditioned((5, 4), **kw),
        }[name]
        model = la.make_autoencoder(la.lstm_encoder((e,), **kw), dec, features=F)
        params = model.init(jax.random.PRNGKey(0))
        out[backend] = [jax.value_and_grad(model.loss)(params, x, LENGTHS, key, train=train) for train in (True, False)]
        out[backend].append(model.reconstruct(params, x, LENGTHS))
    _close(out["fast"], out["reference"])


def test_stack_out_is_applied_to_the_top_outputs_with_and_without_remat():
    layers = la.nn.init_stack(jax.random.PRNGKey(0), F, (6, 4))
    w = jax.random.normal(jax.random.PRNGKey(1), (4, 2))

    def loss(layers, w, backend, remat, fused):
        def one(x, n):
            if fused:
                return lstm_stack(layers, x, n, backend=backend, remat=remat, out=lambda h: jnp.tanh(h @ w))[0]
            return jnp.tanh(lstm_stack(layers, x, n, backend=backend, remat=remat)[0] @ w)

        ys = jax.vmap(one)(jax.random.normal(jax.random.PRNGKey(2), (B, T, F)), LENGTHS)
        return jnp.sum(jnp.sin(ys)), ys

    ref = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(layers, w, "reference", None, False)
    for backend, remat in (("reference", None), ("fast", None), ("fast", 3), ("reference", 2)):
        got = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(layers, w, backend, remat, True)
        assert got[0][1].shape == (B, T, 2)
        _close(got, ref)


def test_remat_training_memory_does_not_keep_the_top_decoder_outputs():
    """XLA's temporary buffers of the train step grow with T by much less than
    the top decoder layer's outputs (B * H floats per step) would take."""
    b, h, f, chunk = 8, 256, 1, 50
    kw = {"backend": "fast", "remat": chunk}
    model = la.make_autoencoder(la.lstm_encoder((16,), **kw), la.repeat((h,), **kw), features=f)
    opt = la.make_optimizer(1e-3)
    state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
    temp = {}
    for t in (400, 800):
        batch = la.Batch(jnp.zeros((b, t, f)), jnp.full((b,), t, jnp.int32))
        stats = jax.jit(la.train.train_step_fn(model, opt)).lower(state, batch).compile().memory_analysis()
        temp[t] = stats.temp_size_in_bytes
    per_step = (temp[800] - temp[400]) / 400
    assert per_step < b * h * 4 / 4, (temp, per_step)  # hs alone would be b * h * 4 bytes per step


def test_remat_rejects_bidirectional_and_bad_chunks():
    layers = la.nn.init_stack(jax.random.PRNGKey(0), F, (4,), bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        lstm_stack(layers, jnp.zeros((T, F)), 3, remat=2)
    with pytest.raises(ValueError, match=">= 1"):
        lstm_stack(la.nn.init_stack(jax.random.PRNGKey(0), F, (4,)), jnp.zeros((T, F)), 3, remat=0)


def test_backends_are_a_closed_set_resolved_when_traced(monkeypatch):
    with pytest.raises(ValueError, match="unknown LSTM backend 'nope'"):
        la.lstm_encoder((4,), backend="nope")
    assert [_dispatch.resolve_backend("auto", p) for p in ("cpu", "gpu", "tpu")] == ["fast", "cudnn", "fast"]
    assert _dispatch.resolve_backend("pallas", "cpu") == "pallas"  # a concrete name is kept
    # an Enum with a str mixin: members and plain names are interchangeable, and specs keep plain strings
    assert la.nn.Backend.FAST == "fast" and la.nn.Backend("cudnn") is la.nn.Backend.CUDNN
    assert la.nn.BACKENDS == tuple(b.value for b in la.nn.Backend) and all(type(b) is str for b in la.nn.BACKENDS)
    assert type(_dispatch.check_backend(la.nn.Backend.PALLAS)) is str
    assert _dispatch.resolve_backend(la.nn.Backend.AUTO, "gpu") == "cudnn"
    with pytest.raises(ValueError, match=r"unknown LSTM backend 'nope'; choose one of \('auto', 'reference'"):
        _dispatch.check_backend("nope")
    calls = []
    real = _dispatch.stack_function

    def spy(backend, *, unroll=1):
        fn = real(backend, unroll=unroll)

        def stack(layers, inp, lengths, states, *, first, steps):
            calls.append((backend, first, inp.shape))
            return fn(layers, inp, lengths, states, first=first, steps=steps)

        return stack

    monkeypatch.setattr(_dispatch, "stack_function", spy)
    model = la.make_autoencoder(la.lstm_encoder((H,), backend="fast"), la.repeat((H,), backend="fast"), features=F)
    params = model.init(jax.random.PRNGKey(0))
    _, xs, _, _ = _data(8)
    jax.grad(model.loss)(params, xs, LENGTHS)
    # one batched call per stack, on the whole batch (no per-example calls)
    assert calls == [("fast", "xs", (B, T, F)), ("fast", "const", (B, 4 * H))]


def test_new_lengths_do_not_recompile():
    """Lengths are data: a long-sequence model compiles once for any lengths."""
    model = la.recurrent_autoencoder(F, 4)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))

    def grad_fn(params, x, lengths):
        return jax.grad(model.loss)(params, x, lengths)

    grad = jax.jit(chex.assert_max_traces(grad_fn, n=1))
    for lengths in ([7, 7, 7, 7], [1, 2, 3, 4], [7, 1, 4, 6]):
        jax.block_until_ready(grad(params, x, jnp.asarray(lengths, jnp.int32)))
