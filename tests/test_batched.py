"""The package equals ``jax.vmap`` of the per-example specification.

The model runs each part's one batched ``apply`` on the part's backend;
``tests/reference_model.py`` writes every strategy for one example on plain
scans. For every decoder, head and backend (with ragged lengths, reversed
targets, bidirectional encoders and remat) the two give the same latents,
losses and gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
import reference_model as ref

B, T, F, E = 4, 6, 3, 6
LENGTHS = jnp.array([6, 1, 4, 5], jnp.int32)
TOL = dict(rtol=3e-5, atol=3e-5)


def _decoder(name, backend, remat):
    """(package decoder, per-example reference) for a strategy."""
    kw = {"backend": backend, "remat": remat}
    return {
        "repeat": lambda: ref.pair("repeat", (5, 4), **kw),
        "latent_as_sequence": lambda: ref.pair("latent_as_sequence", (5,), steps=T, **kw),
        "teacher_forced": lambda: ref.pair("teacher_forced", (E, 4), **kw),  # reverse_target=True
        "teacher_forced_copy": lambda: ref.pair("teacher_forced", (E,), state_init="copy", reverse_target=False,
                                                **kw),
        "teacher_forced_state": lambda: ref.pair("teacher_forced", (E, 4), first_output="state", **kw),
        "conditional": lambda: ref.pair("conditional", (5,), teacher_prob=0.5, **kw),
        "unconditioned": lambda: ref.pair("unconditioned", (5, 4), **kw),
    }[name]()


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), **TOL)


def _check(models, x, lengths):
    """(package model, reference model): latents, losses and their gradients
    in training and inference mode, and the reconstruction."""
    model, spec = models
    params = model.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)

    @jax.jit  # one compilation per case: the package and the reference, training and inference mode
    def both(params):
        z_batched = model.encode(params, x, lengths)
        z_spec = ref.encode(spec, params, x, lengths)
        z_grad = jax.grad(lambda p: jnp.sum(jnp.sin(model.encode(p, x, lengths))))(params)
        z_grad_spec = jax.grad(lambda p: jnp.sum(jnp.sin(ref.encode(spec, p, x, lengths))))(params)
        got = [jax.value_and_grad(lambda p: model.loss(p, x, lengths, key, train=t))(params) for t in (True, False)]
        want = [jax.value_and_grad(lambda p: ref.loss(spec, p, x, lengths, key, t))(params) for t in (True, False)]
        _, logits = ref.forward(spec, params, x, lengths)
        recon = jnp.where((jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None],
                          jax.vmap(jax.vmap(model.head.activate))(logits), 0.0)
        return (z_batched, z_grad, got, model.reconstruct(params, x, lengths)), (z_spec, z_grad_spec, want, recon)

    got, want = both(params)
    _close(got, want)


DECODER_NAMES = ["repeat", "latent_as_sequence", "teacher_forced", "teacher_forced_copy", "teacher_forced_state",
                 "conditional", "unconditioned"]
# Every decoder on the fast backend; its chunked remat on the three input kinds
# (constant gates, a sequence with initial states, no input); the reference
# backend's batched face (a vmap) on two decoders.
CASES = ([(name, "fast", None) for name in DECODER_NAMES]
         + [(name, "fast", 4) for name in ("repeat", "teacher_forced", "unconditioned")]
         + [(name, "reference", None) for name in ("latent_as_sequence", "conditional")])


@pytest.mark.parametrize("name,backend,remat", CASES)
def test_every_decoder_and_backend(name, backend, remat):
    e = 12 if name == "latent_as_sequence" else E
    models = ref.model_pair(ref.pair("lstm_encoder", (7, e), backend=backend, remat=remat),
                            _decoder(name, backend, remat), la.linear(), features=F)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, T, F))
    _check(models, x, LENGTHS)


@pytest.mark.parametrize("pooling", ["last", "mean", "last_mean"])
def test_bidirectional_encoders_and_readouts(pooling, backend="fast"):
    enc = ref.pair("lstm_encoder", (5, 4), bidirectional=True, pooling=pooling, latent_dim=E, backend=backend)
    models = ref.model_pair(enc, ref.pair("teacher_forced", (E,), backend=backend), la.linear("mae"), features=F)
    x = jax.random.normal(jax.random.PRNGKey(2), (B, T, F))
    _check(models, x, LENGTHS)


def test_sigmoid_and_softmax_heads(backend="fast"):
    x = (jax.random.uniform(jax.random.PRNGKey(3), (B, T, F)) < 0.5).astype(jnp.float32)
    models = ref.model_pair(ref.pair("lstm_encoder", (E,), backend=backend),
                            ref.pair("conditional", (5,), backend=backend), la.sigmoid(), features=F)
    _check(models, x, LENGTHS)
    v = 5
    tokens = jax.random.randint(jax.random.PRNGKey(4), (B, T), 0, v)
    models = ref.model_pair(ref.pair("lstm_encoder", (E,), vocab_size=v, token_dim=3, backend=backend),
                            ref.pair("teacher_forced", (E,), backend=backend))
    _check(models, tokens, LENGTHS)


def test_final_state_decoder(backend="fast"):
    """The Keras answer's Reshape -> LSTM -> Reshape decoder (identity head: W = F)."""
    models = ref.model_pair(ref.pair("lstm_encoder", (7, 12), backend=backend),
                            ref.pair("final_state", (T * F,), steps=T, latent_steps=4, backend=backend),
                            la.nn.identity(), features=F)
    _check(models, jax.random.normal(jax.random.PRNGKey(6), (B, T, F)), LENGTHS)


def test_encoder_dropout_and_initial_states(backend="fast"):
    """Dropout between the encoder's layers in training (the model splits each
    example's key), and a given initial state, against the reference."""
    enc, enc_ref = ref.pair("lstm_encoder", (6, 5), dropout=0.4, backend=backend)
    models = ref.model_pair((enc, enc_ref), ref.pair("repeat", (5,), backend=backend), features=F)
    _check(models, jax.random.normal(jax.random.PRNGKey(8), (B, T, F)), LENGTHS)
    params = enc.init(jax.random.PRNGKey(1), F)
    x = jax.random.normal(jax.random.PRNGKey(9), (B, T, F))
    initial = [la.nn.LSTMState(jax.random.normal(jax.random.PRNGKey(h), (B, h)),
                               jax.random.normal(jax.random.PRNGKey(h + 1), (B, h))) for h in (6, 5)]
    keys = jax.random.split(jax.random.PRNGKey(10), B)

    def batched(p):
        return jnp.sum(jnp.sin(enc.apply(p, x, LENGTHS, initial, keys)))

    def spec(p):
        return jnp.sum(jnp.sin(jax.vmap(enc_ref.apply, in_axes=(None, 0, 0, 0, 0))(p, x, LENGTHS, initial, keys)))

    _close(jax.value_and_grad(batched)(params), jax.value_and_grad(spec)(params))


def test_a_user_written_decoder_is_a_vmapped_per_example_function():
    """A decoder written for one example joins the model as ``jax.vmap`` of it."""
    base, one = ref.pair("repeat", (5,), backend="reference")

    def apply(params, z, lengths, targets=None, keys=None, *, steps, readout, head):
        return jax.vmap(lambda zz, ll: one.apply(params, zz, ll, steps=steps, readout=readout, head=head))(z, lengths)

    plain = base._replace(apply=apply)
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


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_composite_matches_the_per_example_reference(backend):
    """The composite model (one encoder, a reversed conditional reconstructor
    with scheduled sampling, a teacher-forced predictor) on the parts' batched
    applies equals the per-example composite, vmapped: loss and gradients in
    training and inference, with corrupted encoder inputs."""
    k, t = 3, 9
    enc = ref.pair("lstm_encoder", (7, 6), backend=backend)
    rec = ref.pair("conditional", (6,), teacher_prob=0.5, reverse_target=True, backend=backend)
    pre = ref.pair("teacher_forced", (6,), reverse_target=False, backend=backend)
    model = la.nn.make_composite(enc[0], reconstructor=rec[0], predictor=pre[0], horizon=k, features=F,
                                 predict_weight=0.5)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (B, t, F))
    noisy = x + 0.3 * jax.random.normal(jax.random.PRNGKey(2), x.shape)
    lengths = jnp.array([9, 3, 7, 5], jnp.int32)  # length 3 = K: an empty past
    key = jax.random.PRNGKey(3)

    @jax.jit
    def both(params):
        got, want = [], []
        for train, inputs in ((True, None), (False, None), (True, noisy)):
            got.append(jax.value_and_grad(lambda p: model.loss(p, x, lengths, key, train=train, inputs=inputs))(params))
            want.append(jax.value_and_grad(lambda p: ref.composite_loss(
                enc[1], rec[1], pre[1], model.head, k, 0.5, p, x, lengths, key, train, inputs))(params))
        return got, want

    got, want = both(params)
    _close(got, want)
