"""The encoder's readout (``lstm_encoder(pooling=...)``) against a float64
NumPy loop over the valid steps: values and gradients with ragged lengths,
uni- and bidirectional, projected or not; padding and batch invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
from jax_lstm_ae.nn.encoder import POOLINGS
from reference import np_stack

B, T, F = 3, 7, 2
LENGTHS = np.array([7, 4, 1])  # full, ragged, a single step
SIZES = (5, 3)
CASES = [(p, bi, proj) for p in POOLINGS for bi in (False, True) for proj in (False, True)]


def _encoder(pooling, bidirectional, projected, backend="auto"):
    return la.lstm_encoder(SIZES, pooling=pooling, bidirectional=bidirectional, latent_dim=4 if projected else None,
                           backend=backend)


def _np_encode(params, x, length, pooling, bidirectional):
    """One example, plain float64 loop: the top layer's last valid state and
    the mean of its outputs over steps t < length, read out as asked."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    hs, finals = np_stack(p["lstm"], np.asarray(x, np.float64), int(length))
    top = finals[-1]
    last = np.concatenate([top[0][0], top[1][0]]) if bidirectional else top[0]
    mean = hs[:length].sum(axis=0) / length  # written out: only the valid steps count
    z = {"last": last, "mean": mean, "last_mean": np.concatenate([last, mean])}[pooling]
    if "proj" in p:
        z = z @ p["proj"]["w"] + p["proj"]["b"]
    return z


def _setup(pooling, bidirectional, projected, backend="auto"):
    enc = _encoder(pooling, bidirectional, projected, backend)
    params = enc.init(jax.random.PRNGKey(0), F)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (B, T, F)))
    return enc, params, x


def _batched(enc):
    return jax.jit(enc.apply)


def test_latent_size_follows_the_readout():
    for pooling, bi, proj in CASES:
        enc = _encoder(pooling, bi, proj)
        top = SIZES[-1] * (2 if bi else 1)
        assert enc.latent_dim == (4 if proj else top * (2 if pooling == "last_mean" else 1))
        assert enc.pooling == pooling
    assert la.lstm_encoder(SIZES).pooling == "last"  # the default keeps the seeds' readout


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("pooling,bidirectional,projected", CASES)
def test_readout_matches_plain_loop(pooling, bidirectional, projected, backend):
    enc, params, x = _setup(pooling, bidirectional, projected, backend)
    z = np.asarray(_batched(enc)(params, jnp.asarray(x), jnp.asarray(LENGTHS)))
    assert z.shape == (B, enc.latent_dim)
    for i in range(B):
        np.testing.assert_allclose(z[i], _np_encode(params, x[i], LENGTHS[i], pooling, bidirectional),
                                   rtol=1e-5, atol=1e-6)


def _flat(params):
    leaves, treedef = jax.tree.flatten(params)
    sizes = [leaf.size for leaf in leaves]
    vec = np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in leaves])

    def unflat(v):
        parts = np.split(v, np.cumsum(sizes)[:-1])
        return jax.tree.unflatten(treedef, [q.reshape(leaf.shape) for q, leaf in zip(parts, leaves)])

    return vec, unflat


@pytest.mark.parametrize("pooling,bidirectional", [("mean", False), ("last_mean", True)])
def test_gradients_match_finite_differences_of_plain_loop(pooling, bidirectional):
    """d(sum_i <c_i, z_i>)/d(params) for ragged lengths: JAX (float32) vs
    central differences of the float64 loop, every parameter."""
    enc, params, x = _setup(pooling, bidirectional, projected=False)
    c = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (B, enc.latent_dim)), np.float64)
    got = jax.grad(lambda p: jnp.sum(jnp.asarray(c, jnp.float32) * _batched(enc)(p, jnp.asarray(x),
                                                                               jnp.asarray(LENGTHS))))(params)
    vec, unflat = _flat(params)

    def objective(v):
        p = unflat(v)
        return sum(c[i] @ _np_encode(p, x[i], LENGTHS[i], pooling, bidirectional) for i in range(B))

    eps = 1e-6
    fd = np.array([(objective(vec + eps * e) - objective(vec - eps * e)) / (2 * eps) for e in np.eye(vec.size)])
    got_vec, _ = _flat(got)
    np.testing.assert_allclose(got_vec, fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling,bidirectional", [(p, bi) for p in POOLINGS for bi in (False, True)])
def test_padding_never_reaches_the_latent(pooling, bidirectional, projected=True):
    """Garbage past ``length`` (and more of it) changes neither z nor, through
    z, any gradient: the padded inputs get exactly zero gradient."""
    enc, params, x = _setup(pooling, bidirectional, projected)
    longer = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (B, T + 5, F))) * 100.0
    for i, n in enumerate(LENGTHS):
        longer[i, :n] = x[i, :n]
    z = _batched(enc)(params, jnp.asarray(x), jnp.asarray(LENGTHS))
    z_long = _batched(enc)(params, jnp.asarray(longer), jnp.asarray(LENGTHS))
    np.testing.assert_allclose(np.asarray(z_long), np.asarray(z), rtol=1e-5, atol=1e-6)
    dx = jax.grad(lambda xs: jnp.sum(_batched(enc)(params, xs, jnp.asarray(LENGTHS))))(jnp.asarray(longer))
    for i, n in enumerate(LENGTHS):
        assert np.all(np.asarray(dx[i, n:]) == 0.0)
        assert np.any(np.asarray(dx[i, :n]) != 0.0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_latent_does_not_depend_on_the_rest_of_the_batch(pooling):
    model = la.make_autoencoder(_encoder(pooling, False, False), la.repeat((4, 5)), la.linear(), features=F)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))
    z = np.asarray(model.encode(params, x, jnp.asarray(LENGTHS)))
    for i in range(B):
        alone = np.asarray(model.encode(params, x[i:i + 1], jnp.asarray(LENGTHS[i:i + 1])))
        np.testing.assert_allclose(alone[0], z[i], rtol=1e-5, atol=1e-6)
    # the autoencoder trains through the pooled latent: a finite loss and gradient
    loss, grads = jax.value_and_grad(model.loss)(params, x, jnp.asarray(LENGTHS))
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_length_zero_rows_stay_finite(pooling):
    """Data parallelism pads a batch with length-0 rows that must add nothing:
    a 0 / 0 mean would be NaN and poison the loss and every gradient."""
    model = la.make_autoencoder(_encoder(pooling, False, False), la.repeat((4, 5)), la.linear(), features=F)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))
    lengths = jnp.asarray([7, 4, 0])
    z = np.asarray(model.encoder.apply(params["encoder"], x, lengths))
    np.testing.assert_array_equal(z[2], 0.0)  # no valid step: zero state, zero mean
    step = jax.jit(jax.value_and_grad(model.loss))  # traced lengths: as in the sharded train step
    loss, grads = step(params, x, lengths)
    loss_2, grads_2 = step(params, x[:2], lengths[:2])
    np.testing.assert_allclose(float(loss), float(loss_2), rtol=1e-6)
    for g, g_2 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_2)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_2), rtol=1e-5, atol=1e-7)


def test_unknown_pooling_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown pooling 'max'; choose one of \('last', 'mean', 'last_mean'\)"):
        la.lstm_encoder(SIZES, pooling="max")
