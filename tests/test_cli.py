"""The jax-lstm-ae command: a full train -> encode -> reconstruct -> info
cycle on a tiny data set, and every bad-input case (one line, exit code 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jax_lstm_ae.train.checkpoint import load_run
from jax_lstm_ae.cli.arrays import _save_arrays
from jax_lstm_ae.cli.main import main
from tiny_data import write_sines_npz

# one LSTM layer each way; the last-state readout, which learns in the few steps these plumbing tests train
# (after 8 steps the default mean readout does not yet reconstruct better than zeros)
TINY = ["--embedding-dim", "4", "--batch-size", "8", "--pooling", "last", "--quiet"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small run shared by the tests that read it."""
    d = tmp_path_factory.mktemp("cli")
    write_sines_npz(d / "train.npz")
    code = main(["train", "--data", str(d / "train.npz"), "--out", str(d / "run"), "--epochs", "2", *TINY])
    assert code == 0
    return d


def test_train_writes_a_run_directory(trained):
    run = trained / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "checkpoint.msgpack", "metrics.jsonl", "loss.png", "reconstructions.png"} <= names
    assert not [p for p in trained.iterdir() if p.name.startswith(".")]  # no temporary folders left
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["features"] == 2 and cfg["model"]["embedding_dim"] == 4
    assert cfg["data"]["n_train"] == 32 and cfg["data"]["n_val"] == 8
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2] and all(np.isfinite(r["val_loss"]) for r in recs)
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_encode_and_reconstruct_reload_the_model(trained, capsys):
    run = load_run(trained / "run")
    data = np.load(trained / "train.npz")
    norm = run.normalizer.apply(np.asarray(data["x"], np.float32))
    code, out, _ = _run(capsys, "encode", "--run", trained / "run", "--data", trained / "train.npz",
                        "--out", trained / "z.npy", "--batch-size", "16")  # fmt: skip
    assert code == 0 and "latents (40, 4)" in out
    z = np.load(trained / "z.npy")
    # batch 16 over 40 rows: the padded last chunk must not change any latent
    np.testing.assert_allclose(z, run.model.encode(run.params, norm, data["lengths"]), rtol=1e-5, atol=1e-6)

    code, out, _ = _run(capsys, "reconstruct", "--run", trained / "run", "--out", trained / "r.npz")
    assert code == 0  # no --data: the run's own training data
    r = np.load(trained / "r.npz")
    # Checked with NumPy alone: the errors are the mean squared error of the
    # normalised reconstruction over each sequence's valid steps, padding zero.
    ln = data["lengths"]
    valid = np.arange(12)[None, :] < ln[:, None]
    assert np.all(r["reconstruction"][~valid] == 0)
    diff = np.where(valid[..., None], run.normalizer.apply(r["reconstruction"]) - norm, 0.0)
    np.testing.assert_allclose(r["errors"], (diff**2).mean(2).sum(1) / ln, rtol=1e-4)
    np.testing.assert_allclose(r["step_errors"].sum(1) / ln, r["errors"], rtol=1e-5)
    assert r["errors"].mean() < np.mean(norm[valid] ** 2)  # better than reconstructing zeros
    np.testing.assert_array_equal(r["labels"], np.arange(40) % 2)



def test_npy_outputs_beside_each_other(tmp_path):
    written = _save_arrays(tmp_path / "r.npy", {"reconstruction": np.ones((2, 3, 1)), "errors": np.arange(2.0),
                                                "labels": None}, "reconstruction")  # fmt: skip
    assert [p.name for p in written] == ["r.npy", "r.errors.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "r.errors.npy"), [0.0, 1.0])


def test_info(trained, capsys):
    code, out, _ = _run(capsys, "info", "--run", trained / "run")
    run = load_run(trained / "run")
    n = sum(np.size(a) for a in __import__("jax").tree.leaves(run.params))
    assert code == 0 and f"total {n:,}" in out and "encoder: LSTM(2->4)  [" in out and "decoder: LSTM(4->4)  [" in out and "T=12, F=2" in out
    code, out, _ = _run(capsys, "info", "--run", trained / "run", "--json")
    assert json.loads(out)["model"]["parameters"]["total"] == n


def test_resume_continues_the_run(trained, tmp_path, capsys):
    import shutil

    shutil.copytree(trained / "run", tmp_path / "run")
    code, out, _ = _run(capsys, "train", "--out", tmp_path / "run", "--resume", "--epochs", "3", "--quiet")
    assert code == 0 and "trained 12 steps" in out  # 32 training sequences / batch 8 = 4 steps per epoch
    recs = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2, 3] and [r["step"] for r in recs] == [4, 8, 12]
    run = load_run(tmp_path / "run")
    assert int(run.state.step) == 12 and run.extra["epoch"] == 3 and run.config["train"]["epochs"] == 3
    code, _, err = _run(capsys, "train", "--out", tmp_path / "run", "--resume", "--epochs", "3")
    assert code == 2 and "already trained 3 epochs" in _one_error_line(err)


def test_existing_run_dir_needs_force_and_survives_errors(trained, tmp_path, capsys):
    before = (trained / "run" / "checkpoint.msgpack").read_bytes()
    code, _, err = _run(capsys, "train", "--data", trained / "train.npz", "--out", trained / "run", *TINY)
    assert code == 2 and "already exists; pass --force" in _one_error_line(err)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n4 nan 6\n")
    code, _, err = _run(capsys, "train", "--data", bad, "--out", trained / "run", "--force", *TINY)
    assert code == 2 and "line 2, column 2" in _one_error_line(err)
    assert (trained / "run" / "checkpoint.msgpack").read_bytes() == before  # untouched


def test_feature_count_must_match_the_model(trained, tmp_path, capsys):
    np.save(tmp_path / "three.npy", np.zeros((4, 12, 3), np.float32))
    code, _, err = _run(capsys, "encode", "--run", trained / "run", "--data", tmp_path / "three.npy",
                        "--out", tmp_path / "z.npy")  # fmt: skip
    assert code == 2 and "F=3 features per step but the model was trained on F=2" in _one_error_line(err)
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize(
    "name, text, extra, match",
    [
        ("missing.txt", None, [], "missing.txt: no such file"),
        ("empty.txt", "", [], "the file is empty"),
        ("nan.txt", "1 2 3\n1 2 nan\n", [], "line 2, column 3 is 'nan'"),
        ("inf.csv", "a,b\n1,2\n-inf,3\n", [], "line 3, column 1 is '-inf'"),
        ("ragged.txt", "1 2 3\n4 5\n", [], "line 2 has 2 columns but line 1 has 3"),
        ("text.txt", "1 2 3\n4 five 6\n", [], "line 2, column 2 holds 'five', which is not a number"),
        # a long series trains the series pipeline, which needs a window and a few more rows to hold out
        ("short.txt", "1\n2\n3\n", ["--window", "5"], "the training stretch has 3 rows, too few for windows of 5"),
        ("cols.txt", "1 2\n3 4\n", ["--window", "1", "--columns", "4"], "asks for column 4 but the file has 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, name, text, extra, match):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    code, _, err = _run(capsys, "train", "--data", path, "--out", tmp_path / "run", *extra, *TINY)
    line = _one_error_line(err)
    assert code == 2 and line.startswith("jax-lstm-ae: error: ") and match in line
    assert not (tmp_path / "run").exists() and [p.name for p in tmp_path.iterdir()] == ([name] if text is not None else [])


def test_bad_run_and_output_paths(tmp_path, capsys):
    code, _, err = _run(capsys, "encode", "--run", tmp_path / "norun", "--out", tmp_path / "z.npy")
    assert code == 2 and "no such run directory" in _one_error_line(err)
    code, _, err = _run(capsys, "encode", "--run", tmp_path, "--out", tmp_path / "z.txt")
    assert code == 2 and "not a .npy or .npz file name" in _one_error_line(err)


def test_non_finite_loss_stops_and_names_the_step(trained, tmp_path, capsys):
    # the fixture's shapes (F=2, T=12, batch 8) and flags: the compiled step is reused
    np.save(tmp_path / "huge.npy", np.full((8, 12, 2), 3e38, np.float32))
    code, _, err = _run(capsys, "train", "--data", tmp_path / "huge.npy", "--out", tmp_path / "run",
                        "--normalize", "none", "--val-fraction", "0", *TINY)  # fmt: skip
    line = _one_error_line(err)
    assert code == 1 and "training stopped at step 1 (epoch 1)" in line and "nothing was written" in line
    assert not (tmp_path / "run").exists()


def test_console_entry_point_without_traceback(tmp_path):
    """The real process: python -m jax_lstm_ae, a user error, exit code 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "jax_lstm_ae", "info", "--run", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no such run directory" in _one_error_line(proc.stderr)


def test_denoising_options_are_stored_shown_and_kept_on_resume(trained, tmp_path, capsys):
    import jax

    data = trained / "train.npz"
    noisy = ["--input-noise", "0.3", "--seed", "1"]
    assert _run(capsys, "train", "--data", data, "--out", tmp_path / "two", "--epochs", "2", *TINY, *noisy)[0] == 0
    assert _run(capsys, "train", "--data", data, "--out", tmp_path / "one", "--epochs", "1", *TINY, *noisy)[0] == 0
    assert _run(capsys, "train", "--data", data, "--out", tmp_path / "plain", "--epochs", "2", *TINY,
                "--seed", "1")[0] == 0
    code, _, _ = _run(capsys, "train", "--out", tmp_path / "one", "--resume", "--epochs", "2", "--quiet")
    assert code == 0
    two, resumed, plain = (load_run(tmp_path / n) for n in ("two", "one", "plain"))
    assert two.config["train"]["input_noise"] == 0.3 and resumed.config["train"]["input_noise"] == 0.3
    assert plain.config["train"]["input_noise"] == 0.0
    # the resumed run read the same corrupted batches as the uninterrupted one
    for a, b in zip(jax.tree.leaves(two.state.params), jax.tree.leaves(resumed.state.params)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(two.state.params),
                                                        jax.tree.leaves(plain.state.params)))
    code, out, _ = _run(capsys, "info", "--run", tmp_path / "two")
    assert code == 0 and "denoising (input noise std 0.3)" in out
    for bad, msg in ((["--input-noise", "-1"], "--input-noise: expected a number >= 0, got '-1'"),
                     (["--step-dropout", "1"], "--step-dropout: expected a number in [0,1), got '1'"),
                     (["--input-noise", "0.1", "--step-dropout", "0.1"], "not both")):
        code, _, err = _run(capsys, "train", "--data", data, "--out", tmp_path / "bad", *TINY, *bad)
        assert code == 2 and msg in _one_error_line(err)
        assert not (tmp_path / "bad").exists()


def _figure_of(monkeypatch, draw):
    """Run ``draw()`` and return the matplotlib figure it saved."""
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self))
    draw()
    assert len(saved) == 1
    return saved[0]


def _texts(fig) -> set[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    return {t.get_text() for lg in legends for t in lg.get_texts()}


def test_plots_have_axes_legends_and_lengths(tmp_path, monkeypatch):
    from pathlib import Path

    from jax_lstm_ae.cli.scoring import plot as _plot
    from jax_lstm_ae.cli.plots import plot_reconstructions

    lengths = np.array([5, 3])
    x = np.zeros((2, 6, 3), np.float32)
    x[0, :5, 0] = 1.0
    fig = _figure_of(monkeypatch, lambda: plot_reconstructions(x, x, lengths, tmp_path / "r.png", binary=True))
    image_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in image_axes] == [
        "input: sequence 0, length 5", "reconstruction (probability): sequence 0, length 5",
        "input: sequence 1, length 3", "reconstruction (probability): sequence 1, length 3"]  # fmt: skip
    assert {ax.get_ylabel() for ax in image_axes} == {"feature"} and image_axes[-1].get_xlabel() == "time step"
    assert len(image_axes[0].get_xticks()) == 5 and fig.axes[-1].get_ylabel().startswith("value")  # the colour bar
    # the image's columns are the valid steps only
    np.testing.assert_array_equal(image_axes[0].get_images()[0].get_array(), x[0, :5].T)

    fig = _figure_of(monkeypatch, lambda: plot_reconstructions(x, x, lengths, tmp_path / "r.png"))
    assert _texts(fig) == {"feature 0", "feature 1", "feature 2", "input", "reconstruction"}
    assert [ax.get_ylabel() for ax in fig.axes] == ["seq 0\nlength 5", "seq 1\nlength 3"]
    assert fig.axes[-1].get_xlabel() == "time step"
    assert [len(line.get_xdata()) for line in fig.axes[1].get_lines()] == [3] * 6  # 3 features x (input, recon)

    scores, labels = np.array([0.1, 0.2, 5.0, 0.3]), np.array([False, False, True, False])
    fig = _figure_of(monkeypatch, lambda: _plot(Path(tmp_path / "s.png"), scores, 1.0, scores > 1.0, labels, None))
    assert {"labelled normal", "labelled anomaly", "flagged"} <= _texts(fig)
    assert fig.axes[0].get_xlabel() == "sequence" and fig.axes[0].get_ylabel() == "anomaly score"
    series = np.zeros((4, 2), np.float32)
    fig = _figure_of(monkeypatch, lambda: _plot(Path(tmp_path / "p.png"), scores, 1.0, scores > 1.0, labels, series))
    assert {"feature 0", "feature 1", "labelled anomaly", "flagged"} <= _texts(fig)
    assert fig.axes[1].get_xlabel() == "time step"
