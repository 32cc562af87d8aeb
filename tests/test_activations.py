"""Cell activations with Keras's names and semantics, on every path.

``activation`` is applied to the candidate g and to the cell output
(h = o * a(c)); ``recurrent_activation`` to the gates i, f, o. Keras 3's
``hard_sigmoid`` is relu6(x + 3) / 6. The fused backends implement tanh /
sigmoid only; any other pair runs the plain scans on every backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
import reference_model as ref
from jax_lstm_ae.backends import lstm_stack_batched
from jax_lstm_ae.kernels.cell import ACTIVATIONS, gate_math, init_lstm

NP_ACTS = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


def np_lstm(p, xs, length, act, rec):
    """A float64 loop of Keras's LSTM cell (gate order i, f, c, o)."""
    a, r = NP_ACTS[act], NP_ACTS[rec]
    w_i, w_h, b = (np.asarray(v, np.float64) for v in p)
    hidden = w_h.shape[0]
    h, c = np.zeros(hidden), np.zeros(hidden)
    out = np.zeros((xs.shape[0], hidden))
    for t in range(length):
        z = xs[t] @ w_i + h @ w_h + b
        i, f, g, o = np.split(z, 4)
        c = r(f) * c + r(i) * a(g)
        h = r(o) * a(c)
        out[t] = h
    return out, h, c


def test_every_activation_matches_numpy():
    assert set(NP_ACTS) == set(ACTIVATIONS)
    z = np.linspace(-7, 7, 4 * 9)
    c = np.linspace(-2, 2, 9)
    for act in ACTIVATIONS:
        for rec in ("sigmoid", "hard_sigmoid", act):
            got = gate_math(jnp.asarray(z, jnp.float32), jnp.asarray(c, jnp.float32), (act, rec))
            i, f, g, o = np.split(z, 4)
            a, r = NP_ACTS[act], NP_ACTS[rec]
            c_new = r(f) * c + r(i) * a(g)
            np.testing.assert_allclose(got.c, c_new, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.h, r(o) * a(c_new), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act,rec", [("relu", "sigmoid"), ("tanh", "hard_sigmoid")])
def test_layer_follows_keras_semantics_on_every_backend(act, rec):
    params = init_lstm(jax.random.PRNGKey(0), 3, 5)
    xs = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    lengths = np.array([6, 4], np.int32)
    kw = dict(activation=act, recurrent_activation=rec)
    for b in range(2):
        want, _, _ = np_lstm(params, xs[b].astype(np.float64), int(lengths[b]), act, rec)
        hs, _ = la.nn.lstm_layer(params, jnp.asarray(xs[b]), lengths[b], **kw)
        np.testing.assert_allclose(hs, want, rtol=1e-5, atol=1e-5)
    ref = la.nn.lstm_stack_batched([params], jnp.asarray(xs), lengths, backend="reference", **kw)
    for backend in ("fast", "fast_bf16", "pallas", "auto"):  # fused backends fall back to the plain scans
        got = la.nn.lstm_stack_batched([params], jnp.asarray(xs), lengths, backend=backend, **kw)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)


def test_keras_relu_autoencoder_values_and_gradients():
    """LSTM(H, activation='relu') -> RepeatVector(T) -> LSTM(H, activation='relu',
    return_sequences=True) -> TimeDistributed(Dense(F)), the seed's Keras model,
    on the batched (fast-backend) path: values and gradients equal the plain
    per-example reference, and values equal a float64 loop of Keras's cell."""
    F, T, H = 1, 7, 6
    kw = dict(activation="relu", backend="fast")
    model, spec = ref.model_pair(ref.pair("lstm_encoder", (H,), init="orthogonal", **kw),
                                 ref.pair("repeat", (H,), init="orthogonal", **kw), la.linear(), features=F)
    params = model.init(jax.random.PRNGKey(3))
    x = jnp.asarray(np.sin(np.linspace(0, 3, T))[None, :, None].repeat(3, 0) * np.array([1, 0.5, -1])[:, None, None],
                    jnp.float32)
    lengths = jnp.array([7, 5, 7], jnp.int32)
    y = model.reconstruct(params, x, lengths)
    enc, dec, head = params["encoder"]["lstm"][0], params["decoder"]["lstm"][0], params["head"]
    for b in range(3):
        n = int(lengths[b])
        _, z, _ = np_lstm(enc, np.asarray(x[b], np.float64), n, "relu", "sigmoid")
        hs, _, _ = np_lstm(dec, np.repeat(z[None], T, 0), n, "relu", "sigmoid")
        want = hs @ np.asarray(head["w"], np.float64) + np.asarray(head["b"], np.float64)
        np.testing.assert_allclose(y[b, :n], want[:n], rtol=1e-4, atol=1e-5)
    per_example = jax.grad(lambda p: sum(
        jnp.sum(jnp.where(jnp.arange(T)[:, None] < lengths[i],
                          (spec.forward(p, x[i], lengths[i])[1] - x[i]) ** 2, 0.0))
        for i in range(3)) / jnp.sum(lengths))(params)
    batched = jax.grad(lambda p: model.loss(p, x, lengths, train=False))(params)
    for u, v in zip(jax.tree.leaves(batched), jax.tree.leaves(per_example), strict=True):
        np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-6)


def test_activations_in_the_run_config_and_errors():
    cfg = la.train.model_config(2, embedding_dim=4, hidden=(), activation="relu", recurrent_activation="hard_sigmoid")
    model = la.train.build_model(cfg)
    assert cfg["cell"]["activation"] == "relu" and cfg["cell"]["recurrent_activation"] == "hard_sigmoid"
    legacy = {"features": 2, "embedding_dim": 4, "hidden": []}  # a version-1 run saved before the options
    assert la.train.build_model(legacy).spec.cell.activation == "tanh"
    assert la.train.build_model(legacy) is not model
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        la.lstm_encoder((4,), activation="gelu")
    with pytest.raises(ValueError, match="unknown recurrent_activation"):
        la.repeat((4,), recurrent_activation="nope")
    with pytest.raises(ValueError, match="unknown activation"):
        lstm_stack_batched([init_lstm(jax.random.PRNGKey(0), 1, 2)], jnp.zeros((1, 2, 1)), jnp.ones(1, jnp.int32),
                           activation="swish")


def test_encoder_initial_state_as_pytorch_forward_inputs_hidden():
    """``apply(..., initial=)`` starts each layer from the given (h, c), like
    PyTorch's ``encoder(inputs, hidden)``; the package and the per-example
    reference agree."""
    enc, enc_ref = ref.pair("lstm_encoder", (5, 4), backend="fast")
    params = enc.init(jax.random.PRNGKey(0), 3)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    lengths = jnp.array([6, 3], jnp.int32)
    initial = [la.nn.LSTMState(jnp.asarray(rng.normal(size=(2, h)), jnp.float32),
                               jnp.asarray(rng.normal(size=(2, h)), jnp.float32)) for h in (5, 4)]
    z = enc.apply(params, x, lengths, initial)
    for b in range(2):
        one = [la.nn.LSTMState(s.h[b], s.c[b]) for s in initial]
        np.testing.assert_allclose(z[b], enc_ref.apply(params, x[b], lengths[b], one), rtol=1e-5, atol=1e-6)
        # a float64 loop started from the same states
        h_in = np.asarray(x[b], np.float64)
        for layer, st in zip(params["lstm"], one):
            w_i, w_h, bias = (np.asarray(v, np.float64) for v in layer)
            h, c = np.asarray(st.h, np.float64), np.asarray(st.c, np.float64)
            outs = []
            for t in range(int(lengths[b])):
                i, f, g, o = np.split(h_in[t] @ w_i + h @ w_h + bias, 4)
                sig = NP_ACTS["sigmoid"]
                c = sig(f) * c + sig(i) * np.tanh(g)
                h = sig(o) * np.tanh(c)
                outs.append(h)
            h_in = np.asarray(outs)
        np.testing.assert_allclose(z[b], h, rtol=1e-5, atol=1e-5)
    assert not np.allclose(z, enc.apply(params, x, lengths))  # the state mattered
