"""Neighbours kept (apps.neighbours): the label-free score against hand-made cases, and
`train --noise-grid` / `--choose-by neighbours`, whose recorded scores are recomputed here
from each model's own latents."""

import json

import numpy as np
import pytest

from jax_lstm_ae.apps.dtw import dtw_distances
from jax_lstm_ae.apps.neighbours import (agreement_rows, choose_by_neighbours, latent_agreement, neighbour_agreement,
                                         sequence_neighbours)
from jax_lstm_ae.cli.main import main
from jax_lstm_ae.data import Normalizer, load_sequences
from jax_lstm_ae.train.many_run import load_many
from tiny_data import write_sines_npz

TINY = ["--embedding-dim", "4", "--batch-size", "8", "--epochs", "2", "--quiet"]


def _constant_sequences(values, t=5):
    """Sequences that hold one value each: DTW between two is t * (a - b)^2 (the diagonal path)."""
    x = np.repeat(np.asarray(values, np.float64)[:, None, None], t, axis=1)
    return x, np.full(len(values), t)


def test_dtw_of_constant_sequences_is_the_diagonal():
    x, lengths = _constant_sequences([0.0, 1.0, 3.0])
    assert np.allclose(dtw_distances(x, lengths, x, lengths), 5 * (np.array([0, 1, 3])[:, None] - [0, 1, 3]) ** 2)


def test_a_latent_that_orders_the_sequences_as_dtw_keeps_every_neighbour():
    values = np.array([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 12.7])  # gaps that grow: no ties among neighbours
    x, lengths = _constant_sequences(values)
    assert neighbour_agreement(values[:, None], x, lengths, k=2) == 1.0
    assert neighbour_agreement(np.exp(values)[:, None] * 7 + 3, x, lengths, k=2) == 1.0  # monotone, rescaled: same
    # reversed order of the latent along one axis but the same gaps: the same neighbours
    assert neighbour_agreement(-values[:, None], x, lengths, k=2) == 1.0


def test_agreement_by_hand():
    # 4 sequences at 0, 1, 10, 11: k = 1 neighbours 1, 0, 3, 2. A latent pairing (0, 2) and (1, 3) keeps none.
    x, lengths = _constant_sequences([0.0, 1.0, 10.0, 11.0])
    near = sequence_neighbours(x, lengths, k=1)
    assert near[:, 0].tolist() == [1, 0, 3, 2]
    assert latent_agreement(np.array([[0.0], [10.0], [1.0], [11.0]]), near) == 0.0
    # a latent that keeps the pairs of 0 and 1 only: rows 0 and 1 keep theirs, rows 2 and 3 find 1 and 0
    assert latent_agreement(np.array([[0.0], [0.5], [3.0], [-2.0]]), near) == 0.5
    assert np.isnan(latent_agreement(np.array([[0.0], [np.nan], [1.0], [2.0]]), near))


def test_choose_by_neighbours_picks_the_most_kept_ties_by_order_nan_loses():
    values = np.array([0.0, 0.1, 0.3, 0.7, 1.5, 3.1])
    x, lengths = _constant_sequences(values)
    good, bad = values[:, None], np.array([[0.0], [3.0], [1.0], [5.0], [2.0], [4.0]])
    best, scores = choose_by_neighbours([bad, good, np.full((6, 1), np.nan)], x, lengths, k=1)
    assert best == 1 and scores[1] == 1.0 and scores[0] < 1.0 and np.isnan(scores[2])
    assert choose_by_neighbours([good, good], x, lengths, k=1, order=[1, 0])[0] == 1
    with pytest.raises(ValueError, match="k = 6 neighbours needs more than k sequences"):
        choose_by_neighbours([good], x, lengths, k=6)


def test_rows_past_the_limit_are_a_fixed_subset():
    assert agreement_rows(10, 20).tolist() == list(range(10))
    a, b = agreement_rows(1000, 256), agreement_rows(1000, 256)
    assert len(a) == 256 and np.array_equal(a, b) and np.all(np.diff(a) > 0)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_noise_grid_chosen_by_neighbours_records_each_models_agreement(tmp_path, capsys):
    data = write_sines_npz(tmp_path / "train.npz")
    run = tmp_path / "run"
    code, out, _ = _run(capsys, "train", "--data", data, "--out", run, "--seed", "3", "--noise-grid", "0,0.3",
                        "--choose-by", "neighbours", *TINY)
    assert code == 0 and "chosen by the DTW neighbours its latents keep" in out
    cfg = json.loads((run / "config.json").read_text())
    assert [(t["seed"], t["input_noise"]) for t in cfg["train"]] == [(3, 0.0), (3, 0.3)]
    by = cfg["chosen_by"]
    assert by["by"] == "train --choose-by neighbours" and by["rows"] == 40 and by["neighbours"] == 5
    # recomputed: the rows z-scored by their own statistics (the model does not pool T = 12), DTW's 5 nearest;
    # each model's latents as `encode --model k` gives them (through its own normaliser)
    raw = load_sequences(data)
    ref = Normalizer.fit(raw).apply(raw)
    assert load_many(run).model.spec.pool == 1
    near = sequence_neighbours(ref.x, ref.lengths, k=5)
    for k in range(2):
        assert _run(capsys, "encode", "--run", run, "--data", data, "--model", k, "--out", tmp_path / f"z{k}.npy")[0] == 0
        assert abs(latent_agreement(np.load(tmp_path / f"z{k}.npy"), near) - by["agreement"][k]) < 1e-9, k
    k = by["model"]
    assert by["agreement"][k] == max(by["agreement"]) and cfg["chosen"] == k == load_many(run).chosen
    assert _run(capsys, "encode", "--run", run, "--data", data, "--out", tmp_path / "c.npy")[0] == 0
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / f"z{k}.npy"))  # encode uses the choice
    code, out, _ = _run(capsys, "info", "--run", run)
    assert code == 0 and "most DTW neighbours kept (5 each) among 40 training sequences" in out
    assert "input noise 0.3" in out and f"DTW neighbours kept {by['agreement'][1]:.3f}" in out
    # training on chooses the same way again, from the models as they are then
    code, _, _ = _run(capsys, "train", "--out", run, "--resume", "--epochs", "3", "--quiet")
    cfg = json.loads((run / "config.json").read_text())
    again = cfg["chosen_by"]
    assert code == 0 and again["by"] == "train --choose-by neighbours" and len(again["agreement"]) == 2
    assert cfg["chosen"] == again["model"] and again["agreement"][again["model"]] == max(again["agreement"])
    code, _, err = _run(capsys, "train", "--out", run, "--resume", "--noise-grid", "0,0.2", "--epochs", "4")
    assert code == 2 and "--noise-grid cannot change when resuming" in err


def test_noise_grid_refusals(tmp_path, capsys):
    data = write_sines_npz(tmp_path / "train.npz")
    base = ["train", "--data", data, *TINY]
    code, _, err = _run(capsys, *base, "--out", tmp_path / "a", "--choose-by", "neighbours")
    assert code == 2 and "--choose-by picks among the models of --seeds K" in err
    code, _, err = _run(capsys, *base, "--out", tmp_path / "b", "--noise-grid", "0,0.3", "--input-noise", "0.1")
    assert code == 2 and "--noise-grid gives each model's input noise; drop --input-noise" in err
    code, _, err = _run(capsys, *base, "--out", tmp_path / "c", "--noise-grid", "0,0.3", "--step-dropout", "0.1")
    assert code == 2 and "drop --step-dropout" in err
    code, _, err = _run(capsys, *base, "--out", tmp_path / "d", "--noise-grid", "0,0")
    assert code == 2 and "give distinct noise std >= 0" in err
    code, _, err = _run(capsys, *base, "--out", tmp_path / "e", "--noise-grid", "0,0.3", "--train-rows", ":")
    assert code == 2 and "drop --noise-grid" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / n).exists() for n in "abcde")
