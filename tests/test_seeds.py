"""Every model the public LSTM-autoencoder examples build, reproduced exactly.

Each seed model is built in this library and compared with a float64 NumPy
re-implementation of its framework's semantics (always), and with Keras 3
(JAX backend) or PyTorch themselves when they are installed (the ``bench``
extra). Where the example trains, the gradients are checked too: against
central differences of the NumPy loss, and against the framework's own.

| seed                                                                 | here                                     |
| -------------------------------------------------------------------- | ---------------------------------------- |
| Keras LSTM(100) -> RepeatVector -> LSTM(100) -> TimeDistributed(Dense) | repeat decoder, linear head              |
| the same with activation="relu"                                      | activation="relu" on encoder and decoder |
| Keras LSTM(20) -> Reshape((10, 2)) -> LSTM(5, seq), BCE on the LSTM  | latent_as_sequence + identity("bce")     |
| Keras LSTM(20) -> Reshape((10, 2)) -> LSTM(50) -> Reshape((10, 5))   | final_state decoder, identity head       |
| Keras LSTM -> RepeatVector(n_out != n_in) -> LSTM -> Dense          | Composite predictor                      |
| the moving-ones generator (lengths round(uniform(0, 10)))           | synthetic("moving_one_keras"), API + CLI |
| EncDec-AD (arXiv 1607.00148), the paper's decoder loop               | teacher_forced(first_output="state")     |
| PyTorch EncoderLSTM: nn.Embedding + 2-layer nn.LSTM                  | token_encoder_from_torch                 |
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
from jax_lstm_ae import nn
from jax_lstm_ae.apps import keras_port, torch_port
from jax_lstm_ae.data import count_empty, from_arrays, pad_sequences, synthetic

from jax_lstm_ae.nn.composite import _loss as _composite_loss  # the padded rows data parallelism adds
from reference import sigmoid

# ------------------------------------------------------------------ NumPy references (float64)
ACTS = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": sigmoid,
    "linear": lambda v: v,
    "hard_sigmoid": lambda v: np.clip(v / 6.0 + 0.5, 0.0, 1.0),  # Keras 3: relu6(x + 3) / 6
}


def keras_lstm_np(x, kernel, recurrent_kernel, bias, *, activation="tanh", recurrent_activation="sigmoid",
                  return_sequences=False):
    """Keras's LSTM on x[B, T, F]: gates i, f, c, o of ``x @ kernel + h @ recurrent_kernel + bias``."""
    act, ract = ACTS[activation], ACTS[recurrent_activation]
    kernel, recurrent_kernel, bias = (np.asarray(a, np.float64) for a in (kernel, recurrent_kernel, bias))
    b, t = x.shape[:2]
    hid = recurrent_kernel.shape[0]
    h, c = np.zeros((b, hid)), np.zeros((b, hid))
    hs = np.zeros((b, t, hid))
    for s in range(t):
        z = x[:, s] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = ract(f) * c + ract(i) * act(g)
        h = ract(o) * act(c)
        hs[:, s] = h
    return hs if return_sequences else h


def dense_np(x, kernel, bias):
    return x @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)


def keras_bce_np(p, x, eps=1e-7):
    q = np.clip(p, eps, 1 - eps)
    return float(np.mean(-(x * np.log(q) + (1 - x) * np.log(1 - q))))


def torch_lstm_np(x, sd, prefix, layers):
    """PyTorch's stacked nn.LSTM (batch_first, zero initial state) -> (out[B, T, H], h_n[L, B, H])."""
    h_n = []
    for k in range(layers):
        w_ih, w_hh = sd[f"{prefix}weight_ih_l{k}"], sd[f"{prefix}weight_hh_l{k}"]
        b = sd[f"{prefix}bias_ih_l{k}"] + sd[f"{prefix}bias_hh_l{k}"]
        hs = keras_lstm_np(x, w_ih.T, w_hh.T, b, return_sequences=True)  # same gate order i, f, g, o
        x = hs
        h_n.append(hs[:, -1])
    return x, np.stack(h_n)


def _rand(rng, *shape, scale=0.5):
    return rng.uniform(-scale, scale, shape).astype(np.float32)


def _lstm_w(rng, f, h):
    return [_rand(rng, f, 4 * h), _rand(rng, h, 4 * h), _rand(rng, 4 * h)]


def _close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


def _directional_check(loss_lib, params, loss_np, weights, to_list, seed=0, n_dirs=3, eps=1e-5, tol=2e-3):
    """<grad loss_lib(params), v> == (loss_np(w + eps v) - loss_np(w - eps v)) / 2 eps
    for random directions v over the weights list (float64 central differences)."""
    g = to_list(jax.grad(loss_lib)(params))
    rng = np.random.default_rng(seed)
    w64 = [np.asarray(w, np.float64) for w in weights]
    for _ in range(n_dirs):
        v = [rng.standard_normal(w.shape) for w in w64]
        fd = (loss_np([w + eps * d for w, d in zip(w64, v)]) - loss_np([w - eps * d for w, d in zip(w64, v)])) / (2 * eps)
        an = sum(float(np.sum(np.asarray(gi, np.float64) * d)) for gi, d in zip(g, v))
        assert abs(an - fd) <= tol * max(1.0, abs(fd)), (an, fd)


# ------------------------------------------------------------------ Keras and torch, when installed
def _keras():
    os.environ["KERAS_BACKEND"] = "jax"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = pytest.importorskip("keras", reason="keras is a bench-only extra (pip install keras)")
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras runs on {keras.backend.backend()!r}; these checks need KERAS_BACKEND=jax")
    return keras


def _keras_model(keras, layers, input_shape, weights):
    with jax.numpy_rank_promotion("allow"):
        model = keras.Sequential([keras.Input(input_shape), *layers])
        model.set_weights(weights)
    return model


def _keras_run(model, x):
    with jax.numpy_rank_promotion("allow"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model(x))


def _keras_grads(keras, model, x, loss):
    """Keras's own gradient of ``loss(y_pred)`` w.r.t. the trainable weights (get_weights order)."""
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def f(tv):
        y, _ = model.stateless_call(tv, ntv, jnp.asarray(x), training=True)
        return loss(y)

    with jax.numpy_rank_promotion("allow"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [np.asarray(g) for g in jax.grad(f)(tv)]


keras_mark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


# ------------------------------------------------------------------ seed 1: RepeatVector autoencoder
T1, F1, H1 = 9, 1, 100  # the seed's sequence 0.1 .. 0.9 and LSTM(100)
SEQ1 = np.linspace(0.1, 0.9, T1, dtype=np.float32).reshape(1, T1, 1)


def _seed1(activation):
    rng = np.random.default_rng(1)
    ws = _lstm_w(rng, F1, H1) + _lstm_w(rng, H1, H1) + [_rand(rng, H1, F1, scale=0.2), _rand(rng, F1)]
    ws = [w * 0.3 for w in ws]  # keep relu activations tame
    layers = [{"class_name": "LSTM", "units": H1, "activation": activation},
              {"class_name": "RepeatVector", "n": T1},
              {"class_name": "LSTM", "units": H1, "activation": activation, "return_sequences": True},
              {"class_name": "TimeDistributed", "config": {"layer": {"class_name": "Dense", "config": {"units": F1}}}}]
    return ws, layers


def _seed1_np(x, ws, activation):
    z = keras_lstm_np(x, *ws[0:3], activation=activation)
    rep = np.repeat(z[:, None, :], x.shape[1], axis=1)
    d = keras_lstm_np(rep, *ws[3:6], activation=activation, return_sequences=True)
    return dense_np(d, ws[6], ws[7])


def _check_seed1(activation):
    ws, layers = _seed1(activation)
    model, params = keras_port.sequential_from_keras(layers, ws, input_shape=(T1, F1), loss="mse")
    x = np.concatenate([SEQ1, SEQ1[:, ::-1]], axis=0)
    want = _seed1_np(x.astype(np.float64), ws, activation)
    _close(model.reconstruct(params, x), want)
    # training: MSE value and gradient
    to_list = lambda g: [*g["encoder"]["lstm"][0], *g["decoder"]["lstm"][0], g["head"]["w"], g["head"]["b"]]  # noqa: E731
    loss_np = lambda w: float(np.mean((_seed1_np(x.astype(np.float64), w, activation) - x) ** 2))  # noqa: E731
    _close(model.loss(params, x), loss_np(ws), 1e-5)
    _directional_check(lambda p: model.loss(p, x), params, loss_np, ws, to_list)
    return model, params, ws, layers, x


def test_seed_repeatvector_autoencoder_tanh():
    _check_seed1("tanh")


def test_seed_repeatvector_autoencoder_relu():
    _check_seed1("relu")


@keras_mark
def test_seed_repeatvector_against_keras():
    keras = _keras()
    model, params, ws, _, x = _check_seed1("tanh")
    km = _keras_model(keras, [keras.layers.LSTM(H1), keras.layers.RepeatVector(T1),
                              keras.layers.LSTM(H1, return_sequences=True),
                              keras.layers.TimeDistributed(keras.layers.Dense(F1))], (T1, F1), ws)
    _close(_keras_run(km, x), model.reconstruct(params, x))
    kg = _keras_grads(keras, km, x, lambda y: jnp.mean(jnp.square(y - x)))
    g = jax.grad(lambda p: model.loss(p, x))(params)
    mine = [*g["encoder"]["lstm"][0], *g["decoder"]["lstm"][0], g["head"]["w"], g["head"]["b"]]
    for a, b in zip(mine, kg):
        _close(a, b, 1e-4)


def test_keras_gate_order_is_ours():
    """Keras's kernel columns are i, f, c, o: a kernel that only drives the
    'c' block moves the cell; one that only drives 'f' does not (c starts at 0)."""
    h = 2
    for block, moves in ((0, False), (1, False), (2, True), (3, False)):
        kernel = np.zeros((1, 4 * h), np.float32)
        kernel[0, block * h : (block + 1) * h] = 3.0
        bias = np.zeros(4 * h, np.float32)
        bias[0:h] = 5.0  # input gate open
        bias[3 * h :] = 5.0  # output gate open
        p = keras_port.lstm_from_keras(kernel, np.zeros((h, 4 * h), np.float32), bias)
        hs, _ = nn.lstm_layer(p, jnp.ones((1, 1)), jnp.int32(1))
        want = keras_lstm_np(np.ones((1, 1, 1)), kernel, np.zeros((h, 4 * h)), bias)[0]
        _close(hs[0], want)
        assert (abs(float(hs[0, 0])) > 0.5) == moves


@keras_mark
def test_keras_lstm_layer_matches_keras():
    keras = _keras()
    rng = np.random.default_rng(2)
    ws = _lstm_w(rng, 3, 4)
    km = _keras_model(keras, [keras.layers.LSTM(4, return_sequences=True)], (6, 3), ws)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    want = keras_lstm_np(x.astype(np.float64), *ws, return_sequences=True)
    _close(_keras_run(km, x), want)
    p = keras_port.lstm_from_keras(*ws)
    got = jax.vmap(lambda xi: nn.lstm_layer(p, xi, jnp.int32(6))[0])(jnp.asarray(x))
    _close(got, want)


# ------------------------------------------------------------------ seed 2/3: Reshape decoders, BCE
T2, F2 = 10, 5


def _seed2(final_state: bool):
    rng = np.random.default_rng(3)
    if final_state:
        ws = _lstm_w(rng, F2, 20) + _lstm_w(rng, 2, 50)
        layers = [{"class_name": "LSTM", "units": 20}, {"class_name": "Reshape", "target_shape": (10, 2)},
                  {"class_name": "LSTM", "units": 50}, {"class_name": "Reshape", "target_shape": (T2, F2)}]
    else:
        ws = _lstm_w(rng, F2, 20) + _lstm_w(rng, 2, F2)
        layers = [{"class_name": "LSTM", "units": 20}, {"class_name": "Reshape", "target_shape": (10, 2)},
                  {"class_name": "LSTM", "units": F2, "return_sequences": True}]
    return ws, layers


def _seed2_np(x, ws, final_state):
    z = keras_lstm_np(x, *ws[0:3]).reshape(x.shape[0], 10, 2)
    if final_state:
        return keras_lstm_np(z, *ws[3:6]).reshape(x.shape[0], T2, F2)
    return keras_lstm_np(z, *ws[3:6], return_sequences=True)


def _binary(b=6, seed=4):
    return (np.random.default_rng(seed).random((b, T2, F2)) < 0.3).astype(np.float32)


@pytest.mark.parametrize("final", [False, True], ids=["latent_as_sequence", "final_state"])
def test_seed_reshape_decoders_with_keras_bce(final):
    ws, layers = _seed2(final)
    model, params = keras_port.sequential_from_keras(layers, ws, input_shape=(T2, F2), loss="binary_crossentropy")
    assert model.head.name == "identity_bce" and params["head"] == {}
    assert model.decoder.name == ("final_state" if final else "latent_as_sequence")
    x = _binary()
    x64 = x.astype(np.float64)
    _close(model.reconstruct(params, x), _seed2_np(x64, ws, final))
    loss_np = lambda w: keras_bce_np(_seed2_np(x64, w, final), x64)  # noqa: E731
    _close(model.loss(params, x), loss_np(ws), 1e-5)
    to_list = lambda g: [*g["encoder"]["lstm"][0], *g["decoder"]["lstm"][0]]  # noqa: E731
    _directional_check(lambda p: model.loss(p, x), params, loss_np, ws, to_list)


@keras_mark
@pytest.mark.parametrize("final", [False, True], ids=["latent_as_sequence", "final_state"])
def test_seed_reshape_decoders_against_keras(final):
    keras = _keras()
    ws, layers = _seed2(final)
    kl = [keras.layers.LSTM(20), keras.layers.Reshape((10, 2))]
    kl += [keras.layers.LSTM(50), keras.layers.Reshape((T2, F2))] if final else [
        keras.layers.LSTM(F2, return_sequences=True)]
    km = _keras_model(keras, kl, (T2, F2), ws)
    model, params = keras_port.sequential_from_keras(
        [{"class_name": "InputLayer", "config": {"batch_shape": [None, T2, F2]}}] + layers, ws,
        loss="binary_crossentropy")
    x = _binary()
    _close(_keras_run(km, x), model.reconstruct(params, x))
    # the same loss and gradients as Keras's binary_crossentropy (clipped probabilities)
    kloss = lambda y: jnp.mean(keras.losses.binary_crossentropy(jnp.asarray(x), y))  # noqa: E731
    with jax.numpy_rank_promotion("allow"):
        _close(kloss(jnp.asarray(_keras_run(km, x))), model.loss(params, x), 1e-5)
    kg = _keras_grads(keras, km, x, kloss)
    g = jax.grad(lambda p: model.loss(p, x))(params)
    for a, b in zip([*g["encoder"]["lstm"][0], *g["decoder"]["lstm"][0]], kg):
        _close(a, b, 1e-4)


def test_identity_head_checks_the_width():
    with pytest.raises(ValueError, match="width must equal F=5, got 7"):
        nn.make_autoencoder(nn.lstm_encoder((4,)), nn.repeat((7,)), nn.identity(), features=5)
    with pytest.raises(ValueError, match="'mse', 'mae' or 'bce'"):
        nn.identity("hinge")
    # values past [0, 1] are clipped as Keras clips them: constant loss, zero gradient
    p = jnp.array([[-0.5, 1.5]])
    x = jnp.array([[0.0, 1.0]])
    _close(nn.keras_binary_crossentropy(p, x), [-np.log(1 - 1e-7)], 1e-6)
    _close(jax.grad(lambda q: nn.keras_binary_crossentropy(q, x).sum())(p), [[0.0, 0.0]])


# ------------------------------------------------------------------ RepeatVector(n_out != n_in): a predictor
@keras_mark
def test_seed_repeatvector_predictor_is_a_composite():
    n_in, n_out, h = 9, 8, 16  # the seed predicts seq_in[1:] from seq_in
    rng = np.random.default_rng(5)
    ws = _lstm_w(rng, 1, h) + _lstm_w(rng, h, h) + [_rand(rng, h, 1), _rand(rng, 1)]
    layers = [{"class_name": "LSTM", "units": h}, {"class_name": "RepeatVector", "n": n_out},
              {"class_name": "LSTM", "units": h, "return_sequences": True}, {"class_name": "Dense", "units": 1}]
    model, params = keras_port.sequential_from_keras(layers, ws, input_shape=(n_in, 1))
    assert isinstance(model, nn.Composite) and model.horizon == n_out and model.reconstructor is None
    x = np.concatenate([SEQ1, SEQ1 * 0.5], axis=0).astype(np.float64)
    z = keras_lstm_np(x, *ws[0:3])
    want = dense_np(keras_lstm_np(np.repeat(z[:, None], n_out, 1), *ws[3:6], return_sequences=True), *ws[6:8])
    _close(model.predict(params, x.astype(np.float32)), want)
    # trained on (past, future) pairs joined back to back, its loss is the seed's MSE
    joined, lengths = nn.join_future(x[:, :, :], None, x[:, 1:])
    _close(model.loss(params, joined.astype(np.float32), lengths), np.mean((want - x[:, 1:]) ** 2), 1e-5)
    try:
        keras = _keras()
    except pytest.skip.Exception:
        return
    km = _keras_model(keras, [keras.layers.LSTM(h), keras.layers.RepeatVector(n_out),
                              keras.layers.LSTM(h, return_sequences=True), keras.layers.Dense(1)], (n_in, 1), ws)
    _close(_keras_run(km, x.astype(np.float32)), want)


# ------------------------------------------------------------------ the composite model
def _composite_np(x, length, k, p_enc, p_rec, p_pre):
    """Srivastava et al.'s composite model with repeat decoders, one example, float64."""
    from reference import np_layer

    past = length - k
    _, z, _ = np_layer(p_enc[0], x, past)
    rep = np.repeat(z[None], x.shape[0], 0)
    hr, _, _ = np_layer(p_rec[0], rep, past)
    yr = dense_np(hr, p_rec[1]["w"], p_rec[1]["b"])
    hp, _, _ = np_layer(p_pre[0], np.repeat(z[None], k, 0), k)
    yp = dense_np(hp, p_pre[1]["w"], p_pre[1]["b"])
    er = np.mean((yr - x) ** 2, axis=-1)[:past]
    ep = np.mean((yp - x[past:length]) ** 2, axis=-1)
    return er, ep


def test_composite_model_values_gradients_and_training():
    k, f, t = 3, 2, 12
    model = nn.make_composite(nn.lstm_encoder((6,)), reconstructor=nn.repeat((6,)), predictor=nn.repeat((6,)),
                              horizon=k, features=f, predict_weight=0.5)
    params = model.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, t, f)).astype(np.float32)
    lengths = np.array([12, 7, 3, 9], np.int32)  # length 3 = K: an empty past
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    er, ep = [], []
    for i in range(4):
        a, b = _composite_np(x[i].astype(np.float64), int(lengths[i]), k, params["encoder"]["lstm"],
                             (params["reconstruct"]["decoder"]["lstm"][0], params["reconstruct"]["head"]),
                             (params["predict"]["decoder"]["lstm"][0], params["predict"]["head"]))
        er.append(a)
        ep.append(b)
    want_r = np.concatenate(er).sum() / (lengths - k).sum()
    want_p = np.concatenate(ep).mean()
    got = model.losses(params, x, lengths)
    _close(got["reconstruct"], want_r, 1e-5)
    _close(got["predict"], want_p, 1e-5)
    _close(model.loss(params, x, lengths, train=False), want_r + 0.5 * want_p, 1e-5)
    # the prediction branch alone is the Autoencoder's decoder on the same latent
    z = model.encode(params, x, lengths - k)
    branch = model.branch("predict")
    pred = branch.decode(model.branch_params(params, "predict"), z, steps=k)
    fut = np.stack([x[i, lengths[i] - k : lengths[i]] for i in range(4)])
    _close(np.mean((np.asarray(pred) - fut) ** 2), want_p, 1e-5)
    # gradients: batching rows of length 0 (data-parallel padding) changes nothing
    padded_x = np.concatenate([x, np.zeros((2, t, f), np.float32)])
    padded_l = np.concatenate([lengths, [0, 0]]).astype(np.int32)
    g1 = jax.grad(lambda p: model.loss(p, x, lengths))(params)
    g2 = jax.grad(lambda p: _composite_loss(model, p, jnp.asarray(padded_x), jnp.asarray(padded_l), None, True,
                                            None))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        _close(a, b, 1e-5)
    with pytest.raises(ValueError, match=r"example 2 has length 2 .* lengths must lie in \[K, T\]"):
        model.loss(params, x, np.array([12, 7, 2, 9]))
    # it trains with the library's own train step (smooth series: something to learn)
    phase = rng.uniform(0, 6, (16, 1, 1))
    x = np.sin(0.4 * np.arange(t)[None, :, None] + phase + np.arange(f)[None, None, :]).astype(np.float32)
    lengths = np.full(16, t, np.int32)
    opt = la.make_optimizer(1e-2)
    state = la.create_train_state(model, opt, jax.random.PRNGKey(1))
    step = la.make_train_step(model, opt)
    first = float(model.loss(state.params, x, lengths, train=False))
    for _ in range(60):
        state, m = step(state, la.Batch(x, lengths))
    assert bool(m["finite"])
    assert float(model.loss(state.params, x, lengths, train=False)) < 0.5 * first


def test_join_future_layout():
    past = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1) + 1
    fut = -np.ones((2, 2, 1), np.float32)
    x, ln = nn.join_future(past, np.array([4, 2]), fut)
    np.testing.assert_array_equal(ln, [6, 4])
    np.testing.assert_array_equal(x[..., 0], [[1, 2, 3, 4, -1, -1], [5, 6, -1, -1, 0, 0]])


# ------------------------------------------------------------------ EncDec-AD: the paper's decoder loop
def _encdec_paper_np(x, length, enc, dec, head, train):
    """Malhotra et al. 2016, Sec. 2.1: h_D(L) = h_E(L); x'(L) = W h_D(L) + b;
    then for i = L-1 .. 1, h_D(i) from input x(i+1) (training) or x'(i+1)
    (inference) and x'(i) = W h_D(i) + b. Returned in input order [T, F]."""
    from reference import np_layer, np_step

    _, h, _ = np_layer(enc, x, length)
    c = np.zeros_like(h)
    w, b = (np.asarray(head[k], np.float64) for k in ("w", "b"))
    out = np.zeros_like(x)
    if length == 0:
        return out
    out[length - 1] = h @ w + b
    for i in range(length - 2, -1, -1):
        h, c = np_step(dec, h, c, x[i + 1] if train else out[i + 1])
        out[i] = h @ w + b
    return out


def _encdec_go_token_np(x, length, enc, dec, head, train):
    """The go-token variant: L steps, the first fed zeros."""
    from reference import np_layer, np_step

    _, h, _ = np_layer(enc, x, length)
    c = np.zeros_like(h)
    w, b = (np.asarray(head[k], np.float64) for k in ("w", "b"))
    out = np.zeros_like(x)
    prev = np.zeros(x.shape[1])
    for i in range(length - 1, -1, -1):
        h, c = np_step(dec, h, c, prev)
        out[i] = h @ w + b
        prev = x[i] if train else out[i]
    return out


@pytest.mark.parametrize("variant", ["state", "go_token"])
def test_encdec_ad_matches_the_papers_loop(variant):
    hdim, f, t = 6, 2, 7
    model = nn.make_autoencoder(
        nn.lstm_encoder((hdim,)),
        nn.teacher_forced((hdim,), state_init="copy", first_output=variant), nn.linear(), features=f)
    params = model.init(jax.random.PRNGKey(2))
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, t, f)).astype(np.float32)
    lengths = np.array([7, 4, 1, 0], np.int32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    ref = _encdec_paper_np if variant == "state" else _encdec_go_token_np
    enc, dec, head = params["encoder"]["lstm"][0], params["decoder"]["lstm"][0], params["head"]
    x64 = x.astype(np.float64)
    infer = np.stack([ref(x64[i], int(lengths[i]), enc, dec, head, False) for i in range(4)])
    _close(model.reconstruct(params, x, lengths), infer)

    def loss_np(w):
        e, d = nn.LSTMParams(*w[0:3]), nn.LSTMParams(*w[3:6])
        hd = {"w": w[6], "b": w[7]}
        y = np.stack([ref(x64[i], int(lengths[i]), e, d, hd, True) for i in range(4)])
        return float(np.sum(np.mean((y - x64) ** 2, -1)) / lengths.sum())

    ws = [*enc, *dec, head["w"], head["b"]]
    _close(model.loss(params, x, lengths), loss_np(ws), 1e-5)
    to_list = lambda g: [*g["encoder"]["lstm"][0], *g["decoder"]["lstm"][0], g["head"]["w"], g["head"]["b"]]  # noqa: E731
    _directional_check(lambda p: model.loss(p, x, lengths), params, loss_np, ws, to_list)
    # the two variants are different models: the paper reads x'(L) before any step
    other = _encdec_go_token_np if variant == "state" else _encdec_paper_np
    assert np.max(np.abs(infer - np.stack([other(x64[i], int(lengths[i]), enc, dec, head, False)
                                           for i in range(4)]))) > 1e-2


# ------------------------------------------------------------------ PyTorch EncoderLSTM: Embedding + 2-layer LSTM
V, D, HT = 11, 4, 5


def _torch_encoder_sd(seed=8):
    rng = np.random.default_rng(seed)
    sd = {"embedding.weight": rng.normal(size=(V, D)).astype(np.float32)}
    for k in range(2):
        fin = D if k == 0 else HT
        sd[f"lstm.weight_ih_l{k}"] = _rand(rng, 4 * HT, fin)
        sd[f"lstm.weight_hh_l{k}"] = _rand(rng, 4 * HT, HT)
        sd[f"lstm.bias_ih_l{k}"] = _rand(rng, 4 * HT)
        sd[f"lstm.bias_hh_l{k}"] = _rand(rng, 4 * HT)
    return sd


def test_torch_token_encoder_import():
    sd = _torch_encoder_sd()
    enc, params = torch_port.token_encoder_from_torch(sd)
    _close(torch_port.embedding_from_torch(sd), sd["embedding.weight"])
    tokens = np.random.default_rng(9).integers(0, V, (3, 6)).astype(np.int32)
    sd64 = {k: v.astype(np.float64) for k, v in sd.items()}
    _, h_n = torch_lstm_np(sd64["embedding.weight"][tokens], sd64, "lstm.", 2)
    got = enc.apply(params, jnp.asarray(tokens), jnp.full((3,), 6, jnp.int32))
    _close(got, h_n[-1])
    # a whole token autoencoder on top of it
    model = nn.make_autoencoder(enc, nn.repeat((HT,)))
    p = {**model.init(jax.random.PRNGKey(0)), "encoder": params}
    _close(model.encode(p, tokens), h_n[-1])
    with pytest.raises(ValueError, match="reads 4 features but the embedding gives D=3"):
        torch_port.token_encoder_from_torch({**sd, "embedding.weight": np.zeros((V, 3), np.float32)})


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_torch_token_encoder_against_torch():
    torch = pytest.importorskip("torch", reason="torch is a bench-only extra (pip install torch==2.13.0)")

    class EncoderLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(V, D)
            self.lstm = torch.nn.LSTM(D, HT, num_layers=2, dropout=0.3, batch_first=True)

        def forward(self, inputs, hidden):
            return self.lstm(self.embedding(inputs), hidden)

    torch.manual_seed(0)
    net = EncoderLSTM().eval()  # nn.LSTM's dropout acts in training only
    tokens = np.random.default_rng(10).integers(0, V, (3, 6))
    zeros = (torch.zeros(2, 3, HT), torch.zeros(2, 3, HT))
    with torch.no_grad():
        _, (h_n, _) = net(torch.from_numpy(tokens), zeros)
    enc, params = torch_port.token_encoder_from_torch({k: v.numpy() for k, v in net.state_dict().items()})
    got = enc.apply(params, jnp.asarray(tokens, jnp.int32), jnp.full((3,), 6, jnp.int32))
    _close(got, h_n[-1].numpy())


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_torch_recurrent_autoencoder_is_batch_safe():
    """The widely copied RecurrentAutoencoder (repeat + permute decoder) keeps
    the rows of a batch apart; the reshape-based Encoder of the other answer
    (x.reshape((1, seq_len, n_features))) does not take a batch at all."""
    torch = pytest.importorskip("torch", reason="torch is a bench-only extra (pip install torch==2.13.0)")
    t, f, e = 6, 1, 4

    class RecurrentAutoencoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.LSTM(f, e, batch_first=True)
            self.dec = torch.nn.LSTM(e, e, batch_first=True)
            self.out = torch.nn.Linear(e, f)

        def forward(self, x):
            _, (h, _) = self.enc(x)  # h [1, B, E]
            rep = h.repeat(t, 1, 1).permute(1, 0, 2)  # [B, T, E]: row b is z_b at every step
            d, _ = self.dec(rep)
            return self.out(d)

    class ReshapeEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn1 = torch.nn.LSTM(f, e, batch_first=True)

        def forward(self, x):
            x = x.reshape((1, t, f))
            _, (h, _) = self.rnn1(x)
            return h.reshape((f, e))

    torch.manual_seed(0)
    net = RecurrentAutoencoder()
    x = torch.from_numpy(np.random.default_rng(11).normal(size=(3, t, f)).astype(np.float32))
    with torch.no_grad():
        batch = net(x).numpy()
        alone = np.concatenate([net(x[i : i + 1]).numpy() for i in range(3)])
    _close(batch, alone, 1e-6)
    with pytest.raises(RuntimeError):
        ReshapeEncoder()(x)


# ------------------------------------------------------------------ empty sequences
def _question_generator(lengths):
    """The question's code, verbatim in spirit: getNotSoRandomList(x) is one-hot at x < 8."""

    def get_not_so_random_list(x):
        rlen = 8
        rlist = [0 for _ in range(rlen)]
        if x <= 7:
            rlist[x] = 1
        return rlist

    return [[get_not_so_random_list(x) for x in range(n)] for n in lengths]


def test_moving_one_keras_is_the_questions_generator():
    ds = synthetic("moving_one_keras", n=400, seed=3)
    assert ds.x.shape == (400, 10, 8) and count_empty(ds) == int(np.sum(ds.lengths == 0)) > 0
    assert ds.lengths.min() == 0 and ds.lengths.max() == 10
    seqs = _question_generator(ds.lengths)
    x, lengths = pad_sequences(seqs, maxlen=10)
    np.testing.assert_array_equal(lengths, ds.lengths)
    np.testing.assert_array_equal(x, ds.x)
    np.testing.assert_array_equal(from_arrays(seqs).x, ds.x)


def test_pad_sequences_keras_conventions():
    seqs = [[1, 2, 3], [], [4], [5, 6, 7, 8]]
    x, ln = pad_sequences(seqs, "pre", maxlen=3, value=-1.0, truncating="post", dtype="int32")
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], [[1, 2, 3], [-1, -1, -1], [-1, -1, 4], [5, 6, 7]])
    np.testing.assert_array_equal(ln, [3, 0, 1, 3])
    x, ln = pad_sequences(seqs, maxlen=2)  # post padding, pre truncating (keep the last steps)
    np.testing.assert_array_equal(x[..., 0], [[2, 3], [0, 0], [4, 0], [7, 8]])
    x, ln = pad_sequences([[], [[1.0, 2.0]]])  # an empty sequence takes the others' features
    assert x.shape == (2, 1, 2) and list(ln) == [0, 1]
    with pytest.raises(la.data.DataError, match="sequence 2 has 3 features per step but sequence 0 has 2"):
        pad_sequences([[[1, 2]], [], [[1, 2, 3]]])
    with pytest.raises(la.data.DataError, match="every sequence is empty"):
        from_arrays([[], []])
    with pytest.raises(ValueError, match="truncating must be 'post' or 'pre'"):
        pad_sequences(seqs, truncating="middle")


@keras_mark
def test_pad_sequences_matches_keras():
    keras = _keras()
    seqs = _question_generator([3, 0, 10, 1, 12])
    for padding in ("pre", "post"):
        for truncating in ("pre", "post"):
            want = keras.utils.pad_sequences(seqs, maxlen=10, padding=padding, truncating=truncating,
                                             value=0.5, dtype="float32")
            got, _ = pad_sequences(seqs, padding, maxlen=10, truncating=truncating, value=0.5)
            np.testing.assert_array_equal(got, want)


def test_empty_sequences_add_nothing():
    model = nn.make_autoencoder(nn.lstm_encoder((4,), latent_dim=3), nn.repeat((4,)), nn.sigmoid(), features=3)
    params = model.init(jax.random.PRNGKey(3))
    rng = np.random.default_rng(12)
    x = (rng.random((4, 5, 3)) < 0.5).astype(np.float32)
    lengths = np.array([5, 0, 2, 0], np.int32)
    x[np.arange(5)[None, :] >= lengths[:, None]] = 0.0
    keep = lengths > 0
    key = jax.random.PRNGKey(4)
    _close(model.loss(params, x, lengths, train=False), model.loss(params, x[keep], lengths[keep], train=False), 1e-6)
    g_all = jax.grad(lambda p: model.loss(p, x, lengths, train=False))(params)
    g_kept = jax.grad(lambda p: model.loss(p, x[keep], lengths[keep], train=False))(params)
    for a, b in zip(jax.tree.leaves(g_all), jax.tree.leaves(g_kept)):
        _close(a, b, 1e-6)
    # a batch of empty sequences: loss 0 (not 0 / 0) and no gradient
    empty = np.zeros(4, np.int32)
    assert float(model.loss(params, x, empty, key)) == 0.0
    assert all(float(jnp.max(jnp.abs(g))) == 0.0
               for g in jax.tree.leaves(jax.grad(lambda p: model.loss(p, x, empty, key))(params)))
    # the reconstruction of an empty sequence is empty
    assert np.all(np.asarray(model.reconstruct(params, x, lengths))[~keep] == 0.0)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=5\]; example 0 has length -1"):
        model.loss(params, x, np.array([-1, 0, 2, 0]))


@pytest.mark.parametrize("pooling,latent_dim", [("last", None), ("mean", None), ("last_mean", 3)])
def test_latent_of_an_empty_sequence_is_the_readout_of_the_initial_state(pooling, latent_dim):
    enc = nn.lstm_encoder((4,), pooling=pooling, latent_dim=latent_dim)
    model = nn.make_autoencoder(enc, nn.repeat((4,)), features=3)
    params = model.init(jax.random.PRNGKey(5))
    x = np.random.default_rng(13).normal(size=(3, 5, 3)).astype(np.float32)
    lengths = np.array([0, 3, 0], np.int32)
    z = np.asarray(model.encode(params, x, lengths))
    # initial state h = 0: "last" and "mean" read zeros, then the projection (if any)
    want = np.zeros(enc.latent_dim) if latent_dim is None else np.asarray(params["encoder"]["proj"]["b"])
    _close(z[0], want)
    _close(z[2], want)
    _close(z[1], model.encode(params, x[1:2, :3], lengths[1:2])[0], 1e-6)


def test_seed_data_trains_through_the_api():
    """The question's data as written (empty sequences included), its Keras
    model (LSTM(20) -> Reshape((10, 2)) -> LSTM(8, seq), BCE on the LSTM's outputs)."""
    ds = synthetic("moving_one_keras", n=600, seed=0)
    model = nn.make_autoencoder(nn.lstm_encoder((20,), init="orthogonal"),
                                nn.latent_as_sequence((8,), steps=10, init="orthogonal"),
                                nn.identity("bce"), features=8)
    opt = la.make_optimizer(1e-2)
    state, history = la.fit(model, opt, ds, None, epochs=3, batch_size=100, progress=False)
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_seed_data_trains_through_the_cli(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main

    code = main(["train", "--data", "synthetic:moving_one_keras", "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--embedding-dim", "4", "--batch-size", "250", "--seed", "0"])
    _, err = capsys.readouterr()
    assert code == 0, err
    n_empty = count_empty(synthetic("moving_one_keras"))
    assert f"5000 sequences ({n_empty} empty: they add nothing to the loss)" in err
    import json

    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["n_empty"] == n_empty
    recs = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(recs[-1]["loss"]) and np.isfinite(recs[-1]["val_loss"])


def test_empty_sequences_in_files(tmp_path):
    x = np.ones((3, 4, 2), np.float32)
    np.savez(tmp_path / "d.npz", x=x, lengths=np.array([3, 0, 4]))
    ds = la.data.load_sequences(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.lengths, [3, 0, 4])
    assert np.all(ds.x[1] == 0) and np.all(ds.x[0, 3:] == 0) and count_empty(ds) == 1
    np.savez(tmp_path / "e.npz", x=x, lengths=np.array([3, -1, 4]))
    with pytest.raises(la.data.DataError, match=r"sequence 1 has length -1; every sequence needs between 0 and T=4 steps"):
        la.data.load_sequences(tmp_path / "e.npz")


@keras_mark
def test_keras_token_autoencoder_with_embedding():
    """Embedding(V, D) -> LSTM(H) -> RepeatVector(T) -> LSTM(H, seq) -> TimeDistributed(Dense(V, softmax))."""
    v, d, h, t = 7, 3, 5, 6
    rng = np.random.default_rng(14)
    ws = [rng.normal(size=(v, d)).astype(np.float32)] + _lstm_w(rng, d, h) + _lstm_w(rng, h, h) + [
        _rand(rng, h, v), _rand(rng, v)]
    layers = [{"class_name": "Embedding", "input_dim": v, "output_dim": d}, {"class_name": "LSTM", "units": h},
              {"class_name": "RepeatVector", "n": t}, {"class_name": "LSTM", "units": h, "return_sequences": True},
              {"class_name": "Dense", "units": v, "activation": "softmax"}]
    model, params = keras_port.sequential_from_keras(layers, ws, input_shape=(t,))
    assert model.tokens and model.head.name == "softmax_ce"
    tokens = rng.integers(0, v, (3, t)).astype(np.int32)
    w64 = [np.asarray(w, np.float64) for w in ws]
    z = keras_lstm_np(w64[0][tokens], *w64[1:4])
    logits = dense_np(keras_lstm_np(np.repeat(z[:, None], t, 1), *w64[4:7], return_sequences=True), *w64[7:9])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    _close(model.reconstruct(params, tokens), probs)
    # Keras's sparse categorical cross-entropy on those probabilities is the softmax head's loss
    ce = -np.mean(np.log(np.take_along_axis(probs, tokens[..., None], -1)))
    _close(model.loss(params, tokens), ce, 1e-5)
    try:
        keras = _keras()
    except pytest.skip.Exception:
        return
    with jax.numpy_rank_promotion("allow"):
        km = keras.Sequential([keras.Input((t,), dtype="int32"), keras.layers.Embedding(v, d), keras.layers.LSTM(h),
                               keras.layers.RepeatVector(t), keras.layers.LSTM(h, return_sequences=True),
                               keras.layers.TimeDistributed(keras.layers.Dense(v, activation="softmax"))])
        km.set_weights(ws)
    _close(_keras_run(km, tokens), probs)
