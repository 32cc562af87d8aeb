"""A model or a batch too big for memory is refused before anything is
allocated, with the figures and what to change, by the runner (so the API
and `train` alike), instead of XLA's RESOURCE_EXHAUSTED; the estimate it
rests on follows XLA's own memory analysis of the compiled step."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_lstm_ae.train.memory as memory
from jax_lstm_ae.cli.main import main
from jax_lstm_ae.data import Dataset
from jax_lstm_ae.nn.spec import EncoderSpec, ModelSpec, build
from jax_lstm_ae.train import ResourceError, TrainSpec, estimate_train_memory, run_training
from jax_lstm_ae.train.checkpoint import build_optimizer, optimizer_config
from jax_lstm_ae.train.step import Batch, create_train_state, make_train_step

TINY = ["--embedding-dim", "4", "--quiet"]


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("b, t, f, e, hidden", [(64, 100, 1, 32, (64,)), (16, 50, 3, 16, (32, 32))])
def test_the_estimate_follows_xla_memory_analysis(b, t, f, e, hidden):
    model = build(ModelSpec(features=f, embedding_dim=e, encoder=EncoderSpec(hidden=hidden)))
    opt = build_optimizer(optimizer_config(1e-3))
    state = jax.eval_shape(lambda: create_train_state(model, opt, jax.random.PRNGKey(0)))
    batch = Batch(jax.ShapeDtypeStruct((b, t, f), jnp.float32), jax.ShapeDtypeStruct((b,), jnp.int32))
    ma = make_train_step(model, opt).lower(state, batch).compile().memory_analysis()
    if ma is None:
        pytest.skip("this backend gives no memory analysis")
    xla = ma.temp_size_in_bytes + ma.argument_size_in_bytes
    need = estimate_train_memory(model, opt, b, t, f).total()
    assert 0.8 * xla <= need <= 1.6 * xla, (need, xla)


def _no_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_model_too_big_is_refused_at_once_with_the_figure(tmp_path, capsys):
    data = tmp_path / "d.npy"
    np.save(data, np.zeros((40, 12, 2), np.float32))
    t0 = time.monotonic()
    # F -> 1,000,000 -> 4: a recurrent matrix of 1e6 x 4e6 floats, 16 TB
    code, _, err = _run(capsys, "train", "--data", data, "--out", tmp_path / "a" / "run", "--hidden", "1000000", *TINY)
    line = _one_line(err)
    assert time.monotonic() - t0 < 60
    assert code == 2 and "training needs about" in line and "TiB" in line and " is host memory available" in line
    assert line.endswith("; use fewer or narrower LSTM layers (--hidden, --embedding-dim)")
    assert _no_files(tmp_path) == ["d.npy"]  # no run, no partial folder, no lock, no parent folder


def test_a_batch_too_big_is_refused_with_a_batch_that_fits(tmp_path, capsys, monkeypatch):
    data = tmp_path / "long.npy"
    np.save(data, np.zeros((8000, 2000, 1), np.float32))  # a batch of 6,400 x 2,000 steps x 2,048 units: ~2.7 TB
    code, _, err = _run(capsys, "train", "--data", data, "--out", tmp_path / "run", "--hidden", "1024",
                        "--embedding-dim", "1024", "--batch-size", "8000", "--quiet")  # fmt: skip
    line = _one_line(err)
    assert code == 2 and "for a batch of 6400 sequences of 2000 steps" in line
    assert "; use a smaller batch (--batch-size " in line and "or less)" in line
    assert _no_files(tmp_path) == ["long.npy"]

    # with the host's memory set to 16 MiB: the batch it names passes, one more does not
    small = tmp_path / "small.npy"
    np.save(small, np.random.default_rng(0).normal(size=(64, 12, 2)).astype(np.float32))
    monkeypatch.setattr(memory, "_host_available", lambda: 16 * 2**20)
    argv = ["train", "--data", small, "--hidden", "256", "--epochs", "1", "--val-fraction", "0", *TINY]
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "r1", "--batch-size", "64")
    line = _one_line(err)
    fits = int(line.split("--batch-size ")[1].split()[0])
    assert code == 2 and 1 <= fits < 64 and "only 16.0 MiB is host memory available" in line
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "r2", "--batch-size", str(fits + 1))
    assert code == 2 and "training needs about" in err
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "r3", "--batch-size", str(fits))
    assert code == 0, err


def test_the_runner_refuses_before_any_init(tmp_path):
    """The API meets the same check: run_training raises ResourceError, writes nothing."""
    x = np.zeros((8, 12, 1), np.float32)
    spec = ModelSpec(features=1, embedding_dim=4, encoder=EncoderSpec(hidden=(2_000_000,)))
    with pytest.raises(ResourceError, match="training needs about .* TiB"):
        run_training(spec, TrainSpec(epochs=1), Dataset(x, np.full(8, 12)), workdir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
