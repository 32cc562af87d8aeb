"""Training that never loses a run: kill -9, SIGTERM and Ctrl-C at several
moments of a fresh and of a resumed run, --force interrupted or stopped by a
NaN, a full disk, two runs to one --out, and never a non-finite parameter
saved. Signals go to real processes (``python -m jax_lstm_ae``); each waits
for a file the run writes, never a fixed sleep, under a generous time bound."""

import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_lstm_ae.cli.main import main
from jax_lstm_ae.train.checkpoint import load_run

EPOCHS = 30
TINY = ["--embedding-dim", "4", "--batch-size", "8", "--quiet"]
BOUND_S = 300  # per process; a loaded 2-core machine compiles slowly


def _write_data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = np.sin(0.5 * np.arange(12)[None, :, None] + rng.uniform(0, 6, (40, 1, 2))).astype(np.float32)
    np.savez(folder / "d.npz", x=x, lengths=rng.integers(6, 13, 40))
    return folder / "d.npz"


def _argv(data: Path, out: Path, *extra) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(EPOCHS), *TINY, *extra]


# A job started in the background inherits SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler; a terminal's Ctrl-C finds it installed.
_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'jax-lstm-ae'; runpy.run_module('jax_lstm_ae', run_name='__main__')"
)


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WITH_CTRL_C, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=BOUND_S)
    return proc.returncode, err


def _cli(argv: list[str]) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "jax_lstm_ae", *argv], capture_output=True, text=True, timeout=BOUND_S)
    return p.returncode, p.stdout, p.stderr


def _epochs(folder: Path) -> int:
    p = folder / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def _wait(proc: subprocess.Popen, ready, what: str) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() - t0 > BOUND_S:
            proc.kill()
            raise AssertionError(f"no {what} after {BOUND_S} s")
        time.sleep(0.05)


def _partial(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def _snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _leaves(run_dir: Path) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(load_run(run_dir).state)]


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must equal."""
    d = tmp_path_factory.mktemp("faults")
    data = _write_data(d)
    code, _, err = _cli(_argv(data, d / "ref"))
    assert code == 0, err
    return d, data


def _assert_equals_reference(run: Path, ref: Path) -> None:
    for a, b in zip(_leaves(run), _leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)  # to the bit
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    refs = [json.loads(ln) for ln in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == list(range(1, EPOCHS + 1))  # each epoch once
    assert [(r["step"], r["loss"], r["val_loss"]) for r in recs] == [(r["step"], r["loss"], r["val_loss"]) for r in refs]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_killed_at_several_moments_resumes_to_the_uninterrupted_run(reference, tmp_path, sig):
    d, data = reference
    out = tmp_path / "deep" / "run"
    where = lambda: _partial(out) if _partial(out).exists() else out  # noqa: E731

    # 1. a fresh run, stopped before its first epoch ends (config written, no checkpoint)
    proc = _start(_argv(data, out))
    _wait(proc, lambda: (_partial(out) / "config.json").exists(), "config.json in the partial folder")
    proc.send_signal(sig)
    code, err = _finish(proc)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL and (_partial(out) / "config.json").exists()
        code, _, err = _cli(["info", "--run", str(out)])
        assert code == 2 and f"finish it with `jax-lstm-ae train --resume --out {out}`" in _one_line(err)
    else:
        assert code == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
        line = _one_line(err)
        assert ("terminated" if sig == signal.SIGTERM else "interrupted") in line
        if "nothing was written" in line:  # nothing to keep: nothing kept, not even the folders made for it
            assert not (tmp_path / "deep").exists()
        else:
            assert f"train --resume --out {out}" in line and _epochs(out) >= 1

    # 2. that run continued (or started again), stopped after a few epochs
    again = _argv(data, out) if not (out.exists() or _partial(out).exists()) else ["train", "--out", str(out), "--resume", "--quiet"]
    proc = _start(again)
    _wait(proc, lambda: _epochs(where()) >= 3, "3 epochs")
    proc.send_signal(sig)
    code, err = _finish(proc)
    if sig != signal.SIGKILL:
        assert f"--resume --out {out}" in _one_line(err) and out.exists() and not _partial(out).exists()
    done = load_run(where()).extra["epoch"]
    assert 3 <= done < EPOCHS and _epochs(where()) in (done - 1, done)  # the checkpoint is written first

    # 3. the resumed run, stopped again later
    proc = _start(["train", "--out", str(out), "--resume"])
    _wait(proc, lambda: _epochs(where()) >= done + 3, f"{done + 3} epochs")
    proc.send_signal(sig)
    _finish(proc)

    # 4. resumed to the end: the same parameters and the same epochs as without any stop
    code, outp, err = _cli(["train", "--out", str(out), "--resume"])
    assert code == 0, err
    assert not _partial(out).exists() and not (out.parent / f".{out.name}.lock").exists()
    _assert_equals_reference(out, d / "ref")
    assert {"loss.png", "reconstructions.png"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_force_interrupted_leaves_the_old_run_byte_for_byte(reference, tmp_path, sig):
    d, data = reference
    out = tmp_path / "run"
    shutil.copytree(d / "ref", out)
    before = _snapshot(out)
    proc = _start(_argv(data, out, "--force", "--seed", "1"))
    _wait(proc, lambda: _epochs(_partial(out)) >= 2, "2 epochs of the new run")
    proc.send_signal(sig)
    code, err = _finish(proc)
    assert _snapshot(out) == before
    if sig == signal.SIGINT:
        line = _one_line(err)
        assert code == 130 and "still holds the previous run, untouched" in line and str(_partial(out)) in line
    # the new run continues from its partial folder and replaces the old run only when it ends
    code, _, err = _cli(["train", "--out", str(out), "--resume"])
    assert code == 0, err
    assert load_run(out).config["train"]["seed"] == 1 and not _partial(out).exists()
    assert [json.loads(ln)["epoch"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, EPOCHS + 1)
    )


def test_two_runs_to_one_out_the_second_refuses(reference, tmp_path):
    _, data = reference
    out = tmp_path / "run"
    first = _start(_argv(data, out, "--epochs", "100000"))
    try:
        _wait(first, lambda: (_partial(out) / "config.json").exists(), "the first run's config.json")
        for extra in ([], ["--force"]):
            code, _, err = _cli(_argv(data, out, *extra))
            line = _one_line(err)
            assert code == 2 and f"being written by another training (pid {first.pid})" in line, line
        code, _, err = _cli(["train", "--out", str(out), "--resume"])
        assert code == 2 and f"(pid {first.pid})" in _one_line(err)
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.communicate(timeout=BOUND_S)
    # kill -9 does not leave the lock held: a new run may take --out
    code, _, err = _cli(_argv(data, out, "--force", "--epochs", "1"))
    assert code == 0, err


# ------------------------------------------------------------------ in-process faults
def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_force_stopping_on_nan_keeps_the_old_run(reference, tmp_path, capsys):
    d, _ = reference
    out = tmp_path / "run"
    shutil.copytree(d / "ref", out)
    before = _snapshot(out)
    np.save(tmp_path / "huge.npy", np.full((8, 12, 2), 3e38, np.float32))
    code, _, err = _run(capsys, "train", "--data", tmp_path / "huge.npy", "--out", out, "--force",
                        "--normalize", "none", "--val-fraction", "0", *TINY)  # fmt: skip
    assert code == 1 and "training stopped at step 1" in _one_line(err)
    assert _snapshot(out) == before and not _partial(out).exists()


def test_non_finite_parameters_are_never_saved(reference, tmp_path, capsys, monkeypatch):
    """An update that makes the params NaN while loss and gradients are finite
    (what --lr nan did): nothing is saved, and encode refuses such a run."""
    import optax

    import jax_lstm_ae.train.runner as runner
    from jax_lstm_ae.train.checkpoint import save_run

    _, data = reference
    monkeypatch.setattr(runner, "build_optimizer", lambda config: optax.sgd(float("nan")))
    # one step per epoch (batch >= 32 training sequences): epoch 1 ends on finite losses and NaN params
    code, _, err = _run(capsys, *_argv(data, tmp_path / "run", "--epochs", "2", "--batch-size", "64"))
    line = _one_line(err)
    assert code == 1 and "the parameters are not finite" in line and "nothing was written" in line
    assert not (tmp_path / "run").exists() and not _partial(tmp_path / "run").exists()

    monkeypatch.undo()
    run = load_run(reference[0] / "ref")
    bad = run.state.replace(params=jax.tree.map(lambda a: a * np.nan, run.state.params))
    save_run(tmp_path / "nan_run", bad, run.config, run.normalizer)
    code, _, err = _run(capsys, "encode", "--run", tmp_path / "nan_run", "--out", tmp_path / "z.npy")
    assert code == 2 and "parameters are not finite" in _one_line(err) and not (tmp_path / "z.npy").exists()


def _full_disk_after(monkeypatch, n_ok: int) -> None:
    """os.fsync of a file succeeds ``n_ok`` times, then fails as on a full disk
    (without a file name, as the kernel reports it)."""
    real, calls = os.fsync, [0]

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls[0] += 1
            if calls[0] > n_ok:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_names_the_path_and_keeps_the_old_run(reference, tmp_path, capsys, monkeypatch):
    d, data = reference
    out = tmp_path / "run"
    shutil.copytree(d / "ref", out)
    before = _snapshot(out)
    # config.json, then epoch 1 (checkpoint, config.json); epoch 2's checkpoint finds the disk full
    _full_disk_after(monkeypatch, 3)
    code, _, err = _run(capsys, *_argv(data, out, "--force"))
    line = _one_line(err)
    assert code == 2 and "No space left on device; free some disk space" in line
    assert f"{_partial(out)}/checkpoint.msgpack" in line
    assert _snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    # a new run into new folders: the folders go too
    _full_disk_after(monkeypatch, 0)
    code, _, err = _run(capsys, *_argv(data, tmp_path / "a" / "b" / "run"))
    assert code == 2 and "config.json: No space left on device" in _one_line(err)
    assert not (tmp_path / "a").exists()

    # resuming in place: the checkpoint on disk stays the last good one, the metrics match it
    monkeypatch.undo()
    short = tmp_path / "short"
    assert _run(capsys, *_argv(data, short, "--epochs", "2"))[0] == 0
    _full_disk_after(monkeypatch, 3)  # metrics.jsonl, then epoch 3 (checkpoint, config.json); not epoch 4
    code, _, err = _run(capsys, "train", "--out", short, "--resume", "--epochs", "6", "--quiet")
    assert code == 2 and f"{short}/checkpoint.msgpack: No space left on device" in _one_line(err)
    assert load_run(short).extra["epoch"] == 3 and _epochs(short) == 3


def test_metrics_follow_the_checkpoint_and_info_tolerates_bad_lines(reference, tmp_path, capsys):
    d, data = reference
    out = tmp_path / "run"
    assert _run(capsys, *_argv(data, out, "--epochs", "3"))[0] == 0
    m = out / "metrics.jsonl"
    lines = m.read_text().splitlines()
    # killed between the checkpoint of epoch 3 and its metrics line, with a torn line and an
    # epoch the checkpoint does not hold (as an older version could leave)
    m.write_text("\n".join(lines[:2]) + '\n{"epoch": 3, "lo\n' + json.dumps({"epoch": 4, "loss": 9.0}) + "\n")
    code, outp, _ = _run(capsys, "info", "--run", out)
    assert code == 0 and f"last train loss {json.loads(lines[2])['loss']:.5f}" in outp  # the checkpoint's epoch
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--epochs", "5", "--quiet")
    assert code == 0, err
    recs = [json.loads(ln) for ln in m.read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4, 5] and recs[2] == json.loads(lines[2])
    # the same five epochs as one uninterrupted run
    assert _run(capsys, *_argv(data, tmp_path / "straight", "--epochs", "5"))[0] == 0
    for a, b in zip(_leaves(out), _leaves(tmp_path / "straight"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_honours_and_records_epochs_and_patience_and_refuses_the_rest(reference, tmp_path, capsys):
    _, data = reference
    out = tmp_path / "run"
    assert _run(capsys, *_argv(data, out, "--epochs", "2", "--lr", "0.02"))[0] == 0
    before = _snapshot(out)
    for flag, value in (("--lr", "0.01"), ("--seed", "3"), ("--hidden", "8"), ("--schedule", "cosine"),
                        ("--val-fraction", "0.3"), ("--normalize", "minmax"), ("--input-noise", "0.1")):
        code, _, err = _run(capsys, "train", "--out", out, "--resume", "--epochs", "4", flag, value)
        assert code == 2 and f"{flag} {value} cannot change when resuming" in _one_line(err)
        assert _snapshot(out) == before
    # the same value as recorded is no change; --epochs and --patience are honoured and recorded
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--epochs", "4", "--patience", "7",
                        "--lr", "0.02", "--data", data, "--quiet")  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["epochs"] == 4 and cfg["train"]["patience"] == 7
    assert cfg["resumed"] == [{"at_epoch": 2, "epochs": 4, "patience": 7}]


# ------------------------------------------------------------------ stopped while the plots are drawn
# The run's plotting is replaced by a wait that marks the moment, so a real
# signal lands after the last epoch, while the plots are drawn, every time.
_PLOTS_WAIT = """
import pathlib, runpy, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import jax_lstm_ae.cli.plots as plots
marker = pathlib.Path(sys.argv.pop(1))
def wait(*args, **kwargs):
    marker.touch()
    time.sleep(BOUND)
plots.plot_losses = wait
sys.argv[0] = 'jax-lstm-ae'
runpy.run_module('jax_lstm_ae', run_name='__main__')
""".replace("BOUND", str(BOUND_S))

PLOTS = {"loss.png", "reconstructions.png"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_stopped_while_plotting_resume_draws_the_plots_and_finishes(tmp_path, sig):
    data = _write_data(tmp_path)
    out, marker = tmp_path / "run", tmp_path / "plotting"
    proc = subprocess.Popen([sys.executable, "-c", _PLOTS_WAIT, str(marker),
                             *_argv(data, out, "--epochs", "2")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    _wait(proc, marker.exists, "the plots")
    proc.send_signal(sig)
    code, err = _finish(proc)
    line = _one_line(err)
    assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
    assert "while drawing the plots; all 2 epochs are saved in" in line
    assert f"draw the plots and finish it with `jax-lstm-ae train --resume --out {out}`" in line
    assert is_run(out) and not _partial(out).exists() and not PLOTS & {p.name for p in out.iterdir()}
    before = {k: v for k, v in _snapshot(out).items() if k != "config.json"}

    code, outp, err = _cli(["train", "--out", str(out), "--resume"])
    assert code == 0, err
    assert "all 2 epochs were done already" in outp
    assert PLOTS <= {p.name for p in out.iterdir()}
    assert {k: v for k, v in _snapshot(out).items() if k in before} == before  # not one step more
    code, _, err = _cli(["train", "--out", str(out), "--resume"])
    assert code == 2 and "has already trained 2 epochs; pass --epochs" in _one_line(err)


def is_run(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "checkpoint.msgpack").is_file()


def _interrupt_plots(monkeypatch, exc=KeyboardInterrupt):
    import jax_lstm_ae.cli.plots as plots

    def stop(*args, **kwargs):
        raise exc()

    monkeypatch.setattr(plots, "plot_losses", stop)


def test_stopped_while_plotting_a_resumed_or_replacing_run_finishes_on_resume(tmp_path, capsys, monkeypatch):
    from jax_lstm_ae.cli.shell import Terminated

    data = _write_data(tmp_path)
    out = tmp_path / "run"
    assert _run(capsys, *_argv(data, out, "--epochs", "1"))[0] == 0
    # a resume in place, stopped while plotting: the run keeps its 2 epochs in RUN_DIR
    _interrupt_plots(monkeypatch, Terminated)
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--epochs", "2", "--quiet")
    assert code == 143 and f"all 2 epochs are saved in {out}: draw the plots" in _one_line(err)
    for p in PLOTS:  # as a kill would leave it
        (out / p).unlink(missing_ok=True)
    monkeypatch.undo()
    code, outp, err = _run(capsys, "train", "--out", out, "--resume", "--quiet")
    assert code == 0 and "all 2 epochs were done already" in outp, err
    assert PLOTS <= {p.name for p in out.iterdir()} and load_run(out).extra["epoch"] == 2

    # --force over that run, stopped while plotting: the old run stays, the new one finishes on --resume
    before = _snapshot(out)
    _interrupt_plots(monkeypatch)
    code, _, err = _run(capsys, *_argv(data, out, "--epochs", "1", "--force", "--seed", "5"))
    line = _one_line(err)
    assert code == 130 and "still holds the previous run, untouched" in line and "draw the plots and finish" in line
    assert _snapshot(out) == before
    monkeypatch.undo()
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--quiet")
    assert code == 0, err
    assert load_run(out).config["train"]["seed"] == 5 and not _partial(out).exists()


def test_a_run_ended_by_early_stopping_and_stopped_while_plotting_is_finished_not_trained_on(
        tmp_path, capsys, monkeypatch):
    data = _write_data(tmp_path)
    out = tmp_path / "run"
    # a learning rate of ~0: the validation loss never improves, patience 1 ends the run after epoch 2 of 30
    _interrupt_plots(monkeypatch)
    code, _, err = _run(capsys, *_argv(data, out, "--lr", "1e-30", "--patience", "1"))
    assert code == 130 and "all 2 epochs are saved" in _one_line(err)
    monkeypatch.undo()
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--quiet")
    assert code == 0, err
    assert _epochs(out) == 2 and load_run(out).extra["epoch"] == 2 and PLOTS <= {p.name for p in out.iterdir()}
    code, _, err = _run(capsys, "train", "--out", out, "--resume", "--epochs", "40")
    assert code == 2 and "stopped early at epoch 2" in _one_line(err) and "pass a --patience larger than 1" in err


# ------------------------------------------------------------------ a run still being trained
def test_commands_on_a_run_still_being_trained_say_so_and_to_wait(tmp_path, capsys):
    """encode, reconstruct, detect, probe and info on a run whose training
    holds the lock: the pid and "wait", not "no such run" or "--resume"."""
    from jax_lstm_ae.cli.rundir import RunLock

    data = _write_data(tmp_path)
    labelled = tmp_path / "labelled.npz"
    with np.load(data) as z:
        np.savez(labelled, x=z["x"], lengths=z["lengths"], labels=np.arange(40) % 2)
    done = tmp_path / "done"
    assert _run(capsys, *_argv(data, done, "--epochs", "1"))[0] == 0
    out = tmp_path / "run"
    commands = {
        "encode": ["encode", "--run", out, "--out", tmp_path / "z.npy"],
        "reconstruct": ["reconstruct", "--run", out, "--out", tmp_path / "r.npy"],
        "detect": ["detect", "--run", out, "--out", tmp_path / "s.csv"],
        "probe": ["probe", "--run", out, "--data", labelled],
        "info": ["info", "--run", out],
    }
    lock = RunLock(out).acquire()
    try:
        for state in ("starting", "partial"):  # before config.json is written, and after
            if state == "partial":
                shutil.copytree(done, _partial(out))
            for name, argv in commands.items():
                code, _, err = _run(capsys, *argv)
                line = _one_line(err)
                assert code == 2, (name, line)
                assert f"{out} is still being trained by pid {os.getpid()}" in line and "wait for that training" in line
                assert "--resume" not in line and "no such run" not in line
        # a finished run resumed in place (or to be replaced): read as it is, with a note
        shutil.copytree(done, out)
        shutil.rmtree(_partial(out))
        code, outp, err = _run(capsys, "info", "--run", out)
        assert code == 0 and f"is being trained further by pid {os.getpid()}" in _one_line(err)
        assert "training: 4 steps" in outp
    finally:
        lock.release()
    shutil.rmtree(out)
    shutil.copytree(done, _partial(out))
    code, _, err = _run(capsys, "encode", "--run", out, "--out", tmp_path / "z.npy")  # nobody trains it now
    assert code == 2 and f"finish it with `jax-lstm-ae train --resume --out {out}`" in _one_line(err)
    assert not any((tmp_path / f).exists() for f in ("z.npy", "r.npy", "s.csv"))
