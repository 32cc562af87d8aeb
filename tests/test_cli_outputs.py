"""Nothing of the user's is ever touched (``cli/outputs.py``): no input is
overwritten (also through a symlink or a hard link), no folder that is not a
run directory is replaced, an existing output is replaced only with --force,
and every output is checked before any work. Each refused command: exit code
2, one line on stderr that says what to do, no traceback, nothing created,
every byte of every file unchanged. All in-process (no JAX start-up per case)."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny run trained once on data.npy, the user's files, and links to them."""
    w = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(0)
    x = np.sin(0.5 * np.arange(8)[None, :, None] + rng.uniform(0, 6, (16, 1, 2))).astype(np.float32)
    np.save(w / "data.npy", x)
    np.savetxt(w / "labels.csv", np.arange(16) % 2, fmt="%d")
    np.savetxt(w / "fit.csv", x[:, :, 0], delimiter=",", fmt="%.5f")
    argv = ["train", "--data", str(w / "data.npy"), "--out", str(w / "run"), "--epochs", "1", "--min-steps", "0",
            "--embedding-dim", "2", "--batch-size", "16", "--val-fraction", "0", "--quiet"]
    assert main(argv) == 0
    # the user's own folder, files and links
    (w / "u").mkdir()
    (w / "u" / "data.txt").write_text("1 2 3\n4 5 6\n")
    (w / "u" / "notes.md").write_text("mine\n")
    (w / "old.npy").write_bytes(b"old output")
    (w / "old.csv").write_text("old output\n")
    (w / "old.png").write_bytes(b"old png")
    (w / "old.json").write_text("{}\n")
    (w / "r.errors.npy").write_bytes(b"old errors")
    (w / "dir.npy").mkdir()
    (w / "a_file").write_text("x")
    os.symlink(w / "data.npy", w / "link.npy")
    os.symlink(w / "data.npy", w / "link.png")
    os.symlink(w / "data.npy", w / "link.json")
    os.symlink(w / "run" / "checkpoint.msgpack", w / "ckpt.npz")
    os.link(w / "data.npy", w / "hard.npy")
    os.link(w / "labels.csv", w / "hard.csv")
    os.symlink(w / "data.npy", w / "d.errors.npy")  # what `reconstruct --out d.npy` writes beside d.npy
    # a run directory that holds an input
    shutil.copytree(w / "run", w / "run_with_data")
    shutil.copy(w / "data.npy", w / "run_with_data" / "x.npy")
    (w / "out").mkdir()  # every case's outputs go here or to the files above
    return w


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        out[dirpath] = "dir"
        for name in files + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if os.path.islink(p):
                out[str(p)] = ("link", os.readlink(p))
            else:
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode)
    return out


E = "encode --run {w}/run --data {w}/data.npy --out "
R = "reconstruct --run {w}/run --data {w}/data.npy --out "
D = "detect --run {w}/run --data {w}/data.npy --out "
P = "probe --run {w}/run --data {w}/data.npy --out "
T = "train --data {w}/data.npy --epochs 1 --quiet --out "
OVER = "would overwrite an input"

# (command line, words the line must hold, what the line must end with). {w}: the module's folder.
CASES = [
    # --- an input is never written: the same path, a symlink, a hard link, a file written beside --out
    (E + "{w}/data.npy", OVER + " (--data {w}/data.npy)", "choose another --out"),
    (E + "{w}/data.npy --force", OVER, "choose another --out"),
    (R + "{w}/data.npy --force", OVER, "choose another --out"),
    (E + "{w}/link.npy --force", OVER, "choose another --out"),
    (E + "{w}/hard.npy --force", OVER, "choose another --out"),
    (R + "{w}/d.npy --force", "(it writes {w}/d.errors.npy) " + OVER, "choose another --out"),
    (E + "{w}/ckpt.npz --force", OVER + " (--run {w}/run/checkpoint.msgpack)", "choose another --out"),
    ("encode --run {w}/run --out {w}/data.npy --force", OVER + " (the training data of --run", "another --out"),
    (D + "{w}/labels.csv --labels {w}/labels.csv --force", OVER + " (--labels", "choose another --out"),
    (D + "{w}/out/s.csv --plot {w}/link.png --force", "--plot {w}/link.png " + OVER, "choose another --plot"),
    (D + "{w}/out/s.csv --labels {w}/labels.csv --explain {w}/hard.csv --force", OVER, "choose another --explain"),
    (D + "{w}/fit.csv --fit-data {w}/fit.csv", OVER + " (--fit-data", "choose another --out"),
    (P + "{w}/link.json --force", OVER, "choose another --out"),
    ("probe --run {w}/run --data {w}/data.npy --test-data {w}/hard.npy --out {w}/hard.npy --force",
     "the results are JSON", "give a file name ending in .json"),
    # --- an existing output is replaced only with --force
    (E + "{w}/old.npy", "{w}/old.npy exists; pass --force to replace it", "or choose another --out"),
    (R + "{w}/r.npy", "{w}/r.errors.npy exists; pass --force", "or choose another --out"),
    (D + "{w}/old.csv", "{w}/old.csv exists; pass --force", "or choose another --out"),
    (D + "{w}/out/s.csv --plot {w}/old.png", "{w}/old.png exists; pass --force", "or choose another --plot"),
    (D + "{w}/old.png --plot {w}/out/p.png", "detect writes a CSV table", "ending in .csv"),
    (P + "{w}/old.json", "{w}/old.json exists; pass --force", "or choose another --out"),
    # --- every output checked before any work
    (E + "{w}/dir.npy --force", "is a directory", "ending in .npy or .npz"),
    (E + "{w}/a_file/z.npy", "{w}/a_file is a file, not a folder", "choose another path"),
    (E + "{w}/out/nodir/z.npy", "folder {w}/out/nodir does not exist", "create it or choose another path"),
    (D + "{w}/out/s.csv --explain {w}/out/s.csv", "is the same file as --out", "give each output its own file name"),
    (D + "{w}/out/s.csv --explain {w}/out/why.txt", "the explanation is a CSV table", "ending in .csv"),
    (D + "{w}/out/s.csv --plot {w}/a_file/p.png", "is a file, not a folder", "choose another path"),
    (P + "{w}/out/p.txt", "the results are JSON", "ending in .json"),
    # --- no folder that is not a run directory is ever replaced
    ("train --data {w}/u/data.txt --out {w}/u --force --quiet", "--out {w}/u is not a run directory of jax-lstm-ae "
     "(no config.json/checkpoint.msgpack); --force replaces only run directories", "choose another --out"),
    (T + "{w}/u", "is not a run directory of jax-lstm-ae", "choose another --out"),
    ("train --data {w}/u/data.txt --train-rows 0:2 --out {w}/u --force --quiet", "is not a run directory",
     "choose another --out"),
    (T + "{w}/a_file --force", "exists and is not a directory", "choose another --out"),
    ("cd:{w}/run train --data {w}/data.npy --out . --force --quiet", "is the current folder or a folder above it",
     "choose another --out"),
    ("cd:{w}/run train --data {w}/data.npy --out .. --force --quiet", "", "choose another --out"),
    ("train --data {w}/run_with_data/x.npy --out {w}/run_with_data --force --quiet",
     "holds an input (--data {w}/run_with_data/x.npy)", "choose another --out"),
    (T + "{w}/run", "already exists; pass --force to replace it", "or choose another --out"),
]


@pytest.mark.parametrize("line, words, ending", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_refused_one_line_nothing_touched(world, capsys, monkeypatch, line, words, ending):
    if line.startswith("cd:"):
        where, line = line.split(" ", 1)
        monkeypatch.chdir(where[3:].replace("{w}", str(world)))
    argv = [a.replace("{w}", str(world)) for a in line.split()]
    before = _snapshot(world)
    code = main(argv)
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    msg = lines[0]
    assert msg.startswith("jax-lstm-ae: error: "), msg
    assert words.replace("{w}", str(world)) in msg, msg
    assert msg.endswith(ending), msg
    assert _snapshot(world) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_refused_up_front(world, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code = main(["encode", "--run", str(world / "run"), "--out", str(ro / "z.npy")])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write in {ro} (permission denied); choose another path" in err
    assert list(ro.iterdir()) == []


def test_force_replaces_an_output_whole_and_leaves_no_temporary_file(world, tmp_path, capsys):
    out = tmp_path / "z.npy"
    out.write_bytes(b"old")
    assert main(["encode", "--run", str(world / "run"), "--data", str(world / "data.npy"), "--out", str(out),
                 "--force", "--quiet"]) == 0
    assert np.load(out).shape == (16, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npy"]
    capsys.readouterr()


def test_a_failed_write_leaves_the_old_file(world, tmp_path, capsys, monkeypatch):
    """A full disk while writing: the old output stays, byte for byte, and no temporary file is left."""
    import errno

    out = tmp_path / "s.csv"
    out.write_text("old\n")
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code = main(["detect", "--run", str(world / "run"), "--data", str(world / "data.npy"), "--out", str(out),
                 "--force", "--quiet"])
    monkeypatch.setattr(os, "fsync", real)
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1, err
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_a_folder_that_stopped_being_a_run_is_not_replaced(tmp_path):
    """Files put into RUN_DIR while a run trained: the swap is refused, both folders stay as they are."""
    from jax_lstm_ae.cli.rundir import commit
    from jax_lstm_ae.cli.shell import CliError

    work, out = tmp_path / ".run.partial", tmp_path / "run"
    work.mkdir()
    (work / "config.json").write_text("{}")
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    before = _snapshot(tmp_path)
    with pytest.raises(CliError, match="no longer a run directory.*the new run stays in"):
        commit(work, out)
    assert _snapshot(tmp_path) == before
