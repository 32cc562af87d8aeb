"""Checkpoints: round trip, atomic writes, and a resumed run reaching the same
parameters as an uninterrupted one."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lstm_ae.nn.spec import SpecError

from jax_lstm_ae.train.checkpoint import (
    CHECKPOINT_FILE,
    RunError,
    atomic_write,
    build_model,
    build_optimizer,
    load_checkpoint,
    load_run,
    model_config,
    optimizer_config,
    save_run,
)
from jax_lstm_ae.data import Normalizer, synthetic
from jax_lstm_ae.train.fit import fit, fit_progress_from_extra
from jax_lstm_ae.train.step import create_train_state


def _tiny(decoder="repeat", features=3, steps=None):
    cfg = {"model": model_config(features, decoder=decoder, embedding_dim=4, hidden=(6,), steps=steps),
           "optimizer": optimizer_config(1e-2)}
    return cfg, build_model(cfg), build_optimizer(cfg)


def _assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path):
    cfg, model, opt = _tiny()
    state = create_train_state(model, opt, jax.random.PRNGKey(3))
    state = state.replace(step=jnp.int32(17))
    data = synthetic("sines", n=8)
    norm = Normalizer.fit(data)
    save_run(tmp_path / "run", state, dict(cfg, note="hello"), norm, extra={"epoch": 2})
    run = load_run(tmp_path / "run")
    _assert_trees_equal(run.state, state)
    assert int(run.state.step) == 17 and run.extra == {"epoch": 2} and run.config["note"] == "hello"
    np.testing.assert_array_equal(run.normalizer.shift, norm.shift)
    # Rebuilt from config: the same structure (the closures are new objects).
    assert (run.model.encoder.sizes, run.model.decoder.sizes, run.model.head.name, run.model.features) == (
        model.encoder.sizes, model.decoder.sizes, model.head.name, model.features)


@pytest.mark.parametrize("decoder", ["repeat", "latent_as_sequence", "teacher_forced", "conditional", "unconditioned"])
def test_build_model_every_decoder(decoder):
    cfg, model, _ = _tiny(decoder, steps=2)
    params = model.init(jax.random.PRNGKey(0))
    assert model.decoder.name == decoder and model.latent_dim == 4 and model.encoder.sizes == (6, 4)
    assert model.decoder.sizes == (4, 6)  # mirrors the encoder
    assert params["head"]["w"].shape == (6, 3)
    again = build_model(json.loads(json.dumps(cfg)))  # survives config.json
    assert jax.tree.map(np.shape, again.init(jax.random.PRNGKey(0))) == jax.tree.map(np.shape, params)


@pytest.mark.parametrize("pooling", ["last", "mean", "last_mean"])
def test_build_model_every_pooling_keeps_latent_size(pooling):
    """The readout survives config.json; E stays the configured size (a
    "last_mean" readout, 2E wide, is projected to E)."""
    cfg = {"model": model_config(3, embedding_dim=4, hidden=(6,), pooling=pooling)}
    model = build_model(json.loads(json.dumps(cfg)))
    assert model.encoder.pooling == pooling and model.latent_dim == 4
    params = model.init(jax.random.PRNGKey(0))
    z = model.encode(params, jnp.ones((2, 5, 3)), jnp.array([5, 2]))
    assert z.shape == (2, 4)
    legacy = {"features": 3, "embedding_dim": 4, "hidden": [6]}  # a version-1 run saved before the option
    assert build_model(legacy).encoder.pooling == "last"
    with pytest.raises(SpecError, match="model.encoder.pooling: 'max' is not one of last, mean, last_mean"):
        model_config(3, pooling="max")


def test_latent_as_sequence_needs_divisible_latent():
    with pytest.raises(SpecError, match="E must be a multiple of T"):
        model_config(3, decoder="latent_as_sequence", embedding_dim=5, steps=2)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write(p, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, b"new")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temporary file left behind


def test_corrupt_or_mismatched_checkpoint(tmp_path):
    cfg, model, opt = _tiny()
    state = create_train_state(model, opt, jax.random.PRNGKey(0))
    save_run(tmp_path, state, cfg)
    (tmp_path / CHECKPOINT_FILE).write_bytes((tmp_path / CHECKPOINT_FILE).read_bytes()[:100])
    with pytest.raises(RunError, match="cannot read the checkpoint"):
        load_run(tmp_path)
    save_run(tmp_path, state, cfg)
    _, other, _ = _tiny(features=5)
    with pytest.raises(RunError, match="do not match"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE, create_train_state(other, opt, jax.random.PRNGKey(0)))
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "missing")


def test_resumed_run_reaches_the_same_parameters(tmp_path):
    """Interrupt mid-epoch 2, save, reload, continue: the result equals the
    uninterrupted run exactly (same batches, same keys, same Adam state)."""
    # test_fit.py trains this very model: fit's memoised step compiles once for both
    cfg = {"model": model_config(10, decoder="repeat", embedding_dim=32, hidden=(), head="sigmoid", steps=10,
                                 init="orthogonal"),
           "optimizer": optimizer_config(0.02)}  # fmt: skip
    model, opt = build_model(cfg), build_optimizer(cfg)
    data = synthetic("moving_one", n=64, seed=3)
    train, val = data.take(np.arange(48)), data.take(np.arange(48, 64))  # 3 steps of 16 per epoch
    kw = dict(epochs=4, batch_size=16, seed=5, progress=False)

    full, hist_full = fit(model, opt, train, val, **kw)

    saved = {}
    part, _ = fit(model, opt, train, val, max_steps=4, on_epoch_end=lambda s, p: saved.update(p=p), **kw)
    assert int(part.step) == 4 and saved["p"].epoch == 1
    save_run(tmp_path, part, cfg, extra=saved["p"].to_dict(), best_params=saved["p"].best_params)
    run = load_run(tmp_path)
    resumed, hist_res = fit(model, opt, train, val, state=run.state,
                            resume=fit_progress_from_extra(run.extra), **kw)  # fmt: skip
    assert int(resumed.step) == int(full.step) == 12
    _assert_trees_equal(resumed.params, full.params)  # the best epoch's, chosen across the interruption
    _assert_trees_equal(resumed.opt_state, full.opt_state)
    _assert_trees_equal(resumed.rng, full.rng)
    assert [h["val_loss"] for h in hist_res] == [h["val_loss"] for h in hist_full][1:]
