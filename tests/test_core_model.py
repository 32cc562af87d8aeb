"""The model: every decoder strategy against a plain float64 step loop,
padding and batch invariance, shapes, masked losses, no retracing, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la
import reference_model as ref
from reference import np_stack, np_step, sigmoid

B, T, F = 3, 7, 2
LENGTHS = np.array([7, 4, 1])


def _decoder_calls(e):
    """Every strategy, one factory call each (E = e): name -> (factory, args, keywords)."""
    return {
        "repeat": ("repeat", (4, 5), {}),
        "latent_as_sequence": ("latent_as_sequence", (5,), {"steps": T}),
        "teacher_forced": ("teacher_forced", (e, 3), {}),
        "teacher_forced_copy": ("teacher_forced", (e,), {"state_init": "copy", "reverse_target": False}),
        "conditional": ("conditional", (4, 3), {}),
        "conditional_ss": ("conditional", (4,), {"teacher_prob": 0.5}),
        "unconditioned": ("unconditioned", (3, 4), {}),
    }


def _decoders(e):
    """Every strategy, built in one line each (E = e)."""
    return {name: getattr(la, f)(sizes, **kw) for name, (f, sizes, kw) in _decoder_calls(e).items()}


def _pair(name, head=None, e=T * 2):
    """(the model, its per-example reference) for a decoder strategy."""
    f, sizes, kw = _decoder_calls(e)[name]
    return ref.model_pair(ref.pair("lstm_encoder", (6, e)), ref.pair(f, sizes, **kw), head or la.linear(),
                          features=F)


def _model(name, head=None, e=T * 2):
    return _pair(name, head, e)[0]


def _data(key=0, t=T, f=F):
    return jax.random.normal(jax.random.PRNGKey(key), (B, t, f))


# ---------------------------------------------------------------- reference
def _np_forward(model, params, x, length, train, inputs=None):
    """Plain loop over valid steps for one example -> logits[T, K] (float64).
    ``inputs``: what the encoder reads instead of x (denoising)."""
    x = np.asarray(x) if model.tokens else np.asarray(x, np.float64)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    enc, dec, head = model.encoder, model.decoder, model.head
    xs = p["encoder"]["embedding"][x] if enc.vocab_size else (x if inputs is None else np.asarray(inputs, np.float64))
    _, finals = np_stack(p["encoder"]["lstm"], xs, length)
    z = np.concatenate([finals[-1][0][0], finals[-1][1][0]]) if enc.bidirectional else finals[-1][0]
    if "proj" in p["encoder"]:
        z = z @ p["encoder"]["proj"]["w"] + p["encoder"]["proj"]["b"]
    layers = p["decoder"]["lstm"]
    sizes = dec.sizes
    w, b = p["head"]["w"], p["head"]["b"]
    act = {"linear": lambda y: y, "sigmoid": sigmoid,
           "softmax": lambda y: np.exp(y - y.max()) / np.exp(y - y.max()).sum()}[head.name.split("_")[0]]
    if dec.name in ("repeat", "latent_as_sequence"):
        states = [(np.zeros(h), np.zeros(h)) for h in sizes]
    elif "proj" in p["decoder"]["state"]:
        states = []
        for q, h in zip(p["decoder"]["state"]["proj"], sizes):
            hc = z @ q["w"] + q["b"]
            states.append((np.tanh(hc[:h]), hc[h:]))
    else:  # copy
        states = [(z, np.zeros_like(z))] + [(np.zeros(h), np.zeros(h)) for h in sizes[1:]]
    target = np.eye(head.vocab_size)[x] if head.vocab_size else x
    if dec.reverse_target:
        target = np.concatenate([target[:length][::-1], target[length:]])
    logits = np.zeros((x.shape[0], w.shape[1]))
    prev = np.zeros(w.shape[1])
    for t in range(length):
        if dec.name == "repeat":
            inp = z
        elif dec.name == "latent_as_sequence":
            inp = z.reshape(x.shape[0], -1)[t]
        elif dec.name == "unconditioned":
            inp = np.zeros(0)
        elif train and dec.name == "teacher_forced":
            inp = target[t - 1] if t else np.zeros(w.shape[1])
        else:
            inp = prev
        new = []
        for layer, (h, c) in zip(layers, states):
            h, c = np_step(layer, h, c, inp)
            new.append((h, c))
            inp = h
        states = new
        logits[t] = inp @ w + b
        prev = act(logits[t])
    if dec.reverse_target:
        logits = np.concatenate([logits[:length][::-1], logits[length:]])
    return z, logits


def _assert_matches_plain_loop(models, params, x, train):
    """The model's batched forward and the per-example reference (vmapped),
    each jitted once (eager scans are slow), equal the float64 step loop for
    every example."""
    model, spec = models
    lengths = jnp.asarray(LENGTHS, jnp.int32)
    batched = jax.jit(lambda p, x: la.nn.forward_batch(model, p, x, lengths, train=train))
    per_example = jax.jit(lambda p, x: ref.forward(spec, p, x, lengths, train=train))
    for zs, logits_all in (batched(params, x), per_example(params, x)):
        for i in range(B):
            z_ref, logits_ref = _np_forward(model, params, x[i], LENGTHS[i], train)
            np.testing.assert_allclose(zs[i], z_ref, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(logits_all[i], logits_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in _decoders(4) if n != "conditional_ss"])
@pytest.mark.parametrize("train", [False, True])
def test_every_decoder_matches_plain_loop(name, train):
    with jax.enable_x64(True):
        models = _pair(name)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), models[0].init(jax.random.PRNGKey(1)))
        _assert_matches_plain_loop(models, params, _data().astype(jnp.float64), train)


@pytest.mark.parametrize("name", ["repeat", "teacher_forced", "conditional"])
def test_loss_with_corrupted_inputs_matches_plain_loop(name):
    """loss(x, inputs=x'): the encoder reads x', teacher forcing and the
    error read the clean x; inputs=x is the plain loss, values and gradients."""
    with jax.enable_x64(True):
        model = _model(name)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(1)))
        x = _data().astype(jnp.float64)
        noisy = x + 0.5 * _data(key=7).astype(jnp.float64)
        lengths = jnp.asarray(LENGTHS, jnp.int32)
        total = 0.0
        for i in range(B):
            _, logits = _np_forward(model, params, x[i], LENGTHS[i], True, inputs=noisy[i])
            total += np.sum((logits[: LENGTHS[i]] - np.asarray(x[i, : LENGTHS[i]])) ** 2) / F
        got = model.loss(params, x, lengths, train=True, inputs=noisy)
        np.testing.assert_allclose(got, total / LENGTHS.sum(), rtol=1e-10)
        grad = jax.grad(model.loss)
        chex.assert_trees_all_close(grad(params, x, lengths, train=True, inputs=x),
                                    grad(params, x, lengths, train=True), rtol=1e-12, atol=1e-14)
        with pytest.raises(ValueError, match="inputs must match x"):
            model.loss(params, x, lengths, inputs=noisy[:, :-1])


def test_bidirectional_projected_token_model_matches_plain_loop():
    with jax.enable_x64(True):
        enc = ref.pair("lstm_encoder", (4, 3), bidirectional=True, latent_dim=5, vocab_size=6, token_dim=3)
        models = ref.model_pair(enc, ref.pair("conditional", (4,)))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), models[0].init(jax.random.PRNGKey(2)))
        tokens = jax.random.randint(jax.random.PRNGKey(3), (B, T), 0, 6)
        _assert_matches_plain_loop(models, params, tokens, False)


def test_scheduled_sampling_interpolates_between_free_running_and_teacher_forcing():
    enc = la.lstm_encoder((5,))
    x, lengths = _data(), jnp.asarray(LENGTHS)
    key = jax.random.PRNGKey(4)
    always = la.make_autoencoder(enc, la.conditional((4,), teacher_prob=1.0), features=F)
    never = always._replace(decoder=la.conditional((4,), teacher_prob=0.0))
    forced = always._replace(decoder=la.teacher_forced((4,), reverse_target=False))
    params = always.init(key)
    np.testing.assert_allclose(always.loss(params, x, lengths, key), forced.loss(params, x, lengths, key), rtol=1e-6)
    np.testing.assert_allclose(never.loss(params, x, lengths, key), never.loss(params, x, lengths, train=False),
                               rtol=1e-6)
    half = always._replace(decoder=la.conditional((4,), teacher_prob=0.5))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        half.loss(params, x, lengths)


# ---------------------------------------------------------------- invariances
@pytest.mark.parametrize("name", list(_decoders(4)))
def test_padding_never_leaks(name):
    model = _model(name)
    params = model.init(jax.random.PRNGKey(5))
    x, lengths = _data(), jnp.asarray(LENGTHS)
    key = jax.random.PRNGKey(6)
    garbage = 100.0 * jax.random.normal(jax.random.PRNGKey(7), x.shape)
    mask = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    x_garbage = jnp.where(mask, x, garbage)
    variants = [x_garbage]
    if name != "latent_as_sequence":  # that decoder is built for exactly T steps
        variants.append(jnp.concatenate([x_garbage, garbage[:, :5]], axis=1))
    z0, r0 = model.encode(params, x, lengths), model.reconstruct(params, x, lengths)
    l0 = model.loss(params, x, lengths, key)
    for xv in variants:
        np.testing.assert_allclose(model.encode(params, xv, lengths), z0, rtol=1e-6, atol=1e-6)
        r = np.asarray(model.reconstruct(params, xv, lengths))
        np.testing.assert_allclose(r[:, :T], r0, rtol=1e-5, atol=1e-6)
        assert np.all(r[:, T:] == 0) and np.all(r[:, :T][np.broadcast_to(~np.asarray(mask), r0.shape)] == 0)
        np.testing.assert_allclose(model.loss(params, xv, lengths, key), l0, rtol=1e-5)


def test_latent_does_not_depend_on_the_rest_of_the_batch():
    model = _model("repeat")
    params = model.init(jax.random.PRNGKey(8))
    x = jax.random.normal(jax.random.PRNGKey(9), (6, T, F))
    lengths = jnp.array([7, 3, 5, 1, 7, 2])
    z_all = model.encode(params, x, lengths)
    for i in range(6):
        alone = model.encode(params, x[i : i + 1], lengths[i : i + 1])
        np.testing.assert_allclose(alone[0], z_all[i], rtol=1e-6, atol=1e-6)
    perm = jnp.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(model.encode(params, x[perm], lengths[perm]), z_all[perm], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- shapes & heads
HEADS = {"linear_mse": la.linear(), "linear_mae": la.linear("mae"), "sigmoid": la.sigmoid()}


def _head_case(name, head, e=T * 2):
    """(model, x, K) for a decoder strategy and a head; tokens for softmax."""
    key = jax.random.PRNGKey(10)
    if head == "softmax":
        model = la.make_autoencoder(la.lstm_encoder((6, e), vocab_size=5), _decoders(e)[name])
        return model, jax.random.randint(key, (B, T), 0, 5), 5
    model = _model(name, HEADS[head], e)
    if head == "sigmoid":
        return model, (jax.random.uniform(key, (B, T, F)) > 0.5).astype(jnp.float32), F
    return model, _data(), F


@pytest.mark.parametrize("head", list(HEADS) + ["softmax"])
@pytest.mark.parametrize("name", list(_decoders(4)))
def test_shapes_for_every_decoder_and_head(name, head):
    """Abstract evaluation: every combination traces to the right shapes (no compile)."""
    model, x, k = _head_case(name, head)
    lengths = jnp.asarray(LENGTHS)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    chex.assert_shape(jax.eval_shape(model.encode, params, x, lengths), (B, T * 2))
    chex.assert_shape(jax.eval_shape(model.reconstruct, params, x, lengths), (B, T, k))
    chex.assert_shape(jax.eval_shape(model.step_errors, params, x, lengths), (B, T))
    chex.assert_shape(jax.eval_shape(lambda p: model.loss(p, x, lengths, key), params), ())
    grads = jax.eval_shape(jax.grad(lambda p: model.loss(p, x, lengths, key)), params)
    chex.assert_trees_all_equal_shapes(grads, params)


@pytest.mark.parametrize(
    "name, head",
    [(n, "linear_mse") for n in _decoders(4)] + [(n, h) for n in ("repeat", "conditional")
                                                  for h in ("linear_mae", "sigmoid", "softmax")],
)
def test_masked_losses_and_outputs(name, head):
    """Loss and per-step errors equal a NumPy masked mean over the outputs."""
    model, x, k = _head_case(name, head)
    lengths = jnp.asarray(LENGTHS)
    params = model.init(jax.random.PRNGKey(10))
    z = model.encode(params, x, lengths)
    y = model.reconstruct(params, x, lengths)
    chex.assert_shape(y, (B, T, k))
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    yv = np.asarray(y, np.float64)
    assert np.all(yv[~mask] == 0)
    yv = np.where(mask[..., None], yv, 0.5)  # keep log() finite on padding; it is masked out below
    xn = np.asarray(x)
    if head == "linear_mse":
        per_step = ((yv - xn) ** 2).mean(-1)
    elif head == "linear_mae":
        per_step = np.abs(yv - xn).mean(-1)
    elif head == "sigmoid":
        assert np.all((yv[mask] > 0) & (yv[mask] < 1))
        per_step = -(xn * np.log(yv) + (1 - xn) * np.log(1 - yv)).mean(-1)
    else:
        np.testing.assert_allclose(yv[mask].sum(-1), 1.0, rtol=1e-5)
        per_step = -np.log(np.take_along_axis(yv, xn[..., None], -1)[..., 0])
    want = per_step[mask].sum() / mask.sum()
    np.testing.assert_allclose(model.loss(params, x, lengths, train=False), want, rtol=2e-4)
    err = np.asarray(model.step_errors(params, x, lengths))
    np.testing.assert_allclose(err[mask], per_step[mask], rtol=2e-4, atol=1e-6)
    assert np.all(err[~mask] == 0)
    per_sequence = np.where(mask, per_step, 0.0).sum(-1) / LENGTHS
    np.testing.assert_allclose(la.nn.masked_mean(jnp.asarray(err), jnp.asarray(mask)), per_sequence, rtol=2e-4)
    np.testing.assert_allclose(model.decode(params, z, lengths, steps=T), y, rtol=1e-5, atol=1e-6)


def test_jitted_functions_do_not_retrace():
    model = _model("teacher_forced")
    opt = la.make_optimizer(1e-3)
    state = la.create_train_state(model, opt, jax.random.PRNGKey(11))
    step = la.make_train_step(model, opt)
    x, lengths = _data(), jnp.asarray(LENGTHS)
    for i in range(3):
        state, metrics = step(state, la.Batch(x + i, lengths))
        z = model.encode(state.params, x + i, lengths)
        model.reconstruct(state.params, x * i, lengths)
    assert step._cache_size() == 1
    from jax_lstm_ae.nn import model as model_mod

    assert model_mod._encode._cache_size() >= 1
    before = (model_mod._encode._cache_size(), model_mod._reconstruct._cache_size())
    model.encode(state.params, x - 1.0, lengths[::-1])
    model.reconstruct(state.params, x - 1.0, lengths)
    assert (model_mod._encode._cache_size(), model_mod._reconstruct._cache_size()) == before
    assert z.shape == (B, model.latent_dim) and bool(metrics["finite"])


def test_train_step_reduces_loss_and_skips_non_finite_batches():
    model = la.recurrent_autoencoder(F, 4)
    opt = la.make_optimizer(1e-2)
    state = la.create_train_state(model, opt, jax.random.PRNGKey(12))
    step = la.make_train_step(model, opt, donate=False)
    phase = jax.random.uniform(jax.random.PRNGKey(13), (B, 1, F), maxval=6.0)
    x, lengths = jnp.sin(0.5 * jnp.arange(T)[None, :, None] + phase), jnp.asarray(LENGTHS)
    first = float(model.loss(state.params, x, lengths))
    for _ in range(60):
        state, metrics = step(state, la.Batch(x, lengths))
    assert float(metrics["loss"]) < 0.5 * first
    bad = x.at[0, 0, 0].set(jnp.nan)
    new, metrics = step(state, la.Batch(bad, lengths))
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(new.params, state.params)
    assert int(new.step) == int(state.step) + 1


# ---------------------------------------------------------------- errors
def test_bad_input_raises_clear_errors():
    model = _model("repeat")
    params = model.init(jax.random.PRNGKey(13))
    x = _data()
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, F=2\).*x\[None\]"):
        model.encode(params, x[0])
    with pytest.raises(ValueError, match="F=3 features but the model was built for F=2"):
        model.encode(params, _data(f=3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=7\]; example 1 has length 8"):
        model.encode(params, x, jnp.array([7, 8, 1]))
    with pytest.raises(ValueError, match="example 2 has length -1"):
        model.reconstruct(params, x, jnp.array([7, 2, -1]))
    with pytest.raises(TypeError, match="expects floating x.*vocab_size"):
        model.loss(params, jnp.ones((B, T, F), jnp.int32))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\)"):
        model.encode(params, x, jnp.array([7, 2]))
    with pytest.raises(ValueError, match="built for T=7 steps but the data has T=9"):
        _model("latent_as_sequence").encode  # building is fine; decoding the wrong T is not
        m = _model("latent_as_sequence")
        m.reconstruct(m.init(jax.random.PRNGKey(0)), _data(t=9))
    with pytest.raises(ValueError, match="divisible"):
        la.make_autoencoder(la.lstm_encoder((5,)), la.latent_as_sequence((3,), steps=T), features=F).init(
            jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="sizes\\[0\\] must equal E"):
        la.make_autoencoder(la.lstm_encoder((5,)), la.teacher_forced((3,), state_init="copy"), features=F).init(
            jax.random.PRNGKey(0))
    tok = la.make_autoencoder(la.lstm_encoder((4,), vocab_size=5), la.repeat((4,)))
    with pytest.raises(TypeError, match="expects integer x"):
        tok.encode(tok.init(jax.random.PRNGKey(0)), jnp.zeros((B, T)))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, V=5\)"):
        tok.encode(tok.init(jax.random.PRNGKey(0)), jnp.full((B, T), 5))
    with pytest.raises(ValueError, match="needs features=F"):
        la.make_autoencoder(la.lstm_encoder((4,)), la.repeat((4,)))
    with pytest.raises(ValueError, match="teacher_prob"):
        la.conditional((4,), teacher_prob=1.5)


def test_public_names_import():
    for name in la.__all__:
        assert getattr(la, name) is not None, name
    assert set(la.nn.DECODERS) == {"repeat", "latent_as_sequence", "teacher_forced", "conditional", "unconditioned"}
