"""Input corruptions (denoising training): what they change and what they
leave, and the train step that uses them."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae as la

B, T, F = 64, 50, 3
LENGTHS = jnp.asarray(np.r_[np.full(B // 2, T), np.arange(1, B // 2 + 1)], jnp.int32)


def _x():
    return jax.random.normal(jax.random.PRNGKey(0), (B, T, F))


def _valid():
    return np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]


def test_gaussian_noise_adds_noise_of_that_std_on_valid_steps_only():
    x = _x()
    noise03 = jax.jit(la.gaussian_noise(0.3))
    out = noise03(jax.random.PRNGKey(1), x, LENGTHS)
    diff = np.asarray(out - x)
    valid = _valid()
    np.testing.assert_array_equal(diff[~valid], 0.0)  # padding untouched
    noise = diff[valid]
    assert noise.size > 2000
    assert abs(noise.std() - 0.3) < 0.02 and abs(noise.mean()) < 0.02
    # a pure function of its key
    np.testing.assert_array_equal(out, noise03(jax.random.PRNGKey(1), x, LENGTHS))
    assert not np.array_equal(out, noise03(jax.random.PRNGKey(2), x, LENGTHS))
    np.testing.assert_array_equal(la.gaussian_noise(0.0)(jax.random.PRNGKey(1), x, LENGTHS), x)


def test_step_dropout_zeroes_whole_steps_at_that_rate():
    x = _x() + 5.0  # no zeros in the data itself
    out = np.asarray(jax.jit(la.step_dropout(0.25))(jax.random.PRNGKey(3), x, LENGTHS))
    valid = _valid()
    np.testing.assert_array_equal(out[~valid], np.asarray(x)[~valid])
    zeroed = np.all(out == 0.0, axis=-1)
    kept = np.all(out == np.asarray(x), axis=-1)
    assert np.all(zeroed | kept)  # a step is dropped whole or kept whole
    assert not np.any(zeroed & ~valid)
    assert abs(zeroed[valid].mean() - 0.25) < 0.03
    np.testing.assert_array_equal(la.step_dropout(0.0)(jax.random.PRNGKey(3), x, LENGTHS), x)


def test_corruption_settings_and_inputs_are_checked():
    with pytest.raises(ValueError, match="std must be >= 0"):
        la.gaussian_noise(-0.1)
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\)"):
        la.step_dropout(1.0)
    tokens = jnp.zeros((2, 4), jnp.int32)
    with pytest.raises(TypeError, match="real-valued"):
        la.gaussian_noise(0.1)(jax.random.PRNGKey(0), tokens, jnp.array([4, 2]))


def _setup(decoder):
    model = la.make_autoencoder(la.lstm_encoder((8, 4)), decoder, features=F)
    opt = la.make_optimizer(1e-2)
    batch = la.Batch(_x()[:8, :12], jnp.minimum(LENGTHS[::8], 12))
    return model, opt, batch


def _run(step, model, opt, batch, n=3):
    state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
    losses = []
    for _ in range(n):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    return state, losses


def test_train_step_with_identity_corruption_equals_the_plain_step():
    """The repeat decoder uses no key, so corrupt=identity must give the plain step bit for bit."""
    model, opt, batch = _setup(la.repeat((4, 8)))
    plain, l0 = _run(la.make_train_step(model, opt, donate=False), model, opt, batch)
    ident, l1 = _run(la.make_train_step(model, opt, donate=False, corrupt=lambda k, x, n: x), model, opt, batch)
    assert l0 == l1
    chex.assert_trees_all_equal(plain.params, ident.params)


def test_denoising_train_step_is_reproducible_and_scores_the_clean_target():
    model, opt, batch = _setup(la.teacher_forced((4, 8)))
    noise = la.gaussian_noise(0.5)
    step = la.make_train_step(model, opt, donate=False, corrupt=noise)
    a, la_ = _run(step, model, opt, batch)
    b, lb = _run(step, model, opt, batch)
    assert la_ == lb
    chex.assert_trees_all_equal(a.params, b.params)
    plain, lp = _run(la.make_train_step(model, opt, donate=False), model, opt, batch)
    assert la_[0] != lp[0]
    # the first step's loss is the model's loss on (clean x, the corrupted view
    # drawn from the step's key split as the step documents)
    state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
    key, k_noise = jax.random.split(jax.random.fold_in(state.rng, 0))
    want = model.loss(state.params, batch.x, batch.lengths, key, train=True,
                      inputs=noise(k_noise, batch.x, batch.lengths))
    np.testing.assert_allclose(la_[0], want, rtol=1e-6)


def test_fit_resumes_a_denoising_run_exactly(tmp_path):
    model, opt, _ = _setup(la.repeat((4, 8)))
    data = la.from_arrays(np.asarray(_x()[:32, :10]))
    kw = dict(epochs=4, batch_size=8, seed=0, progress=False, step_kwargs={"corrupt": la.step_dropout(0.3)})
    full, _ = la.fit(model, opt, data, **kw)
    half, _ = la.fit(model, opt, data, max_steps=6, **kw)
    resumed, _ = la.fit(model, opt, data, state=half, **kw)
    chex.assert_trees_all_equal(full.params, resumed.params)
