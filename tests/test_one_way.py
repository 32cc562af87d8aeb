"""API = CLI = bench: the same settings and seed give bit-identical
parameters and scores (max |diff| 0 on one CPU device) through the detector
API, `jax-lstm-ae train` + `detect`, and the benchmark's code, for one long
series and for a set of sequences."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_lstm_ae.apps.detectors import SequenceAnomalyDetector, SeriesAnomalyDetector, is_detector_run, load_detector
from jax_lstm_ae.apps.series import plan_series
from jax_lstm_ae.cli.main import main as cli
from jax_lstm_ae.train.checkpoint import load_run
from jax_lstm_ae.train.many_run import load_many
from jax_lstm_ae.train.runner import read_specs
from test_anomaly_series import periodic_series

ROOT = Path(__file__).resolve().parents[1]
ECG = ROOT.parent / "shared" / "data" / "ecg5000" / "ECG5000_TRAIN.txt"


def _quality():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("quality")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert np.array_equal(np.asarray(u), np.asarray(v)), float(np.max(np.abs(np.asarray(u) - np.asarray(v))))


def _scores(csv: Path) -> np.ndarray:
    return np.loadtxt(csv, delimiter=",", skiprows=1)[:, 1]


def test_one_long_series_api_cli_bench(tmp_path, monkeypatch):
    series = periodic_series(n=1500)
    np.savetxt(tmp_path / "s.csv", series, delimiter=",")
    settings = dict(embedding_dim=4, hidden=(), epochs=2, batch_size=64, seed=0)
    # --window counts rows on the command line: the API gets the plan it makes of 16 rows
    api = SeriesAnomalyDetector(**settings).fit(series[:1200], plan=plan_series(series[:1200], window_rows=16))
    api_scores = api.decision_function(series)

    run = tmp_path / "run"
    assert cli(["train", "--data", str(tmp_path / "s.csv"), "--train-rows", "0:1200", "--window", "16",
                "--embedding-dim", "4", "--hidden", "none", "--epochs", "2", "--min-steps", "0",
                "--batch-size", "64", "--seed", "0", "--devices", "1", "--out", str(run), "--quiet"]) == 0
    assert cli(["detect", "--run", str(run), "--out", str(tmp_path / "p.csv"), "--devices", "1", "--quiet"]) == 0
    _same(api.params_, load_many(run).params)  # the ensemble's K models, stacked
    assert np.array_equal(_scores(tmp_path / "p.csv"), api_scores.astype(np.float64))

    quality = _quality()  # the benchmark's series row (the CLI route), its matrix-profile column left out
    monkeypatch.setattr("jax_lstm_ae.apps.baselines.matrix_profile_scores", lambda s, plan: np.zeros(len(s)))
    args = quality.parser().parse_args(["--window", "16", "--embedding", "4", "--hidden", "--batch", "64",
                                        "--epochs", "2", "--devices", "1", "--dump", str(tmp_path / "dump")])
    row = quality.series_row(args, "s", tmp_path / "s.csv", None, [(1400, 1450)], (0, 1200))
    assert np.array_equal(np.load(tmp_path / "dump" / "s.npz")["lstm"], api_scores)
    assert row["commands"][0].startswith(f"jax-lstm-ae train --data {tmp_path / 's.csv'} --train-rows 0:1200")
    assert row["plan"] == api.plan_._asdict() and {"roc_auc", "vus_pr", "top_in_stretch"} <= set(row["lstm"])


def _train(tmp_path, name, *flags):
    run = tmp_path / name
    assert cli(["train", *flags, "--embedding-dim", "4", "--hidden", "none", "--epochs", "2", "--min-steps", "0",
                "--batch-size", "64", "--seed", "0", "--devices", "1", "--out", str(run), "--quiet"]) == 0
    return run


def test_a_long_series_has_one_route(tmp_path, capsys):
    """`train --window W --stride S` on a normal series is the series pipeline on all its rows: its scores of the
    whole series are those of `train --train-rows A:B --window W --stride S` on the whole file, to the bit;
    `detect --fit-data` and another window or stride are refused on such a run, naming the flag to drop."""
    series = periodic_series(n=1500)
    np.savetxt(tmp_path / "s.csv", series, delimiter=",")
    np.savetxt(tmp_path / "normal.csv", series[:1200], delimiter=",")
    rows = _train(tmp_path, "rows", "--data", str(tmp_path / "s.csv"), "--train-rows", "0:1200", "--window", "24",
                  "--stride", "2")
    plain = _train(tmp_path, "plain", "--data", str(tmp_path / "normal.csv"), "--window", "24", "--stride", "2")
    assert is_detector_run(plain)
    plan = load_detector(plain).plan_
    assert plan == load_detector(rows).plan_ and (plan.window_rows, plan.stride * plan.pool) == (24, 2)
    assert cli(["detect", "--run", str(rows), "--out", str(tmp_path / "a.csv"), "--quiet"]) == 0
    assert cli(["detect", "--run", str(plain), "--data", str(tmp_path / "s.csv"), "--window", "24", "--stride", "2",
                "--out", str(tmp_path / "b.csv"), "--quiet"]) == 0
    a, b = _scores(tmp_path / "a.csv"), _scores(tmp_path / "b.csv")
    assert a.shape == (1500,) and np.array_equal(a, b), float(np.max(np.abs(a - b)))
    capsys.readouterr()
    np.savetxt(tmp_path / "y.txt", (np.arange(1500) >= 1400) & (np.arange(1500) < 1450), fmt="%d")
    assert cli(["detect", "--run", str(plain), "--data", str(tmp_path / "s.csv"), "--labels", str(tmp_path / "y.txt"),
                "--out", str(tmp_path / "d.csv"), "--quiet"]) == 0
    printed = capsys.readouterr().out  # point and range-aware metrics side by side
    assert all(f"{k} " in printed for k in ("roc_auc", "range_f1", "range_auc_pr", "vus_pr")), printed
    for flags, message in (
        (["--fit-data", str(tmp_path / "normal.csv")], "drop --fit-data"),
        (["--stride", "8"], "--stride 8 differs from this run's, chosen at train time: window 24 steps x 1 rows"),
    ):
        rc = cli(["detect", "--run", str(plain), "--data", str(tmp_path / "s.csv"), *flags,
                  "--out", str(tmp_path / "c.csv")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    # encode gives the latents of the windows the pipeline trained on and scores, their starts in rows
    assert cli(["encode", "--run", str(plain), "--data", str(tmp_path / "s.csv"), "--out", str(tmp_path / "z.npz"),
                "--quiet"]) == 0
    det = load_detector(plain)  # an ensemble: encode uses its chosen model (the lowest validation loss)
    chosen = load_many(plain).chosen
    member = det.members_[chosen]
    windows, starts = det.prepared_windows(series)
    windows = member.normalizer.apply(windows)
    z = np.load(tmp_path / "z.npz")
    np.testing.assert_array_equal(z["starts"], starts * plan.pool)
    np.testing.assert_allclose(z["z"], np.asarray(det.model_.encode(det.member_params(chosen), windows.x, windows.lengths)),
                               rtol=1e-5, atol=1e-6)
    capsys.readouterr()
    rc = cli(["reconstruct", "--run", str(plain), "--out", str(tmp_path / "r.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "reconstruct takes runs of sequences" in err and len(err.strip().splitlines()) == 1, err
    # a flag the series pipeline cannot honour is refused in one line that names it, before any training
    rc = cli(["train", "--data", str(tmp_path / "normal.csv"), "--window", "24", "--label-column", "0",
              "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--label-column does not apply to one long series" in err and "drop it" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(not ECG.exists(), reason=f"needs {ECG} (../shared/data)")
def test_sequences_api_cli_bench(tmp_path):
    """ECG5000, class 1 normal: the benchmark's CLI row (train --normal-class 1 + detect), and the same specs
    through SequenceAnomalyDetector."""
    quality = _quality()
    args = quality.parser().parse_args(["--ecg-epochs", "2", "--ecg-dir", str(tmp_path / "ecg"), "--devices", "1"])
    quality.ecg_cli(args)
    run = load_run(tmp_path / "ecg" / "run")
    from jax_lstm_ae.data import load_sequences

    train = load_sequences(tmp_path / "ecg" / "train.txt")
    normal = train.take(np.flatnonzero(train.labels.astype(int) == 1))
    api = SequenceAnomalyDetector(specs=read_specs(run.config)).fit(normal.x)
    _same(api.params_, run.params)
    test = load_sequences(tmp_path / "ecg" / "test.txt")
    assert np.array_equal(_scores(tmp_path / "ecg" / "scores.csv"), api.decision_function(test.x))


def test_a_saved_detector_scores_with_the_params_it_was_fitted_with(tmp_path):
    """A detector scores with the best validation epoch's params, which need not be the last state's:
    save / load keeps those (here made to differ from the state's on purpose)."""
    from jax_lstm_ae.apps.detectors import load_detector

    series = periodic_series(n=1500)
    det = SeriesAnomalyDetector(window=16, embedding_dim=4, hidden=(), epochs=2, batch_size=64).fit(series[:1200])
    det.params_ = jax.tree.map(lambda a: a * 1.01, det.params_)  # as if an earlier epoch had been the best
    det.save(tmp_path / "d")
    again = load_detector(tmp_path / "d")
    _same(det.params_, again.params_)
    _same(det.state_, again.state_)
    assert np.array_equal(det.decision_function(series), again.decision_function(series))
