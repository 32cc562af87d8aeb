"""Cell and layer against float64 NumPy loops and Flax, gradients against
finite differences, initialisers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jax_lstm_ae as la
from reference import np_layer, np_stack, np_step


def _x64_params(key, f, h, init="uniform"):
    p = la.nn.init_lstm(key, f, h, init)
    return jax.tree.map(lambda a: a.astype(jnp.float64), p)


def test_cell_matches_numpy():
    key = jax.random.PRNGKey(0)
    p = la.nn.init_lstm(key, 3, 5)
    h, c, x = (np.asarray(jax.random.normal(k, (n,))) for k, n in zip(jax.random.split(key, 3), (5, 5, 3)))
    (h1, c1), out = la.nn.lstm_cell(p, la.nn.LSTMState(jnp.asarray(h), jnp.asarray(c)), jnp.asarray(x))
    h_ref, c_ref = np_step(p, h, c, x)
    np.testing.assert_allclose(h1, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1, c_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, h1)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 4, 7])
def test_layer_matches_numpy_float64(reverse, length):
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(1)
        p = _x64_params(key, 3, 4)
        xs = jax.random.normal(key, (7, 3), jnp.float64)
        h0 = jax.random.normal(jax.random.PRNGKey(2), (4,), jnp.float64)
        c0 = jax.random.normal(jax.random.PRNGKey(3), (4,), jnp.float64)
        hs, (h, c) = la.nn.lstm_layer(p, xs, jnp.int32(length), la.nn.LSTMState(h0, c0), reverse=reverse, unroll=3)
        hs_ref, h_ref, c_ref = np_layer(p, xs, length, h0, c0, reverse=reverse)
        np.testing.assert_allclose(hs, hs_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-12)
        assert np.all(np.asarray(hs)[length:] == 0.0)


def test_stack_and_bidirectional_match_numpy():
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(4)
        xs = jax.random.normal(key, (6, 2), jnp.float64)
        for bidi in (False, True):
            layers = la.nn.init_stack(key, 2, (5, 3, 4), bidirectional=bidi)
            layers = jax.tree.map(lambda a: a.astype(jnp.float64), layers)
            hs, finals = la.nn.lstm_stack(layers, xs, jnp.int32(5))
            hs_ref, finals_ref = np_stack(layers, xs, 5)
            np.testing.assert_allclose(hs, hs_ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(
                np.concatenate([np.ravel(a) for a in jax.tree.leaves(finals)]),
                np.concatenate([np.ravel(a) for a in jax.tree.leaves(finals_ref)]),
                rtol=1e-12, atol=1e-12,
            )


def _flax_params_from(p: la.nn.LSTMParams):
    """Our fused [F, 4H] / [H, 4H] weights -> Flax's per-gate kernels."""
    w_i, w_h, b = (np.asarray(a) for a in p)
    hid = w_h.shape[0]
    gates = "ifgo"
    out = {}
    for k, g in enumerate(gates):
        sl = slice(k * hid, (k + 1) * hid)
        out[f"i{g}"] = {"kernel": w_i[:, sl]}
        out[f"h{g}"] = {"kernel": w_h[:, sl], "bias": b[sl]}
    return {"params": {"cell": out}}  # LSTMCell and OptimizedLSTMCell share this layout


@pytest.mark.parametrize("cell_cls", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_layer_matches_flax_cells(cell_cls):
    key = jax.random.PRNGKey(5)
    f, hid, t = 3, 6, 9
    p = la.nn.init_lstm(key, f, hid, "orthogonal")
    xs = jax.random.normal(key, (2, t, f))
    variables = _flax_params_from(p)
    rnn = nn.RNN(cell_cls(features=hid))
    lengths = jnp.array([t, 5])
    ys_flax = rnn.apply(variables, xs, seq_lengths=lengths)
    ys, _ = jax.vmap(lambda x, n: la.nn.lstm_layer(p, x, n))(xs, lengths)
    mask = (jnp.arange(t)[None, :] < lengths[:, None])[..., None]
    np.testing.assert_allclose(ys, jnp.where(mask, ys_flax, 0.0), rtol=1e-5, atol=1e-5)


def test_layer_gradients_match_finite_differences():
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(6)
        p = _x64_params(key, 2, 3)
        xs = jax.random.normal(key, (5, 2), jnp.float64)

        def f(params, xs):
            hs, (h, c) = la.nn.lstm_layer(params, xs, jnp.int32(4), reverse=False)
            return jnp.sum(hs ** 2) + jnp.sum(h * c)

        check_grads(f, (p, xs), order=2, modes=["rev", "fwd"], eps=1e-6, atol=1e-7, rtol=1e-7)
        g = lambda params, xs: la.nn.lstm_layer(params, xs, jnp.int32(3), reverse=True)[0].sum()  # noqa: E731
        check_grads(g, (p, xs), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7)


def test_padded_steps_get_no_gradient():
    key = jax.random.PRNGKey(7)
    p = la.nn.init_lstm(key, 2, 3)
    xs = jax.random.normal(key, (6, 2))
    dx = jax.grad(lambda x: la.nn.lstm_layer(p, x, jnp.int32(4))[0].sum())(xs)
    assert np.all(np.asarray(dx)[4:] == 0.0) and np.all(np.abs(np.asarray(dx)[:4]) > 0)


def test_initialisers():
    key = jax.random.PRNGKey(8)
    hid = 16
    p = la.nn.init_lstm(key, 5, hid, "uniform")
    bound = 1 / np.sqrt(hid)
    assert np.abs(p.w_i).max() <= bound and np.abs(p.w_h).max() <= bound
    assert np.abs(p.b).max() <= 2 * bound and np.abs(p.b).max() > bound  # sum of two draws
    q = la.nn.init_lstm(key, 5, hid, "orthogonal")
    np.testing.assert_allclose(q.w_h @ q.w_h.T, np.eye(hid), atol=1e-5)
    np.testing.assert_array_equal(q.b, np.r_[np.zeros(hid), np.ones(hid), np.zeros(2 * hid)])
    with pytest.raises(ValueError, match="unknown init"):
        la.nn.init_lstm(key, 5, hid, "xavier")


def test_layer_errors_name_the_problem():
    p = la.nn.init_lstm(jax.random.PRNGKey(0), 3, 4)
    with pytest.raises(ValueError, match=r"shape \(T, F\).*jax.vmap"):
        la.nn.lstm_layer(p, jnp.zeros((2, 5, 3)), jnp.int32(5))
    with pytest.raises(ValueError, match="2 features but the layer expects 3"):
        la.nn.lstm_layer(p, jnp.zeros((5, 2)), jnp.int32(5))
