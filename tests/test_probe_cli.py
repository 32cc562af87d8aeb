"""`jax-lstm-ae probe` on a TRAIN/TEST pair of .ts files: unequal lengths, string
classes, the linear and SVM classifiers, and its errors."""

import json

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main


def _ts(path, x, lengths, labels):
    lines = ["@problemName Toy", "@timeStamps false", "@univariate false", "@dimensions 2", "@equalLength false",
             "@classLabel true slow fast", "@data"]
    for xi, n, y in zip(x, lengths, labels):
        lines.append(":".join(",".join(f"{v:.5f}" for v in xi[:n, f]) for f in range(2)) + f":{y}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe_cli")
    rng = np.random.default_rng(0)

    def make(n, tmax):
        y = rng.integers(0, 2, n)
        lengths = rng.integers(6, tmax + 1, n)
        t = np.arange(tmax)[None, :, None]
        w = np.where(y == 0, 0.3, 1.2)[:, None, None]
        x = np.concatenate([np.sin(w * t), np.cos(w * t)], -1) + rng.normal(0, 0.1, (n, tmax, 2))
        return x, lengths, np.array(["slow", "fast"])[y]

    _ts(d / "TRAIN.ts", *make(48, 12))
    _ts(d / "TEST.ts", *make(30, 14))  # longer cases than TRAIN: another T
    assert main(["train", "--data", str(d / "TRAIN.ts"), "--out", str(d / "run"), "--epochs", "3",
                 "--embedding-dim", "4", "--batch-size", "16", "--quiet"]) == 0
    return d


@pytest.mark.parametrize("classifier", ["linear", "svm"])
def test_probe_train_test_files(pair, capsys, classifier):
    if classifier == "svm":
        pytest.importorskip("sklearn")
    capsys.readouterr()
    rc = main(["probe", "--run", str(pair / "run"), "--data", str(pair / "TRAIN.ts"), "--test-data",
               str(pair / "TEST.ts"), "--classifier", classifier, "--out", str(pair / f"{classifier}.json")])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((pair / f"{classifier}.json").read_text())
    assert [res[k]["dim"] for k in ("latent", "pca", "raw")] == [4, 4, 24]  # raw: resampled to T=12, F=2
    param = "l2" if classifier == "linear" else "C"
    assert "48 train / 30 test sequences, 2 classes" in out and "resampled to T=12" in out
    for name, r in res.items():
        assert 0.0 <= r["cv_accuracy"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
        # the printed row is the JSON's
        assert f"{name:14s} {r['dim']:5d} {r[param]:7g} {r['cv_accuracy']:15.4f} {r['accuracy']:9.4f}" in out
    assert res["raw"]["accuracy"] >= 0.9  # two well-separated frequencies


def test_probe_svm_without_sklearn_is_one_line(pair, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    rc = main(["probe", "--run", str(pair / "run"), "--data", str(pair / "TRAIN.ts"), "--classifier", "svm"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("jax-lstm-ae: error: the SVM classifier needs scikit-learn") and err.count("\n") == 1


def test_probe_test_classes_must_be_known(pair, tmp_path, capsys):
    text = (pair / "TEST.ts").read_text().replace("@classLabel true slow fast", "@classLabel true slow fast walk")
    lines = text.splitlines()
    lines[-1] = lines[-1].rsplit(":", 1)[0] + ":walk"
    (tmp_path / "odd.ts").write_text("\n".join(lines) + "\n")
    rc = main(["probe", "--run", str(pair / "run"), "--data", str(pair / "TRAIN.ts"), "--test-data",
               str(tmp_path / "odd.ts")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds classes ['walk'] that --data does not" in err
