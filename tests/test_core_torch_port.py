"""Weight import from PyTorch state_dicts given as NumPy arrays.

The references here follow PyTorch's documented nn.LSTM / nn.Linear maths in
float64 NumPy, so the test needs no torch; when torch is installed (the bench
extra) the same weights also go through the real modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
from reference import sigmoid

F, E, T, B = 2, 4, 6, 3


def _torch_lstm_np(sd, prefix, x, reverse=False, suffix=""):
    """PyTorch's nn.LSTM (one layer, batch_first) on x[B, T, F], float64."""
    w_ih, w_hh = sd[f"{prefix}weight_ih_l0{suffix}"], sd[f"{prefix}weight_hh_l0{suffix}"]
    b = sd[f"{prefix}bias_ih_l0{suffix}"] + sd[f"{prefix}bias_hh_l0{suffix}"]
    hid = w_hh.shape[1]
    h = np.zeros((x.shape[0], hid))
    c = np.zeros_like(h)
    out = np.zeros((x.shape[0], x.shape[1], hid))
    for t in (range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])):
        g = x[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, gg, o = np.split(g, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
        h = sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out, h


def _random_state_dict(seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for name, (fin, hid) in {"encoder.rnn1.": (F, 2 * E), "encoder.rnn2.": (2 * E, E),
                             "decoder.rnn1.": (E, E), "decoder.rnn2.": (E, 2 * E)}.items():
        sd[name + "weight_ih_l0"] = rng.uniform(-0.5, 0.5, (4 * hid, fin))
        sd[name + "weight_hh_l0"] = rng.uniform(-0.5, 0.5, (4 * hid, hid))
        sd[name + "bias_ih_l0"] = rng.uniform(-0.5, 0.5, 4 * hid)
        sd[name + "bias_hh_l0"] = rng.uniform(-0.5, 0.5, 4 * hid)
    sd["decoder.output_layer.weight"] = rng.uniform(-0.5, 0.5, (F, 2 * E))
    sd["decoder.output_layer.bias"] = rng.uniform(-0.5, 0.5, F)
    return {k: v.astype(np.float32) for k, v in sd.items()}


def _seed_forward_np(sd, x):
    """The seed RecurrentAutoencoder's forward, batched, float64."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    h1, _ = _torch_lstm_np(sd, "encoder.rnn1.", x)
    _, z = _torch_lstm_np(sd, "encoder.rnn2.", h1)
    rep = np.repeat(z[:, None, :], x.shape[1], axis=1)
    d1, _ = _torch_lstm_np(sd, "decoder.rnn1.", rep)
    d2, _ = _torch_lstm_np(sd, "decoder.rnn2.", d1)
    return z, d2 @ sd["decoder.output_layer.weight"].T + sd["decoder.output_layer.bias"]


def test_recurrent_autoencoder_import_reproduces_the_seed_model():
    sd = _random_state_dict()
    x = np.random.default_rng(1).normal(size=(B, T, F)).astype(np.float32)
    model, params = la.recurrent_autoencoder_from_torch(sd)
    assert (model.features, model.latent_dim) == (F, E)
    z_ref, y_ref = _seed_forward_np(sd, x.astype(np.float64))
    np.testing.assert_allclose(model.encode(params, jnp.asarray(x)), z_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(params, jnp.asarray(x)), y_ref, rtol=1e-5, atol=1e-5)
    # the imported tree has exactly the shapes of a freshly initialised model
    fresh = model.init(jax.random.PRNGKey(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(params)))


def test_stacked_bidirectional_lstm_import():
    rng = np.random.default_rng(2)
    hid, layers = 3, 2
    sd = {}
    for k in range(layers):
        fin = F if k == 0 else 2 * hid
        for sfx in ("", "_reverse"):
            sd[f"lstm.weight_ih_l{k}{sfx}"] = rng.normal(size=(4 * hid, fin)).astype(np.float32)
            sd[f"lstm.weight_hh_l{k}{sfx}"] = rng.normal(size=(4 * hid, hid)).astype(np.float32)
            sd[f"lstm.bias_ih_l{k}{sfx}"] = rng.normal(size=4 * hid).astype(np.float32)
            sd[f"lstm.bias_hh_l{k}{sfx}"] = rng.normal(size=4 * hid).astype(np.float32)
    stack = la.apps.lstm_from_torch(sd, "lstm")
    assert len(stack) == 2 and all(len(layer) == 2 for layer in stack)
    x = rng.normal(size=(1, T, F))
    sd64 = {k: v.astype(np.float64) for k, v in sd.items()}
    inp = x
    for k in range(layers):
        pre = "lstm."
        one = {kk.replace(f"_l{k}", "_l0"): v for kk, v in sd64.items() if f"_l{k}" in kk}
        fwd, _ = _torch_lstm_np(one, pre, inp)
        bwd, _ = _torch_lstm_np(one, pre, inp, reverse=True, suffix="_reverse")
        inp = np.concatenate([fwd, bwd], axis=-1)
    hs, _ = la.nn.lstm_stack(stack, jnp.asarray(x[0], jnp.float32), jnp.int32(T))
    np.testing.assert_allclose(hs, inp[0], rtol=1e-4, atol=1e-5)


def test_import_errors_name_the_problem():
    sd = _random_state_dict()
    with pytest.raises(KeyError, match="no nn.LSTM weights under prefix 'encoder.rnn3.'"):
        la.apps.lstm_from_torch(sd, "encoder.rnn3")
    bad = dict(sd)
    bad["decoder.output_layer.weight"] = np.zeros((F, 3 * E), np.float32)
    with pytest.raises(ValueError, match="not a RecurrentAutoencoder"):
        la.recurrent_autoencoder_from_torch(bad)


def test_against_real_torch_when_installed():
    torch = pytest.importorskip("torch", reason="torch is a bench-only extra (pip install torch==2.13.0)")
    nn = torch.nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn1 = nn.LSTM(F, 2 * E, batch_first=True)
            self.rnn2 = nn.LSTM(2 * E, E, batch_first=True)

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn1 = nn.LSTM(E, E, batch_first=True)
            self.rnn2 = nn.LSTM(E, 2 * E, batch_first=True)
            self.output_layer = nn.Linear(2 * E, F)

    class RecurrentAutoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Enc(), Dec()

        def forward(self, x):
            h, _ = self.encoder.rnn1(x)
            _, (z, _) = self.encoder.rnn2(h)
            rep = z[0][:, None, :].repeat(1, x.shape[1], 1)
            d, _ = self.decoder.rnn1(rep)
            d, _ = self.decoder.rnn2(d)
            return z[0], self.decoder.output_layer(d)

    torch.manual_seed(0)
    net = RecurrentAutoencoder()
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
    with torch.no_grad():
        z_t, y_t = (a.numpy() for a in net(torch.from_numpy(x)))
    model, params = la.recurrent_autoencoder_from_torch({k: v.numpy() for k, v in net.state_dict().items()})
    np.testing.assert_allclose(model.encode(params, jnp.asarray(x)), z_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(params, jnp.asarray(x)), y_t, rtol=1e-5, atol=1e-5)
