"""Time pooling (nn.pool, ModelSpec.pool, train --pool): the pooled model against the plain model run on
pooled data by hand, values and gradients; the spec's refusals; the command line's auto rule."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lstm_ae.nn import forward_batch
from jax_lstm_ae.nn.pool import pool_time, pooled_steps, unpool
from jax_lstm_ae.nn.spec import DecoderSpec, EncoderSpec, ModelSpec, SpecError, build
from jax_lstm_ae.train.spec import auto_pool


def _pool_by_hand(x, lengths, d):
    b, t, f = x.shape
    tp = -(-t // d)
    out = np.zeros((b, tp, f), np.float32)
    for i in range(b):
        for j in range(tp):
            block = x[i, d * j:min(d * j + d, lengths[i])]
            if len(block):
                out[i, j] = block.mean(0)
    return out, (lengths + d - 1) // d


def _batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 10, 2)).astype(np.float32)
    lengths = np.array([10, 7, 1, 0], np.int32)
    return x, lengths


def test_pool_time_and_unpool_by_hand():
    x, lengths = _batch()
    for d in (1, 2, 3, 4, 10, 11):
        want, want_len = _pool_by_hand(x, lengths, d)
        got, got_len = pool_time(jnp.asarray(x), jnp.asarray(lengths), d)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(got_len, want_len)
        assert pooled_steps(10, d) == want.shape[1]
        np.testing.assert_array_equal(unpool(jnp.asarray(want), d, 10), np.repeat(want, d, axis=1)[:, :10])


@pytest.mark.parametrize("decoder", ["repeat", "teacher_forced"])
def test_a_pooled_model_is_the_plain_model_on_pooled_data_values_and_gradients(decoder):
    """encode(pool d, x) = encode(x pooled by hand); each decoded step stands for the d steps it pooled; the
    loss is the mean error over every valid input step; gradients agree with that formulation's."""
    x, lengths = _batch()
    d = 3
    spec = ModelSpec(features=2, embedding_dim=8, encoder=EncoderSpec(pooling="mean"), decoder=DecoderSpec(decoder))
    plain, pooled = build(spec), build(dataclasses.replace(spec, pool=d))
    params = plain.init(jax.random.PRNGKey(0))
    xp, lp = _pool_by_hand(x, lengths, d)
    mask = np.arange(10)[None, :] < lengths[:, None]
    np.testing.assert_allclose(pooled.encode(params, x, lengths), plain.encode(params, xp, lp), rtol=1e-5, atol=1e-6)
    want = np.repeat(np.asarray(plain.reconstruct(params, xp, lp)), d, axis=1)[:, :10] * mask[..., None]
    np.testing.assert_allclose(pooled.reconstruct(params, x, lengths), want, rtol=1e-5, atol=1e-6)
    # training mode: the teacher-forced decoder reads the pooled targets
    _, logits = forward_batch(pooled, params, jnp.asarray(x), jnp.asarray(lengths), train=True)
    _, logits_p = forward_batch(plain, params, jnp.asarray(xp), jnp.asarray(lp), train=True)
    np.testing.assert_allclose(logits, np.repeat(np.asarray(logits_p), d, axis=1)[:, :10] * mask[..., None],
                               rtol=1e-5, atol=1e-6)

    def by_hand(p):
        _, lg = forward_batch(plain, p, jnp.asarray(xp), jnp.asarray(lp), train=True)
        err = jnp.mean((jnp.repeat(lg, d, axis=1)[:, :10] - x) ** 2, axis=-1)
        return jnp.sum(jnp.where(mask, err, 0.0)) / lengths.sum()

    loss = lambda p: pooled.loss(p, x, lengths, train=True)  # noqa: E731
    np.testing.assert_allclose(loss(params), by_hand(params), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 jax.grad(loss)(params), jax.grad(by_hand)(params))
    assert pooled.step_errors(params, x, lengths).shape == (4, 10)


def test_pool_refusals_and_the_auto_rule():
    for bad, msg in ((dict(pool=0), "model.pool: must be >= 1"),
                     (dict(pool=2, decoder=DecoderSpec("latent_as_sequence", steps=8)), "fixes T when built"),
                     (dict(pool=2, features=5, encoder=EncoderSpec(vocab_size=5)), "tokens cannot be averaged")):
        with pytest.raises(SpecError, match=msg):
            ModelSpec(**{"features": 2, **bad})
    assert [auto_pool(t) for t in (1, 24, 29, 96, 100, 140, 150, 251, 1000)] == [1, 1, 1, 2, 2, 2, 2, 4, 16]
    assert ModelSpec.from_dict(ModelSpec(features=2, pool=3).to_dict()).pool == 3
    assert ModelSpec.from_dict({k: v for k, v in ModelSpec(features=2).to_dict().items() if k != "pool"}).pool == 1


def test_train_pool_auto_records_d_and_answers_at_the_input_resolution(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main as cli
    from jax_lstm_ae.train.checkpoint import read_config

    rng = np.random.default_rng(0)
    t = np.arange(150)
    x = np.sin(2 * np.pi * (t[None, :] + rng.integers(0, 50, size=(40, 1))) / 50) + 0.05 * rng.normal(size=(40, 150))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    common = ["--data", str(tmp_path / "x.npy"), "--epochs", "1", "--min-steps", "0"]
    assert cli(["train", *common, "--out", str(tmp_path / "auto")]) == 0
    assert read_config(tmp_path / "auto")["model"]["pool"] == 2  # the default, auto: round(150 / 64)
    assert "time pooled by 2 (--pool 1: none)" in capsys.readouterr().err  # said on the run's first line
    common.append("--quiet")
    assert cli(["train", *common, "--pool", "1", "--out", str(tmp_path / "one")]) == 0
    assert read_config(tmp_path / "one")["model"]["pool"] == 1
    assert cli(["train", *common, "--decoder", "latent_as_sequence", "--embedding-dim", "150",
                "--out", str(tmp_path / "las_default")]) == 0
    assert read_config(tmp_path / "las_default")["model"]["pool"] == 1  # auto where the model can pool only
    assert cli(["train", *common, "--pool", "3", "--out", str(tmp_path / "three")]) == 0
    assert read_config(tmp_path / "three")["model"]["pool"] == 3
    assert cli(["reconstruct", "--run", str(tmp_path / "auto"), "--data", str(tmp_path / "x.npy"),
                "--out", str(tmp_path / "r.npy"), "--quiet"]) == 0
    assert np.load(tmp_path / "r.npy").shape == (40, 150, 1)
    capsys.readouterr()
    assert cli(["train", *common, "--pool", "0", "--out", str(tmp_path / "bad")]) == 2
    np.savetxt(tmp_path / "s.csv", np.sin(np.arange(600) / 5.0))
    for pool in ("2", "auto"):  # the series pipeline pools by the period it finds: a --pool is refused, not ignored
        rc = cli(["train", "--data", str(tmp_path / "s.csv"), "--train-rows", "0:500", "--pool", pool,
                  "--out", str(tmp_path / "series"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "drop --pool" in err
    rc = cli(["train", *common, "--pool", "auto", "--decoder", "latent_as_sequence", "--embedding-dim", "150",
              "--out", str(tmp_path / "las")])
    err = capsys.readouterr().err
    assert rc == 2 and "--pool" in err and "fixes T when built" in err, err
