"""The cuDNN path: parameter mapping against ``jax.experimental.rnn`` and the
layer semantics against the scan (values and gradients, padded lengths,
reverse). On CPU the layer runs ``rnn.lstm_ref`` (JAX's scan model of cuDNN)
on the packed weights; the cuDNN kernels themselves are tested on a GPU only.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

from jax_lstm_ae.kernels.cell import LSTMParams, LSTMState
from jax_lstm_ae.kernels.cudnn import (
    cudnn_available,
    cudnn_bidirectional_xs,
    flip_valid,
    from_cudnn_weights,
    make_cudnn_layer,
    to_cudnn_weights,
)
from jax_lstm_ae.kernels.reference import project_inputs, scan_gates

cuda_only = pytest.mark.skipif(not cudnn_available(), reason="needs a CUDA GPU with JAX's cuDNN RNN")

B, T, F, H = 5, 6, 3, 4
LENGTHS = np.array([6, 3, 1, 0, 5], np.int32)


def _params(rng, f_in, hidden):
    """PyTorch's uniform init, drawn with NumPy (no compilation: tests stay fast)."""
    bound = 1 / np.sqrt(hidden)
    return LSTMParams(*(jnp.asarray(rng.uniform(-bound, bound, s), jnp.float32)
                        for s in ((f_in, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,))))


@functools.lru_cache(maxsize=None)
def _data():
    rng = np.random.default_rng(0)
    p, q = _params(rng, F, H), _params(rng, F, H)
    xs, h0, c0, weights = (jnp.asarray(a, jnp.float32) for a in (
        rng.normal(size=(B, T, F)), 0.5 * rng.normal(size=(B, H)), 0.5 * rng.normal(size=(B, H)),
        rng.normal(size=(B, T, H))))
    return p, q, xs, h0, c0, weights


def _compiled(fn):
    """jit, with XLA's backend optimisations off on CPU: these small programs
    then compile several times faster, with the same float32 numerics."""
    jitted = jax.jit(fn)
    opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}

    def run(*args):
        # float32 dots everywhere (no TF32 on a GPU), so both sides compute the same maths
        with jax.default_matmul_precision("highest"):
            return jitted.trace(*args).lower().compile(compiler_options=opts)(*args)

    return run


def scan_layer_xs(params, xs, lengths, h0, c0, *, reverse=False):
    gx = jax.vmap(project_inputs, in_axes=(None, 0))(params, xs)
    hs, (h, c) = jax.vmap(lambda g, n, h, c: scan_gates(params, g, n, LSTMState(h, c), reverse=reverse))(
        gx, lengths, h0, c0
    )
    return hs, h, c


def _outputs_and_grads(layer_fn, reverse, weights, lengths, gates=False):
    def loss(params, xs, h0, c0):
        inputs = jax.vmap(project_inputs, in_axes=(None, 0))(params, xs) if gates else xs
        out = layer_fn(params, inputs, lengths, h0, c0, reverse=reverse)
        hs, h, c = out
        return jnp.sum(hs * weights) + jnp.sum(jnp.sin(h)) + jnp.sum(c * c), out

    grad = jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
    return _compiled(lambda *a: grad(*a)[::-1])


def _assert_close(a, b, atol=1e-5, rtol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


# ---------------------------------------------------------------- mapping


def test_packing_follows_cudnn_layout():
    p, q, *_ = _data()
    r = _params(np.random.default_rng(9), H, H)

    @jax.jit
    def pack_unpack(p, q, r):
        flat = to_cudnn_weights([p, r])
        return (flat, rnn.unpack_lstm_weights(flat, F, H, 2, False), from_cudnn_weights(flat, F, H, 2),
                from_cudnn_weights(to_cudnn_weights([(p, q)], bidirectional=True), F, H, 1, bidirectional=True))

    flat, (w_ih, w_hh, b_ih, b_hh), back, pairs = pack_unpack(p, q, r)
    assert flat.shape == (rnn.get_num_params_in_lstm(F, H, 2, False),)
    for k, layer in enumerate((p, r)):
        np.testing.assert_array_equal(w_ih[k], np.asarray(layer.w_i).T)
        np.testing.assert_array_equal(w_hh[k], np.asarray(layer.w_h).T)
        np.testing.assert_array_equal(b_ih[k] + b_hh[k], layer.b)
    _assert_close(back, [p, r], atol=0, rtol=0)
    _assert_close(pairs, [(p, q)], atol=0, rtol=0)


def test_from_cudnn_weights_runs_like_lstm_ref():
    """Weights drawn in cuDNN's layout (b_hh != 0) give our scan the outputs
    of rnn.lstm_ref, including padded lengths and the bidirectional flip."""
    _, _, xs, h0, c0, _ = _data()
    lengths = jnp.asarray(np.maximum(LENGTHS, 1))  # lstm_ref needs length >= 1

    def both(flat, xs, h0, c0):
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, F, H, 1, True)
        want = rnn.lstm_ref(
            xs, jnp.stack([h0, h0]), jnp.stack([c0, c0]), w_ih, w_hh, b_ih, b_hh, lengths, F, H, 1, 0.0, True
        )
        [(fwd, bwd)] = from_cudnn_weights(flat, F, H, 1, bidirectional=True)
        hs_f, h_f, c_f = scan_layer_xs(fwd, xs, lengths, h0, c0)
        hs_b, h_b, c_b = scan_layer_xs(bwd, xs, lengths, h0, c0, reverse=True)
        got = (jnp.concatenate([hs_f, hs_b], axis=-1), jnp.stack([h_f, h_b]), jnp.stack([c_f, c_b]))
        return got, want

    flat = rnn.init_lstm_weight(jax.random.key(3), F, H, 1, True)
    assert float(jnp.max(jnp.abs(flat[-8 * H :]))) > 0  # b_ih and b_hh both non-zero
    got, want = _compiled(both)(flat, xs, h0, c0)
    _assert_close(got, want)


def test_flip_valid_reverses_within_length():
    xs = jnp.arange(2 * 4, dtype=jnp.float32).reshape(2, 4)
    flipped = flip_valid(xs, jnp.array([3, 0], jnp.int32))
    np.testing.assert_array_equal(flipped, [[2, 1, 0, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(flip_valid(flipped, jnp.array([3, 0], jnp.int32)), xs)


def test_mapping_errors_say_what_to_do():
    p = _data()[0]
    wider = LSTMParams(np.zeros((H, 4 * H + 4)), np.zeros((H + 1, 4 * H + 4)), np.zeros(4 * H + 4))
    with pytest.raises(ValueError, match="same hidden size"):
        to_cudnn_weights([p, wider])
    with pytest.raises(ValueError, match="expected"):
        from_cudnn_weights(jnp.zeros(7), F, H)
    with pytest.raises(ValueError, match="takes"):
        make_cudnn_layer(takes="ys")
    if not cudnn_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            make_cudnn_layer(impl="cudnn")


# ---------------------------------------------------------------- layer semantics


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_matches_scan(reverse):
    """xs form (cuDNN's own projection) and the shared gate form, values and gradients."""
    p, _, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    want = _outputs_and_grads(scan_layer_xs, reverse, weights, lengths)(p, xs, h0, c0)
    got = _outputs_and_grads(make_cudnn_layer(takes="xs", impl="reference"), reverse, weights, lengths)(p, xs, h0, c0)
    _assert_close(got, want)
    # empty row: initial state back, outputs zero
    np.testing.assert_array_equal(np.asarray(got[0][1])[3], np.asarray(h0)[3])
    assert not np.any(np.asarray(got[0][0])[LENGTHS[:, None] <= np.arange(T)[None, :]])

    gated = _outputs_and_grads(make_cudnn_layer(impl="reference"), reverse, weights, lengths, gates=True)
    _assert_close(gated(p, xs, h0, c0), want)


def test_bidirectional_matches_two_scans():
    p, q, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    zeros = jnp.zeros_like(h0)

    def loss(run):
        def f(p, q, xs, h0):
            hs, ((h_f, c_f), (h_b, c_b)) = run(p, q, xs, h0)
            return jnp.sum(hs[..., :H] * weights) + jnp.sum(hs[..., H:] * weights ** 2) + jnp.sum(
                jnp.sin(h_f) + c_f * h_b + c_b
            ), (hs, h_f, c_f, h_b, c_b)

        return _compiled(jax.grad(f, argnums=(0, 1, 2, 3), has_aux=True))

    def two_scans(p, q, xs, h0):
        hs_f, h_f, c_f = scan_layer_xs(p, xs, lengths, h0, c0)
        hs_b, h_b, c_b = scan_layer_xs(q, xs, lengths, zeros, zeros, reverse=True)
        return jnp.concatenate([hs_f, hs_b], axis=-1), ((h_f, c_f), (h_b, c_b))

    def cudnn(p, q, xs, h0):
        return cudnn_bidirectional_xs(p, q, xs, lengths, h0, c0, impl="reference")

    _assert_close(loss(cudnn)(p, q, xs, h0), loss(two_scans)(p, q, xs, h0))


# ---------------------------------------------------------------- GPU only


@cuda_only
@pytest.mark.parametrize("reverse", [False, True])
def test_cudnn_kernels_match_reference(reverse):
    p, _, xs, h0, c0, weights = _data()
    lengths = jnp.asarray(LENGTHS)
    want = _outputs_and_grads(scan_layer_xs, reverse, weights, lengths)(p, xs, h0, c0)
    got = _outputs_and_grads(make_cudnn_layer(takes="xs", impl="cudnn"), reverse, weights, lengths)(p, xs, h0, c0)
    _assert_close(got, want, atol=1e-4, rtol=1e-4)
