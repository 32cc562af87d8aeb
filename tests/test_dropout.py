"""Inter-layer dropout as PyTorch's ``nn.LSTM(dropout=p)`` applies it: in
training, between layers (not after the last), inverted scaling; never at
inference. The batched face draws each row's mask from that row's key, so it
equals ``jax.vmap`` of the per-example stack."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
import reference_model as ref
from jax_lstm_ae.nn import lstm_stack, lstm_stack_batched

B, T, F = 3, 6, 2
LENGTHS = jnp.array([6, 2, 4], jnp.int32)


def _close(a, b, tol=2e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def test_mask_between_layers_only():
    layers = la.nn.init_stack(jax.random.PRNGKey(0), F, (5, 4, 3))
    x = jax.random.normal(jax.random.PRNGKey(1), (T, F))
    key, rate = jax.random.PRNGKey(2), 0.5
    got, _ = lstm_stack(layers, x, 5, dropout=rate, key=key)
    keys = jax.random.split(key, 2)
    h = x
    for i, layer in enumerate(layers):
        h, _ = lstm_stack([layer], h, 5)
        if i < 2:
            h = jnp.where(jax.random.bernoulli(keys[i], 1 - rate, h.shape), h / (1 - rate), 0.0)
    _close(got, h)
    assert not np.allclose(got, lstm_stack(layers, x, 5)[0])
    _close(lstm_stack(layers, x, 5, dropout=rate)[0], lstm_stack(layers, x, 5)[0])  # no key: no dropout
    with pytest.raises(ValueError, match="probability"):
        lstm_stack(layers, x, 5, dropout=1.0, key=key)


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_batched_equals_per_example(backend):
    layers = la.nn.init_stack(jax.random.PRNGKey(3), F, (5, 4))
    x = jax.random.normal(jax.random.PRNGKey(4), (B, T, F))
    keys = jax.random.split(jax.random.PRNGKey(5), B)

    def batched(ls):
        return jnp.sum(jnp.sin(lstm_stack_batched(ls, x, LENGTHS, dropout=0.3, keys=keys, backend=backend)[0]))

    def per_example(ls):
        one = jax.vmap(lambda xi, n, k: lstm_stack(ls, xi, n, dropout=0.3, key=k)[0])
        return jnp.sum(jnp.sin(one(x, LENGTHS, keys)))

    _close(jax.value_and_grad(batched)(layers), jax.value_and_grad(per_example)(layers))


def test_encoder_dropout_in_training_only():
    kw = dict(backend="fast")
    model, spec_model = ref.model_pair(ref.pair("lstm_encoder", (6, 4), dropout=0.4, **kw),
                                       ref.pair("repeat", (4,), **kw), features=F)
    plain = model.replace(encoder=la.lstm_encoder((6, 4), **kw))
    params = model.init(jax.random.PRNGKey(6))
    x = jax.random.normal(jax.random.PRNGKey(7), (B, T, F))
    key = jax.random.PRNGKey(8)
    # inference: no dropout
    _close(model.encode(params, x, LENGTHS), plain.encode(params, x, LENGTHS))
    _close(model.loss(params, x, LENGTHS, key, train=False), plain.loss(params, x, LENGTHS, key, train=False))
    # training: dropout, the batched loss equals the per-example reference's
    trained = jax.value_and_grad(lambda p: model.loss(p, x, LENGTHS, key, train=True))(params)
    assert not np.isclose(float(trained[0]), float(plain.loss(params, x, LENGTHS, key, train=True)))
    keys = jax.random.split(key, B)

    def spec(p):
        def one(xi, n, k):
            _, logits = spec_model.forward(p, xi, n, k, train=True)
            err = model.head.error(logits, xi)
            return jnp.sum(jnp.where(jnp.arange(T) < n, err, 0.0))

        return jnp.sum(jax.vmap(one)(x, LENGTHS, keys)) / jnp.sum(LENGTHS).astype(jnp.float32)

    _close(trained, jax.value_and_grad(spec)(params))
