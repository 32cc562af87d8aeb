"""`detect` and `probe` commands end to end on a small synthetic anomaly set."""

import json
import re

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main
from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config, save_run
from jax_lstm_ae.data import Normalizer, synthetic
from jax_lstm_ae.train.fit import fit
from jax_lstm_ae.apps.metrics import roc_auc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small model trained on normal noisy sines (T=32, F=3)."""
    root = tmp_path_factory.mktemp("anomaly_cli")
    data = synthetic("sines", n=400, seed=0)
    normal = data.take(data.labels == 0)
    norm = Normalizer.fit(normal)
    config = {
        "model": model_config(3, decoder="repeat", embedding_dim=8, hidden=(16,)),
        "optimizer": optimizer_config(1e-2),
    }
    model = build_model(config)
    state, _ = fit(model, build_optimizer(config), norm.apply(normal), epochs=25, batch_size=64, seed=0,
                   progress=False)
    save_run(root / "run", state, config, norm)
    return root


def test_detect_finds_injected_anomalies_in_sequences(run_dir, capsys):
    test = synthetic("sines", n=200, seed=1)
    np.savez(run_dir / "test.npz", x=test.x, labels=test.labels)
    np.savetxt(run_dir / "labels.txt", test.labels, fmt="%d")
    normal = synthetic("sines", n=300, seed=2)
    np.savez(run_dir / "normal.npz", x=normal.x[normal.labels == 0][:200])  # 200 rows: same batch shape as test
    out = run_dir / "scores.csv"
    rc = main(["detect", "--run", str(run_dir / "run"), "--data", str(run_dir / "test.npz"),
                   "--labels", str(run_dir / "labels.txt"), "--fit-data", str(run_dir / "normal.npz"),
                   "--threshold", "fbeta", "--beta", "1", "--out", str(out)])
    assert rc == 0
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert out.read_text().splitlines()[0] == "index,score,anomaly,label"
    np.testing.assert_array_equal(table[:, 0], np.arange(200))
    np.testing.assert_array_equal(table[:, 3], test.labels)
    y, s, flag = test.labels.astype(bool), table[:, 1], table[:, 2].astype(bool)
    assert roc_auc(y, s) >= 0.95
    assert np.mean(flag[y]) >= 0.8 and np.mean(y[flag]) >= 0.8  # recall and precision of the decisions
    assert (run_dir / "scores.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "flagged" in printed and "roc_auc" in printed


def test_detect_on_a_long_series_points_at_the_anomaly(run_dir, capsys):
    t = np.arange(1200)
    clean = np.stack([(1 - 0.2 * c) * np.sin(2 * np.pi * 0.07 * t + c * np.pi / 3) for c in range(3)], 1)
    normal = clean + 0.05 * np.random.default_rng(4).normal(size=clean.shape)
    series = clean + 0.05 * np.random.default_rng(3).normal(size=clean.shape)
    series[700:712, 1] = 2.5 * np.sin(np.arange(12) * 2.5)  # a burst of fast oscillation
    path, normal_path = run_dir / "series.csv", run_dir / "normal_series.csv"
    for p, s in ((path, series), (normal_path, normal)):
        np.savetxt(p, np.column_stack([t, s]), delimiter=",", fmt="%.5f", header="t,a,b,c", comments="")
    labels = ((t >= 700) & (t < 712)).astype(int)
    np.savetxt(run_dir / "point_labels.txt", labels, fmt="%d")
    out = run_dir / "points.csv"
    rc = main(["detect", "--run", str(run_dir / "run"), "--data", str(path), "--columns", "a,b,c",
                   "--window", "32", "--stride", "4", "--level", "step", "--fit-data", str(normal_path),
                   "--threshold", "contamination", "--contamination", "0.02",
                   "--labels", str(run_dir / "point_labels.txt"), "--out", str(out)])
    assert rc == 0
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert table.shape == (1200, 4)
    assert 690 <= np.argmax(table[:, 1]) <= 722
    assert roc_auc(labels, table[:, 1]) >= 0.95
    printed = capsys.readouterr().out
    assert "windows of 32 rows, stride 4 (given)" in printed
    assert all(f"{k} " in printed for k in ("roc_auc", "range_f1", "vus_pr", "range_auc_pr"))  # point and range-aware
    flags = table[:, 2].astype(bool)
    # the threshold is the 98th percentile of the scored points: about 2 % of them are flagged
    assert flags.mean() == pytest.approx(0.02, abs=0.002)
    assert flags[labels == 1].mean() >= 0.6 and flags[labels == 0].mean() <= 0.05  # some burst samples sit near 0
    assert (run_dir / "points.png").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("0\n1\n0\n", "has 3 values but there are 200 items"),
        ("0\n" * 199 + "2\n", "only 0 .normal. and 1 .anomaly.; item 199 is 2"),
        ("0\n" * 199 + "yes\n", "line 200 is 'yes'"),
    ],
)
def test_bad_labels_give_a_clear_error(run_dir, capsys, content, message):
    if not (run_dir / "test.npz").exists():
        test = synthetic("sines", n=200, seed=1)
        np.savez(run_dir / "test.npz", x=test.x, labels=test.labels)
    bad = run_dir / "bad_labels.txt"
    bad.write_text(content)
    rc = main(["detect", "--run", str(run_dir / "run"), "--data", str(run_dir / "test.npz"),
                   "--labels", str(bad), "--out", str(run_dir / "x.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "jax-lstm-ae: error: " in err
    assert re.search(message, err), err


def test_threshold_errors_are_clear(run_dir, capsys):
    test = synthetic("sines", n=50, seed=4)
    np.savez(run_dir / "small.npz", x=test.x)
    rc = main(["detect", "--run", str(run_dir / "run"), "--data", str(run_dir / "small.npz"),
                   "--threshold", "fbeta", "--out", str(run_dir / "y.csv")])
    assert rc == 2 and "needs labels" in capsys.readouterr().err
    # the same through the full `jax-lstm-ae` entry point, where detect is registered
    from jax_lstm_ae.cli.main import main as full_main

    rc = full_main(["detect", "--run", str(run_dir / "run"), "--data", str(run_dir / "small.npz"),
                    "--threshold", "sometimes", "--out", str(run_dir / "y.csv")])
    assert rc == 2 and "--threshold must be fbeta, contamination, meanstd" in capsys.readouterr().err


def test_probe_command_reports_three_representations(run_dir, capsys):
    data = synthetic("sines", n=240, seed=5)
    np.savez(run_dir / "probe.npz", x=data.x, labels=data.labels)
    rc = main(["probe", "--run", str(run_dir / "run"), "--data", str(run_dir / "probe.npz"),
                   "--out", str(run_dir / "probe.json")])
    assert rc == 0
    res = json.loads((run_dir / "probe.json").read_text())
    assert [res[k]["dim"] for k in ("latent", "pca", "raw")] == [8, 8, 96]
    for r in res.values():
        assert 0.5 <= r["accuracy"] <= 1.0
    assert "latent" in capsys.readouterr().out


def test_detect_and_probe_split_over_two_devices_agree_with_one(run_dir, capsys):
    """--devices 2 (a fresh process, so it gets 2 CPU devices): every batch
    is split over both; the scores, decisions and probe equal one device's."""
    import os
    import subprocess
    import sys

    test = synthetic("sines", n=203, seed=6)  # odd: the last batch is padded with length-0 rows
    np.savez(run_dir / "mesh.npz", x=test.x, labels=test.labels)
    common = ["--run", str(run_dir / "run"), "--data", str(run_dir / "mesh.npz"), "--batch-size", "64"]
    detect = ["detect", *common, "--normal-class", "0", "--threshold", "fbeta", "--beta", "1"]
    probe = ["probe", *common]
    assert main([*detect, "--out", str(run_dir / "one.csv")]) == 0
    assert main([*probe, "--out", str(run_dir / "one.json")]) == 0
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    for argv in ([*detect, "--out", str(run_dir / "two.csv")], [*probe, "--out", str(run_dir / "two.json")]):
        res = subprocess.run([sys.executable, "-m", "jax_lstm_ae", *argv, "--devices", "2"], env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    one, two = (np.loadtxt(run_dir / f, delimiter=",", skiprows=1) for f in ("one.csv", "two.csv"))
    np.testing.assert_allclose(two[:, 1], one[:, 1], rtol=1e-4)
    np.testing.assert_array_equal(two[:, [0, 2, 3]], one[:, [0, 2, 3]])
    a, b = (json.loads((run_dir / f).read_text()) for f in ("one.json", "two.json"))
    for k in ("latent", "pca", "raw"):
        assert abs(a[k]["accuracy"] - b[k]["accuracy"]) <= 1 / 81 + 1e-9  # at most one test row of 81
    capsys.readouterr()


# ----------------------------------------------------------------- train --normal-class / --train-rows
def test_train_normal_class_then_detect_fits_the_scorer_on_the_runs_normal_validation(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main as full_main
    from jax_lstm_ae.train.checkpoint import read_config

    train, test = synthetic("sines", n=200, seed=0), synthetic("sines", n=120, seed=1)
    np.savez(tmp_path / "train.npz", x=train.x, labels=train.labels)
    np.savez(tmp_path / "test.npz", x=test.x, labels=test.labels)
    rc = full_main(["train", "--data", str(tmp_path / "train.npz"), "--normal-class", "0", "--epochs", "2",
                    "--embedding-dim", "4", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    cfg = read_config(tmp_path / "run")
    assert cfg["data"]["normal_class"] == "0" and cfg["data"]["n"] == int((train.labels == 0).sum())
    capsys.readouterr()
    rc = full_main(["detect", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "test.npz"),
                    "--normal-class", "0", "--out", str(tmp_path / "s.csv"), "--top", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    n_val = cfg["data"]["n_val"]
    assert f"scorer fitted on the run's {n_val} held-out sequences of class 0" in out
    assert "top sequences (index score): " in out
    table = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 3], test.labels != 0)
    assert np.all(np.isfinite(table[:, 1]))
    rc = full_main(["train", "--data", str(tmp_path / "train.npz"), "--normal-class", "7", "--out",
                    str(tmp_path / "r2"), "--quiet"])
    assert rc == 2 and "--normal-class 7 matches no label" in capsys.readouterr().err


def _periodic_csv(path, n=2400, period=50, anomaly=(1900, 1940)):
    t = np.arange(n)
    rng = np.random.default_rng(0)
    x = np.stack([np.sin(2 * np.pi * t / period), np.cos(4 * np.pi * t / period)], 1) + 0.05 * rng.normal(size=(n, 2))
    x[anomaly[0]:anomaly[1], 1] = 0.0
    np.savetxt(path, np.column_stack([t, x]), delimiter=",", fmt="%.5f", header="t,a,b", comments="")
    return x


def test_train_rows_pipeline_through_the_cli_matches_the_detector_api(tmp_path, capsys):
    from jax_lstm_ae.apps.detectors import load_detector
    from jax_lstm_ae.cli.main import main as full_main

    x = _periodic_csv(tmp_path / "s.csv")
    rc = full_main(["train", "--data", str(tmp_path / "s.csv"), "--columns", "a,b", "--train-rows", "0:1800",
                    "--window", "48", "--epochs", "2", "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "series pipeline on rows 0:1800" in out and "period 50 rows" in out
    # a run like any other: each of its 5 models' epochs in metrics.jsonl, and their plot
    assert "trained 5 models (seeds 0..4)" in out
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2 * 5
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    rc = full_main(["detect", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "p.csv"),
                    "--contamination", "0.02", "--top", "3", "--explain", str(tmp_path / "why.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "window 48 steps x 1 rows = 48 rows" in out and "chosen from its training rows 0:1800" in out
    assert "top anomalous stretches" in out
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert table.shape == (2400, 3)
    assert table[:, 2].mean() == pytest.approx(0.02, abs=0.001)  # --contamination 0.02 flags 2 % of points
    det = load_detector(tmp_path / "run")
    from jax_lstm_ae.data import load_series

    np.testing.assert_allclose(table[:, 1], det.decision_function(load_series(tmp_path / "s.csv", ["a", "b"])),
                               rtol=1e-5)  # the CSV keeps 6 significant digits
    assert 1850 <= np.argmax(table[:, 1]) <= 1990 and x.shape == (2400, 2)
    why = (tmp_path / "why.csv").read_text().splitlines()
    assert why[0].startswith("start,end,score,window_start") and 2 <= len(why) <= 4
    first = why[1].split(",")
    assert first[7] in ("a", "b") and 0 < float(first[8]) <= 1 and 0 < float(first[9]) <= 1
    for bad, msg in (("5:2", "does not lie inside"), ("x", "must look like A:B")):
        rc = full_main(["train", "--data", str(tmp_path / "s.csv"), "--columns", "a,b", "--train-rows", bad,
                        "--out", str(tmp_path / "bad"), "--quiet"])
        assert rc == 2 and msg in capsys.readouterr().err
    rc = full_main(["detect", "--run", str(tmp_path / "run"), "--model", "0", "--out", str(tmp_path / "q.csv")])
    assert rc == 2 and "scores with all its models as one ensemble; drop --model" in capsys.readouterr().err
    rc = full_main(["detect", "--run", str(tmp_path / "run"), "--window", "32", "--out", str(tmp_path / "q.csv")])
    assert rc == 2 and "--window 32 differs from this run's, chosen at train time: window 48 steps" in \
        capsys.readouterr().err
    rc = full_main(["detect", "--run", str(tmp_path / "run"), "--fit-data", str(tmp_path / "s.csv"),
                    "--out", str(tmp_path / "q.csv")])
    assert rc == 2 and "drop --fit-data" in capsys.readouterr().err


def test_train_rows_seeds_sets_the_ensemble_and_lr_grid_is_refused(tmp_path, capsys):
    """--seeds K with --train-rows: K models (seeds S..S+K-1) scored as one ensemble; --seeds 1 is one model;
    --lr-grid, which trains models to choose among, is refused in one line."""
    from jax_lstm_ae.apps.detectors import load_detector
    from jax_lstm_ae.cli.main import main as full_main

    _periodic_csv(tmp_path / "s.csv")
    base = ["train", "--data", str(tmp_path / "s.csv"), "--columns", "a,b", "--train-rows", "0:1800", "--window", "48",
            "--epochs", "1", "--min-steps", "0", "--embedding-dim", "4", "--hidden", "none", "--quiet"]
    assert full_main([*base, "--seeds", "2", "--seed", "7", "--out", str(tmp_path / "two")]) == 0
    assert "trained 2 models (seeds 7..8)" in capsys.readouterr().out
    det = load_detector(tmp_path / "two")
    assert len(det.members_) == 2 and det.models == 2
    assert full_main([*base, "--seeds", "1", "--out", str(tmp_path / "one")]) == 0
    assert load_detector(tmp_path / "one").members_ is None
    capsys.readouterr()
    rc = full_main([*base, "--lr-grid", "1e-3,1e-2", "--out", str(tmp_path / "grid")])
    err = capsys.readouterr().err
    assert rc == 2 and "drop --lr-grid" in err and len(err.strip().splitlines()) == 1
