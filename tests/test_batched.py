"""The batched path equals ``jax.vmap`` of the per-example specification.

The model's batched methods run ``Encoder.apply_batch`` / ``Decoder.apply_batch``
on the parts' backends; the ``*_one`` methods run the per-example functions on
plain scans. For every decoder, head and backend (with ragged lengths,
reversed targets, bidirectional encoders and remat) the two give the same
latents, losses and gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la

B, T, F, E = 4, 6, 3, 6
LENGTHS = jnp.array([6, 1, 4, 5], jnp.int32)
TOL = dict(rtol=3e-5, atol=3e-5)


def _decoder(name, backend, remat):
    kw = {"backend": backend, "remat": remat}
    return {
        "repeat": lambda: la.repeat((5, 4), **kw),
        "latent_as_sequence": lambda: la.latent_as_sequence((5,), steps=T, **kw),
        "teacher_forced": lambda: la.teacher_forced((E, 4), **kw),  # reverse_target=True
        "teacher_forced_copy": lambda: la.teacher_forced((E,), state_init="copy", reverse_target=False, **kw),
        "conditional": lambda: la.conditional((5,), teacher_prob=0.5, **kw),
        "unconditioned": lambda: la.unconditioned((5, 4), **kw),
    }[name]()


def _per_example_loss(model, params, x, lengths, key, train):
    """The loss written from the per-example functions only."""
    keys = jax.random.split(key, x.shape[0])

    def one(xi, li, ki):
        _, logits = model.forward_one(params, xi, li, ki, train=train)
        err = model.head.error(logits, xi)
        return jnp.sum(jnp.where(jnp.arange(x.shape[1]) < li, err, 0.0))

    return jnp.sum(jax.vmap(one)(x, lengths, keys)) / jnp.sum(lengths)


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), **TOL)


def _check(model, x, lengths):
    params = model.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)

    @jax.jit  # one compilation per case: both faces, training and inference mode
    def both(params):
        z_batched = model.encode(params, x, lengths)
        z_spec = jax.vmap(model.encode_one, in_axes=(None, 0, 0))(params, x, lengths)
        got = [jax.value_and_grad(lambda p: model.loss(p, x, lengths, key, train=t))(params) for t in (True, False)]
        want = [jax.value_and_grad(lambda p: _per_example_loss(model, p, x, lengths, key, t))(params)
                for t in (True, False)]
        return (z_batched, got), (z_spec, want)

    got, want = both(params)
    _close(got, want)


DECODER_NAMES = ["repeat", "latent_as_sequence", "teacher_forced", "teacher_forced_copy", "conditional",
                 "unconditioned"]
# Every decoder on the fast backend; its chunked remat on the three input kinds
# (constant gates, a sequence with initial states, no input); the reference
# backend's batched face (a vmap) on two decoders.
CASES = ([(name, "fast", None) for name in DECODER_NAMES]
         + [(name, "fast", 4) for name in ("repeat", "teacher_forced", "unconditioned")]
         + [(name, "reference", None) for name in ("latent_as_sequence", "conditional")])


@pytest.mark.parametrize("name,backend,remat", CASES)
def test_every_decoder_and_backend(name, backend, remat):
    e = 12 if name == "latent_as_sequence" else E
    model = la.make_autoencoder(la.lstm_encoder((7, e), backend=backend, remat=remat),
                                _decoder(name, backend, remat), la.linear(), features=F)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))
    _check(model, x, LENGTHS)


@pytest.mark.parametrize("pooling", ["last", "mean", "last_mean"])
def test_bidirectional_encoders_and_readouts(pooling, backend="fast"):
    enc = la.lstm_encoder((5, 4), bidirectional=True, pooling=pooling, latent_dim=E, backend=backend)
    model = la.make_autoencoder(enc, la.teacher_forced((E,), backend=backend), la.linear("mae"), features=F)
    x = jax.random.normal(jax.random.PRNGKey(2), (B, T, F))
    _check(model, x, LENGTHS)


def test_sigmoid_and_softmax_heads(backend="fast"):
    x = (jax.random.uniform(jax.random.PRNGKey(3), (B, T, F)) < 0.5).astype(jnp.float32)
    model = la.make_autoencoder(la.lstm_encoder((E,), backend=backend), la.conditional((5,), backend=backend),
                                la.sigmoid(), features=F)
    _check(model, x, LENGTHS)
    v = 5
    tokens = jax.random.randint(jax.random.PRNGKey(4), (B, T), 0, v)
    model = la.make_autoencoder(la.lstm_encoder((E,), vocab_size=v, token_dim=3, backend=backend),
                                la.teacher_forced((E,), backend=backend))
    _check(model, tokens, LENGTHS)


def test_a_decoder_without_a_batched_face_is_vmapped():
    """A user-written decoder needs only the per-example apply."""
    base = la.repeat((5,), backend="reference")
    plain = base._replace(apply_batch=None)
    x = jax.random.normal(jax.random.PRNGKey(5), (B, T, F))
    m1 = la.make_autoencoder(la.lstm_encoder((E,)), base, features=F)
    m2 = m1.replace(decoder=plain)
    params = m1.init(jax.random.PRNGKey(0))
    _close(jax.grad(m1.loss)(params, x, LENGTHS), jax.grad(m2.loss)(params, x, LENGTHS))


def test_replace_checks_the_new_parts():
    model = la.make_autoencoder(la.lstm_encoder((E,)), la.repeat((5,)), features=F)
    assert model.replace(decoder=la.unconditioned((5,))).decoder.name == "unconditioned"
    with pytest.raises(ValueError, match="softmax head is for token inputs"):
        model.replace(head=la.softmax(4))
    with pytest.raises(TypeError, match="replace takes"):
        model.replace(decoderr=la.repeat((5,)))
