"""`jax-lstm-ae train --seeds K` / `--lr-grid`: K models in one run folder,
equal to K one-model runs; encode/reconstruct --model; --resume and --force
on the whole run."""

import json
import shutil

import jax
import numpy as np
import pytest

from jax_lstm_ae.cli.main import main
from jax_lstm_ae.train.checkpoint import load_run
from jax_lstm_ae.train.many_run import load_many
from tiny_data import write_sines_npz

TINY = ["--embedding-dim", "4", "--batch-size", "8", "--epochs", "2", "--quiet"]
TOL = 1e-5


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three seeds as one run, and the same three as one-model runs (--seed 5, 6, 7)."""
    d = tmp_path_factory.mktemp("many_cli")
    write_sines_npz(d / "train.npz")
    assert main(["train", "--data", str(d / "train.npz"), "--out", str(d / "many"), "--seed", "5", "--seeds", "3",
                 *TINY]) == 0
    for s in (5, 6, 7):
        assert main(["train", "--data", str(d / "train.npz"), "--out", str(d / f"one{s}"), "--seed", str(s),
                     *TINY]) == 0
    return d


def test_seeds_equal_one_model_runs(runs):
    many = load_many(runs / "many")
    assert many.k == 3 and {p.name for p in (runs / "many").iterdir()} >= {
        "config.json", "checkpoint.msgpack", "metrics.jsonl", "loss.png", "reconstructions.png"}
    cfg = json.loads((runs / "many" / "config.json").read_text())
    assert cfg["kind"] == "many" and [t["seed"] for t in cfg["train"]] == [5, 6, 7]
    best = []
    for k, s in enumerate((5, 6, 7)):
        one = load_run(runs / f"one{s}")
        assert _max_diff(many.pick(k).params, one.params) < TOL, k
        assert _max_diff(many.pick(k).state.params, one.state.params) < TOL, k
        assert many.normalizers[k].to_dict() == one.normalizer.to_dict()
        best.append(min(r["val_loss"] for r in json.loads("[" + ",".join(
            (runs / f"one{s}" / "metrics.jsonl").read_text().splitlines()) + "]")))
    assert cfg["chosen"] == many.chosen == int(np.argmin(best))  # the lowest validation loss, no labels
    lines = [json.loads(ln) for ln in (runs / "many" / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["epoch"]) for r in lines) == [(k, e) for k in range(3) for e in (1, 2)]
    for r in lines:  # each model's metrics are its one-model run's
        one = [json.loads(ln) for ln in (runs / f"one{5 + r['model']}" / "metrics.jsonl").read_text().splitlines()]
        assert abs(one[r["epoch"] - 1]["val_loss"] - r["val_loss"]) < TOL


def test_encode_all_and_each_model(runs, tmp_path, capsys):
    code, out, _ = _run(capsys, "encode", "--run", runs / "many", "--out", tmp_path / "all.npy", "--model", "all")
    assert code == 0 and "latents (3, 40, 4)" in out
    z = np.load(tmp_path / "all.npy")
    for k, s in enumerate((5, 6, 7)):
        assert _run(capsys, "encode", "--run", runs / "many", "--out", tmp_path / f"{k}.npy", "--model", k)[0] == 0
        assert np.array_equal(z[k], np.load(tmp_path / f"{k}.npy"))
        assert _run(capsys, "encode", "--run", runs / f"one{s}", "--out", tmp_path / f"one{s}.npy")[0] == 0
        assert np.max(np.abs(z[k] - np.load(tmp_path / f"one{s}.npy"))) < 1e-4  # the one-model run's latents
    assert _run(capsys, "encode", "--run", runs / "many", "--out", tmp_path / "c.npy")[0] == 0
    assert np.array_equal(np.load(tmp_path / "c.npy"), z[load_many(runs / "many").chosen])
    code, out, _ = _run(capsys, "reconstruct", "--run", runs / "many", "--out", tmp_path / "r.npz", "--model", "all")
    r = np.load(tmp_path / "r.npz")
    assert code == 0 and r["reconstruction"].shape == (3, 40, 12, 2) and r["errors"].shape == (3, 40)
    assert _run(capsys, "reconstruct", "--run", runs / "many", "--out", tmp_path / "r1.npz", "--model", 1)[0] == 0
    assert np.array_equal(np.load(tmp_path / "r1.npz")["errors"], r["errors"][1])
    code, _, err = _run(capsys, "encode", "--run", runs / "many", "--out", tmp_path / "x.npy", "--model", 3)
    assert code == 2 and "holds models 0..2" in err
    code, _, err = _run(capsys, "encode", "--run", runs / "one5", "--out", tmp_path / "x.npy", "--model", "all")
    assert code == 2 and "a run of one model" in err
    code, out, _ = _run(capsys, "info", "--run", runs / "many")
    assert code == 0 and "models: 3 trained as one program" in out and out.count(", lr ") == 3


def test_resume_of_an_interrupted_run_equals_the_whole_run(runs, tmp_path, capsys, monkeypatch):
    import jax_lstm_ae.train.many as many_mod

    step, calls = many_mod.Models.step, []

    def interrupt_in_epoch_2(self, group, live):  # Ctrl-C at the first step of epoch 2 (4 steps an epoch)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt()
        return step(self, group, live)

    out = tmp_path / "run"
    monkeypatch.setattr(many_mod.Models, "step", interrupt_in_epoch_2)
    code, _, err = _run(capsys, "train", "--data", runs / "train.npz", "--out", out, "--seed", "5", "--seeds", "3",
                        *TINY)
    assert code == 130 and "interrupted" in err and load_many(out).extra["epoch"] == 1
    monkeypatch.setattr(many_mod.Models, "step", step)
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--seeds", "4", "--quiet")
    assert code == 2 and "--seeds 4 cannot change when resuming" in err
    code, out_text, _ = _run(capsys, "train", "--out", out, "--resume", "--quiet")
    assert code == 0 and "trained 3 models, 8 steps each" in out_text
    a, b = load_many(out), load_many(runs / "many")
    assert _max_diff(a.params, b.params) == 0.0 and _max_diff(a.state, b.state) == 0.0 and a.chosen == b.chosen
    assert (out / "metrics.jsonl").read_text().count("\n") == 6
    code, out_text, _ = _run(capsys, "train", "--out", out, "--resume", "--epochs", "3", "--quiet")
    assert code == 0 and "12 steps each" in out_text
    assert [h[-1]["epoch"] for h in load_many(out).extra["histories"]] == [3, 3, 3]


def test_force_replaces_only_run_folders(runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = _run(capsys, "train", "--data", runs / "train.npz", "--out", mine, "--seeds", "2", "--force",
                        *TINY)
    assert code == 2 and "not a run directory" in err and (mine / "notes.txt").read_text() == "keep"
    shutil.copytree(runs / "many", tmp_path / "copy")
    code, _, err = _run(capsys, "train", "--data", runs / "train.npz", "--out", tmp_path / "copy", "--seeds", "2",
                        *TINY)
    assert code == 2 and "already exists; pass --force" in err
    code, _, err = _run(capsys, "train", "--data", runs / "train.npz", "--out", tmp_path / "x", "--lr-grid",
                        "1e-3,1e-2", "--lr", "1e-3", *TINY)
    assert code == 2 and "--lr-grid gives the learning rates; drop --lr" in err


def test_probe_choose_records_the_model_with_the_best_cv_accuracy(runs, tmp_path, capsys):
    from jax_lstm_ae.apps.probe import _split_stratified, fit_probe

    run, data = tmp_path / "many", runs / "train.npz"
    shutil.copytree(runs / "many", run)
    by_val = load_many(run).chosen
    code, out, _ = _run(capsys, "probe", "--run", run, "--data", data, "--choose", "--out", tmp_path / "p.json")
    assert code == 0 and "is now the chosen model" in out
    choice = json.loads((tmp_path / "p.json").read_text())["choice"]
    y = np.load(data)["labels"]
    tr, _ = _split_stratified(y, 0.4, 0)  # probe's own split of --data: only its training rows are read
    for k in range(3):  # each model's CV accuracy, from its own latents (own normaliser) of those rows
        assert _run(capsys, "encode", "--run", run, "--data", data, "--model", k, "--out", tmp_path / f"z{k}.npy")[0] == 0
        cv = fit_probe(np.load(tmp_path / f"z{k}.npy")[tr], y[tr], seed=0).cv_accuracy
        assert abs(cv - choice["cv_accuracy"][k]) < 1e-9, k
    k = choice["model"]
    assert choice["cv_accuracy"][k] == max(choice["cv_accuracy"]) and choice["validation_choice"] == by_val
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["chosen"] == k == load_many(run).chosen and cfg["chosen_by"]["by"] == "probe --choose"
    assert _run(capsys, "encode", "--run", run, "--data", data, "--out", tmp_path / "c.npy")[0] == 0
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / f"z{k}.npy"))  # encode uses the choice
    code, out, _ = _run(capsys, "info", "--run", run)
    assert code == 0 and f"chosen {k} (probe --choose: best linear CV accuracy" in out
    code, _, err = _run(capsys, "train", "--out", run, "--resume", "--epochs", "3", "--quiet")  # training on: by
    cfg = json.loads((run / "config.json").read_text())                                      # validation again
    assert code == 0 and "chosen_by" not in cfg and cfg["chosen"] == load_many(run).chosen == int(
        np.nanargmin([np.inf if b is None else b for b in cfg["best_losses"]]))


def test_probe_choose_refusals(runs, capsys):
    data = runs / "train.npz"
    code, _, err = _run(capsys, "probe", "--run", runs / "one5", "--data", data, "--choose")
    assert code == 2 and "a run of one model, nothing to choose from" in err
    code, _, err = _run(capsys, "probe", "--run", runs / "many", "--data", data, "--choose", "--model", "1")
    assert code == 2 and "drop --model" in err
    assert "chosen_by" not in json.loads((runs / "many" / "config.json").read_text())


def test_detect_model_all_is_the_mean_of_each_models_standardised_scores(runs, tmp_path, capsys):
    data = runs / "train.npz"
    per = []
    for k in range(3):
        assert _run(capsys, "detect", "--run", runs / "many", "--data", data, "--fit-data", data, "--model", k,
                    "--out", tmp_path / f"{k}.csv")[0] == 0
        per.append(np.loadtxt(tmp_path / f"{k}.csv", delimiter=",", skiprows=1)[:, 1])
    code, out, _ = _run(capsys, "detect", "--run", runs / "many", "--data", data, "--fit-data", data, "--model", "all",
                        "--out", tmp_path / "all.csv")
    assert code == 0 and "ensemble of 3 models" in out
    got = np.loadtxt(tmp_path / "all.csv", delimiter=",", skiprows=1)[:, 1]
    want = np.mean([(s - s.mean()) / s.std() for s in per], axis=0)  # the normal data is the scored data here
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    code, _, err = _run(capsys, "detect", "--run", runs / "one5", "--data", data, "--model", "all",
                        "--out", tmp_path / "x.csv")
    assert code == 2 and "drop --model" in err
