"""The fit loop: each decoder learns the moving-one data to a stated bound;
metrics lines, progress output, early stopping and the non-finite stop."""

import io
import json

import jax
import numpy as np
import pytest

from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config
from jax_lstm_ae.data import synthetic
from jax_lstm_ae.train.fit import NonFiniteError, fit

# Moving one: every valid step is one-hot over 10 features, so the best
# prediction that ignores the input (p = 0.1 everywhere) scores binary CE
# H(0.1) = 0.325. A bound below it shows the latent carries the sequence.
CONSTANT_BCE = -(0.1 * np.log(0.1) + 0.9 * np.log(0.9))

# decoder: (E, epochs of 16 steps, bound on the free-running loss). One LSTM
# layer each way, orthogonal init, Adam 0.02, batch 16, 256 sequences.
# Measured with these settings (loss after the stated epochs, seed 0):
# `python -m pytest tests/test_fit.py -k each_decoder -s` prints what each decoder reaches.
BOUNDS = {
    "repeat": (32, 25, 0.29),
    "unconditioned": (32, 40, 0.27),
    "conditional": (32, 40, 0.26),
    "teacher_forced": (32, 16, 0.15),
    "latent_as_sequence": (30, 25, 0.25),
}


@pytest.mark.parametrize("decoder", list(BOUNDS))
def test_each_decoder_learns_moving_one(decoder):
    e, epochs, bound = BOUNDS[decoder]
    data = synthetic("moving_one", n=256, seed=0)
    cfg = model_config(10, decoder=decoder, embedding_dim=e, hidden=(), head="sigmoid", steps=10, init="orthogonal")
    model = build_model(cfg)
    state, hist = fit(model, build_optimizer(optimizer_config(0.02)), data, None, epochs=epochs, batch_size=16,
                      seed=0, progress=False)  # fmt: skip
    loss = float(model.loss(state.params, data.x, data.lengths, train=False))
    print(f"{decoder}: free-running BCE {loss:.4f} after {epochs} epochs (bound {bound})")
    assert bound < CONSTANT_BCE
    assert loss < bound, f"{decoder}: free-running BCE {loss:.4f} after {epochs} epochs, bound {bound}"
    assert hist[0]["loss"] > loss  # and it went down from the start


# ------------------------------------------------------------------ loop features
@pytest.fixture(scope="module")
def tiny():
    """The repeat model above on 48 + 16 sequences: fit's memoised steps (and
    test_checkpoint's resume test) share its compilation."""
    cfg = {"model": model_config(10, decoder="repeat", embedding_dim=32, hidden=(), head="sigmoid", steps=10,
                                 init="orthogonal"),
           "optimizer": optimizer_config(0.02)}  # fmt: skip
    data = synthetic("moving_one", n=64, seed=3)
    return data.take(np.arange(48)), data.take(np.arange(48, 64)), build_model(cfg), build_optimizer(cfg)


def test_metrics_lines_and_progress(tiny, tmp_path):
    train, val, model, opt = tiny
    stream = io.StringIO()
    log = tmp_path / "m.jsonl"
    state, hist = fit(model, opt, train, val, epochs=3, batch_size=16, log_path=log, progress=stream,
                      restore_best=False)  # fmt: skip
    recs = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert recs == json.loads(json.dumps(hist))  # one JSON line per epoch, as returned
    assert [r["epoch"] for r in recs] == [1, 2, 3] and [r["step"] for r in recs] == [3, 6, 9]
    assert int(state.step) == 9
    assert all(r["seq_per_s"] > 0 and r["val_loss"] > 0 for r in recs)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/3 step 3 loss ") and " val " in lines[0] and "seq/s" in lines[0]
    # the validation loss is the mean per-step error over every valid step
    expect = float(model.loss(state.params, val.x, val.lengths, train=False))
    np.testing.assert_allclose(recs[-1]["val_loss"], expect, rtol=1e-5)
    assert recs[0]["loss"] > recs[-1]["loss"]


def test_early_stopping_returns_the_best_params(tiny):
    train, val, model, opt = tiny
    seen = []
    # min_delta so large that no epoch after the first counts as better
    state, hist = fit(model, opt, train, val, epochs=10, batch_size=16, patience=2, min_delta=1e9, progress=False,
                      on_epoch_end=lambda s, p: seen.append(jax.tree.map(np.array, s.params)))  # fmt: skip
    assert len(hist) == 3  # epoch 1 sets the best, 2 and 3 do not beat it: stop
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(seen[0])):
        np.testing.assert_array_equal(a, b)  # restore_best: epoch 1's params
    assert not np.array_equal(jax.tree.leaves(seen[0])[0], jax.tree.leaves(seen[2])[0])


def test_early_stopping_counts_only_epochs_from_patience_after(tiny):
    train, val, model, opt = tiny  # 48 sequences, batch 16: 3 steps an epoch
    # no epoch after the first is better; epochs ending before step 12 (epochs 2-3) are not counted
    _, hist = fit(model, opt, train, val, epochs=10, batch_size=16, patience=2, min_delta=1e9, progress=False,
                  patience_after=12)
    assert [h["step"] for h in hist] == [3, 6, 9, 12, 15]  # epochs 4 and 5 are the two bad ones: stop


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_state(tiny):
    train, _, model, opt = tiny
    bad = train._replace(x=np.where(np.arange(48)[:, None, None] == 13, np.nan, train.x).astype(np.float32))
    saved = []
    with pytest.raises(NonFiniteError, match=r"training stopped at step \d+ \(epoch \d\)") as err:
        fit(model, opt, bad, None, epochs=3, batch_size=16, seed=1, progress=False,
            on_epoch_end=lambda s, p: saved.append(jax.tree.map(np.array, s.params)))  # fmt: skip
    e = err.value
    # the state is the last good step's: the failed step and those after it were not applied
    assert int(e.state.step) == e.step - 1
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(e.state.params))
    # the batch holding sequence 13 is the failing one: epochs before it finished and were saved
    assert 1 <= e.step <= 3 and saved == []
