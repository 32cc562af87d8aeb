"""The default training budget: 20 epochs but at least 1,000 steps (the CLI's
preset: up to 100 epochs, at least 2,000 steps, then early stopping), so a
small set trains long enough to learn; an explicit --epochs is exact."""

import json

import numpy as np
import pytest

from jax_lstm_ae.data import Normalizer, synthetic
from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config
from jax_lstm_ae.train.fit import budget_epochs, fit
from jax_lstm_ae.train.spec import DEFAULT_EPOCHS, DEFAULT_MIN_STEPS


def test_budget_epochs_values():
    assert DEFAULT_MIN_STEPS == 1000 and DEFAULT_EPOCHS == 20
    assert budget_epochs(100, 32) == 334  # 3 steps an epoch: ceil(1000 / 3)
    assert budget_epochs(100_000, 32) == 20  # 3,125 steps an epoch: 20 epochs are more than 1,000 steps
    assert budget_epochs(10, 32) == 1000  # the batch shrinks to the set: one step an epoch
    assert budget_epochs(100, 32, epochs=5) == 5  # epochs alone are exact
    assert budget_epochs(100, 32, epochs=5, min_steps=30) == 10
    assert budget_epochs(100, 32, min_steps=0) == 20
    assert budget_epochs(100, 32, epochs=400, min_steps=30) == 400


def test_fit_default_budget_learns_a_small_set():
    data = synthetic("sines", n=40, seed=0)
    data = Normalizer.fit(data).apply(data)
    model = build_model(model_config(3, embedding_dim=8, hidden=(), init="orthogonal"))
    opt = build_optimizer(optimizer_config(1e-2))
    short, hs = fit(model, opt, data, epochs=10, batch_size=32, progress=False)  # 10 steps
    state, hist = fit(model, opt, data, batch_size=32, min_steps=300, progress=False)
    assert int(short.step) == 10 and len(hs) == 10
    assert int(state.step) == 300 and len(hist) == 300  # one 32-row batch an epoch
    # 10 steps leave the loss near the data's variance; the budget reaches well below it
    assert hs[-1]["loss"] > 0.7
    assert hist[-1]["loss"] < 0.5 * hs[-1]["loss"]


def test_cli_min_steps_and_default(tmp_path, capsys):
    from jax_lstm_ae.cli.main import build_parser, main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(40, 6, 1)).astype(np.float32))
    tiny = ["--data", str(tmp_path / "x.npy"), "--embedding-dim", "3", "--batch-size", "40", "--quiet",
            "--val-fraction", "0"]
    assert main(["train", *tiny, "--out", str(tmp_path / "a"), "--min-steps", "150"]) == 0
    # max(100 epochs, 150 steps) at one step an epoch; early stopping waits for the 150, so it cannot cut them
    assert "trained 150 steps" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["budget"]["epochs"] == 150 and cfg["train"]["min_steps"] == 150 and cfg["train"]["epochs"] == 100
    assert cfg["train"]["patience"] == 10
    assert main(["train", *tiny, "--out", str(tmp_path / "b"), "--epochs", "3"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out  # --epochs alone: exact, no minimum
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["train"]["min_steps"] is None and cfg["train"]["patience"] is None  # nor the preset's patience
    args = build_parser().parse_args(["train", "--out", "r"])
    assert args.epochs is None and args.min_steps is None  # resolved to the "cli" preset's budget in cmd_train
